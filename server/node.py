"""This process' node id: how the nodes of one deployment tell each other apart in shared state.

Redis fan-out marks every appended message with it (a node skips the messages it appended itself, having
delivered them to its own subscribers at once), and leases will name their holder with it. The host name and
pid make it readable in ``CLIENT LIST`` and logs; the random part keeps two processes that reuse a pid (a
restarted container) apart, so a node never mistakes a predecessor's messages for its own.
"""

from __future__ import annotations

import os
import secrets
import socket

_ids: dict[int, str] = {}
_claimed: dict[int, int] = {}


def node_id() -> str:
    """Stable for the life of this process; a forked child gets its own (keyed by pid)."""
    pid = os.getpid()
    found = _ids.get(pid)
    if found is None:
        host = socket.gethostname().split(".")[0] or "host"
        found = _ids[pid] = f"{host}-{pid}-{secrets.token_hex(3)}"
    return found


def claim_node_id() -> str:
    """The id of a node being built (the composition root calls it once per node): :func:`node_id` for the
    process's first, with a suffix for each later one, so that two nodes built side by side in one process (the
    multi-node tests) never take each other's messages for their own."""
    pid = os.getpid()
    n = _claimed[pid] = _claimed.get(pid, 0) + 1
    return node_id() if n == 1 else f"{node_id()}.{n}"
