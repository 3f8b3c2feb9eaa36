"""Per-key rate limits for the REST routes."""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


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
