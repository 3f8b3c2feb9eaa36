"""One TLS context for every HTTP client the suite makes.

httpx builds a TLS context for each client, loading the CA bundle again (about 20 ms of CPU), even for a client
that only ever speaks plain HTTP to the suite's own servers. The suite's waits poll: a node's ``/health`` every
tenth of a second while its model loads, a job's status, a conversation's. Each poll made a client, and on a
2-core box that was CPU the servers under test waited for. Handed ``verify=TLS``, a client takes this context
as it is.
"""

from __future__ import annotations

import ssl

TLS = ssl.create_default_context()
