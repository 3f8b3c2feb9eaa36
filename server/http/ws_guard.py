"""Bounds on what one WebSocket session may send, shared by the live protocols (the native WebSocket, OpenAI
Realtime, the Deepgram-compatible one): an inbound byte budget, a count of invalid messages, and an idle clock.

Each keeps a hostile client's cost to its own connection. The budget pushes back through TCP: over it, the socket
is not read until it refills, so a flood is neither buffered nor parsed faster than the budget allows (the event
loop decodes every byte a client sends). The strikes end a session that keeps sending what it cannot use; one
mistake, or a dozen, only costs the message. The idle clock ends a session that holds a slot and sends no audio.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.settings import Settings

STRIKE_WINDOW_S = 60.0
"""The window ``VOXLANE_WS_MAX_BAD_MESSAGES`` counts invalid messages in."""


class InboundBudget:
    """A token bucket of bytes: ``rate`` per second, ``burst`` at once. A message bigger than what is left is
    still taken (it has arrived already); the debt is waited off before the next one is read."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = rate if burst is None else burst
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def charge(self, size: int) -> float:
        """Count ``size`` bytes received; the seconds to wait before reading more (0: none)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate) - size
        self._at = now
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def spend(self, size: int) -> None:
        wait = self.charge(size)
        if wait > 0:
            await asyncio.sleep(wait)


class Strikes:
    """Invalid messages within a moving window; :meth:`strike` says when the session has had enough."""

    def __init__(self, limit: int, window: float = STRIKE_WINDOW_S, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._times: deque[float] = deque(maxlen=limit)

    def strike(self) -> bool:
        """One more invalid message; True once ``limit`` of them fell within the window."""
        now = self._clock()
        self._times.append(now)
        return len(self._times) == self.limit and now - self._times[0] <= self.window


class IdleClock:
    """Time since a session last did what keeps it alive (sent audio); 0 s of timeout: never idle."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._last = clock()

    def touch(self) -> None:
        self._last = self._clock()

    def remaining(self) -> float | None:
        """Seconds until the session is idle (at least 0); None without a timeout."""
        if self.timeout <= 0:
            return None
        return max(0.0, self.timeout - (self._clock() - self._last))


class InboundGuard:
    """The three bounds of one session, from the settings."""

    def __init__(self, settings: Settings, idle_timeout: float = 0.0) -> None:
        rate = settings.ws_inbound_kb_per_s * 1024
        self.budget = InboundBudget(rate)
        self.strikes = Strikes(settings.ws_max_bad_messages)
        self.idle = IdleClock(idle_timeout)

    @staticmethod
    def size(message: dict) -> int:
        """Bytes a received WebSocket message carried (a text's characters count one each: it was decoded)."""
        data = message.get("bytes")
        if data is not None:
            return len(data)
        text = message.get("text")
        return len(text) if text is not None else 0

    def too_many_message(self) -> str:
        return (f"{self.strikes.limit} invalid messages within {self.strikes.window:g} s: the session is closed"
                " (VOXLANE_WS_MAX_BAD_MESSAGES)")
