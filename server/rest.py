"""What the REST path adds to the app's services: authentication, the durable work queue, upload signing.

Built in the app's lifespan by :func:`start_rest` (``app.state.rest``) and stopped before the rest of the
services, so nothing in flight outlives the store it writes to.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass, field

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from server.auth import Authenticator
from server.live import Services
from server.work import WorkQueue


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key (in-process, moving window).

    Our own small interface over the ``limits`` library (its moving-window strategy on in-memory storage,
    which forgets idle keys by itself): routes only ever call :meth:`hit`, so a shared storage for several
    nodes (``limits`` has Redis) is a change here alone.
    """

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._item = RateLimitItemPerSecond(limit, max(1, round(window)))
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, key: str) -> int | None:
        """Record one event; None if allowed, else the seconds to wait before the next one is (refused
        events are not recorded, so a client that waits that long gets through)."""
        if self._limiter.hit(self._item, key):
            return None
        reset = self._limiter.get_window_stats(self._item, key).reset_time
        return max(1, math.ceil(reset - time.time()))


@dataclass
class UploadSigner:
    """HMAC-signed, expiring URLs for kiosk chunk uploads (the server's stand-in for presigned S3 URLs)."""

    secret: bytes

    def sign(self, conversation_id: str, key: str, expires: int) -> str:
        msg = f"PUT\n{conversation_id}\n{key}\n{expires}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def verify(self, conversation_id: str, key: str, expires: int, signature: str) -> bool:
        # bytes, not str: compare_digest raises TypeError on a str with non-ASCII characters (a forged URL's)
        return hmac.compare_digest(self.sign(conversation_id, key, expires).encode(),
                                   signature.encode("utf-8", "surrogatepass"))


@dataclass
class RestServices:
    services: Services
    authenticator: Authenticator
    work: WorkQueue
    signer: UploadSigner
    upload_rate: RateLimiter
    address_rate: RateLimiter  # every participant API request, per client address
    project_rate: RateLimiter  # conversation starts and upload URLs, per project
    started_at: float = field(default_factory=time.time)
    initiating: asyncio.Lock = field(default_factory=asyncio.Lock)  # count open conversations, then add one

    async def stop(self) -> None:
        await self.work.stop()


async def start_rest(app: Starlette, services: Services) -> RestServices:
    settings = services.settings
    authenticator = Authenticator(settings, services.store)
    secret = await services.store.get_or_create_secret("upload-url-signing", secrets.token_hex(32))
    work = WorkQueue(services, settings.rest_workers)
    rest = RestServices(services=services, authenticator=authenticator, work=work,
                        signer=UploadSigner(bytes.fromhex(secret)), upload_rate=RateLimiter(settings.upload_url_rate),
                        address_rate=RateLimiter(settings.rate_per_address),
                        project_rate=RateLimiter(settings.rate_per_project))
    app.state.rest = rest
    await work.start()
    return rest


def rest_of(conn: HTTPConnection) -> RestServices:
    return conn.app.state.rest
