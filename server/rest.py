"""What the REST path adds to the app's services: authentication, the durable work queue, upload signing.

Built in the app's lifespan by :func:`start_rest` (``app.state.rest``) and stopped before the rest of the
services, so nothing in flight outlives the store it writes to.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from server.auth import Authenticator
from server.live import Services
from server.work import WorkQueue


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key (in-process, sliding window)."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def hit(self, key: str, now: float | None = None) -> int | None:
        """Record one event; None if allowed, else the seconds to wait before the next one is."""
        now = time.monotonic() if now is None else now
        q = self._events[key]
        while q and q[0] <= now - self.window:
            q.popleft()
        if len(q) >= self.limit:
            return max(1, math.ceil(q[0] + self.window - now))
        q.append(now)
        if len(self._events) > 10000:  # forget idle keys now and then
            for k in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]:
                del self._events[k]
        return None


@dataclass
class UploadSigner:
    """HMAC-signed, expiring URLs for kiosk chunk uploads (the server's stand-in for presigned S3 URLs)."""

    secret: bytes

    def sign(self, conversation_id: str, key: str, expires: int) -> str:
        msg = f"PUT\n{conversation_id}\n{key}\n{expires}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def verify(self, conversation_id: str, key: str, expires: int, signature: str) -> bool:
        return hmac.compare_digest(self.sign(conversation_id, key, expires), signature)


@dataclass
class RestServices:
    services: Services
    authenticator: Authenticator
    work: WorkQueue
    signer: UploadSigner
    upload_rate: RateLimiter
    started_at: float = field(default_factory=time.time)

    async def stop(self) -> None:
        await self.work.stop()


async def start_rest(app: Starlette, services: Services) -> RestServices:
    settings = services.settings
    authenticator = Authenticator(settings, services.store)
    secret = await services.store.get_or_create_secret("upload-url-signing", secrets.token_hex(32))
    work = WorkQueue(services, settings.rest_workers)
    rest = RestServices(services=services, authenticator=authenticator, work=work,
                        signer=UploadSigner(bytes.fromhex(secret)), upload_rate=RateLimiter(settings.upload_url_rate))
    app.state.rest = rest
    await work.start()
    return rest


def rest_of(conn: HTTPConnection) -> RestServices:
    return conn.app.state.rest
