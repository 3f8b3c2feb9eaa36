"""How late the event loop runs what is due: a timer's lateness, measured all the time.

Every message, frame and decode result of every stream passes through the one event loop; when it runs late,
every stream's words come late, whatever the model does. A task asks to wake every :data:`TICK_S` and records how
much later than asked it woke. Admission stops admitting streams while that delay is high, ``/metrics`` shows
it, and the capacity bench reports it.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque

TICK_S = 0.05
WINDOW_S = 30.0
"""Delays older than this say little about the load now."""


class LoopDelay:
    """The event loop's lateness over the last :data:`WINDOW_S` (start it on the loop it measures)."""

    def __init__(self, tick_s: float = TICK_S, window_s: float = WINDOW_S) -> None:
        self.tick_s = tick_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=int(window_s / tick_s) + 1)
        self._lock = threading.Lock()  # read by /metrics' collector, which may run on another thread
        self._task: asyncio.Task | None = None
        self.max_seen = 0.0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="loop-delay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _watch(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(self.tick_s)
            late = max(0.0, time.perf_counter() - asked - self.tick_s)
            with self._lock:
                self._samples.append((time.monotonic(), late))
            self.max_seen = max(self.max_seen, late)

    def percentile(self, q: float, within_s: float | None = None) -> float | None:
        """That percentile of the recorded delays (of the last ``within_s`` only, when given; None: none)."""
        cutoff = time.monotonic() - within_s if within_s is not None else -math.inf
        with self._lock:
            recent = sorted(late for t, late in self._samples if t >= cutoff)
        if not recent:
            return None
        return recent[min(len(recent) - 1, max(0, math.ceil(q / 100 * len(recent)) - 1))]
