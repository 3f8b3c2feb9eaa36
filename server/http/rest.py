"""What the API adds to a node: authentication, upload signing, meeting tokens and rate limits.

Built once by the composition root (``app.state.rest``) and read by the routes and the auth middleware; it holds
the API's own parts, not the node's (those the routes take from ``app.state.services``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from server.http.auth import Authenticator
from server.http.meeting_tokens import MeetingTokens
from server.http.rate_limit import RateLimiter
from server.http.signing import UploadSigner
from server.storage import Store


@dataclass
class RestServices:
    """What the API adds: authentication, upload signing, rate limits."""

    store: Store  # the auth middleware's visibility check reads the transcript's row
    authenticator: Authenticator
    signer: UploadSigner
    meetings: MeetingTokens  # room URL keys and join tokens
    upload_rate: RateLimiter
    address_rate: RateLimiter  # every participant API request, per client address
    project_rate: RateLimiter  # conversation starts and upload URLs, per project
    started_at: float = field(default_factory=time.time)
