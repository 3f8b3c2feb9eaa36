"""Per-key rate limits for the REST routes, counted on every node at once when the nodes share Redis.

Our own small interface over the ``limits`` library (its moving-window strategy, asyncio flavour): routes only
ever call :meth:`RateLimiter.hit`. One node keeps the counts in memory (which forgets idle keys by itself); with
``VOXLANE_REDIS_URL`` they live in Redis, where the library counts and checks in one Lua script, so N nodes
behind a load balancer allow a key its limit once, not N times. If Redis cannot be reached the node falls back
to its own memory counts until it can: each node then allows up to the limit by itself, and no request is
refused or stalled because Redis is away.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

log = logging.getLogger("voxlane.limits")
_SCHEMES = {"redis": "async+redis", "rediss": "async+rediss", "unix": "async+redis+unix"}


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key (a moving window)."""

    def __init__(self, limit: int, window: float = 60.0, *, name: str = "", redis_url: str | None = None) -> None:
        self.limit = limit
        self.window = window
        self.name = name  # keeps the keys of two limiters apart in a shared storage
        self._item = RateLimitItemPerSecond(limit, max(1, round(window)))
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        if redis_url:
            scheme, _, rest = redis_url.partition(":")
            storage: Storage = RedisStorage(f"{_SCHEMES[scheme]}:{rest}", implementation="redispy",
                                            key_prefix="voxlane-limits", socket_connect_timeout=2.0,
                                            socket_timeout=2.0)
            self._shared = MovingWindowRateLimiter(storage)
        self._warned = False

    async def hit(self, key: str) -> int | None:
        """Record one event; None if allowed, else the seconds to wait before the next one is (refused events are
        not recorded, so a client that waits that long gets through)."""
        key = f"{self.name}:{key}"
        limiter = self._shared or self._local
        try:
            allowed = await limiter.hit(self._item, key)
            if allowed:
                self._warned = False
                return None
            reset = (await limiter.get_window_stats(self._item, key)).reset_time
        except Exception as exc:  # Redis away: this node's own counts, until it is back
            if limiter is self._local:
                raise
            if not self._warned:
                self._warned = True
                log.warning("rate limit %r: Redis is not reachable (%s); counting on this node only", self.name,
                            type(exc).__name__)
            return await self._hit_local(key)
        return max(1, math.ceil(reset - time.time()))

    async def _hit_local(self, key: str) -> int | None:
        if await self._local.hit(self._item, key):
            return None
        reset = (await self._local.get_window_stats(self._item, key)).reset_time
        return max(1, math.ceil(reset - time.time()))
