"""What the inference loop measures of its own load, for the server's admission to judge by.

Two measures, each over a recent window: how long live decodes take (:meth:`CapacityEstimator.observe`, fed by
the loop after every batch), and what listeners really wait for, how long after its audio arrived a pause's
reading made an utterance's last word final (:meth:`CapacityEstimator.observe_commit`, fed by every live
session). Before any live decode is measured (a fresh process, or one idle for a minute) the decode figure is
the backend's calibration, a batch of live windows timed when the model was warmed (``seed``).

The estimator only measures. How many streams those figures allow, and when a start is refused, is the
admission policy's (:mod:`server.pipeline.load`): one formula, in one place.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asr.batch_report import BatchReport

WINDOW_S = 60.0
"""Decodes older than this say little about the load now."""
COMMIT_WINDOW_S = 30.0
"""Commit delays older than this say little about the load now (streams come and go at a human pace)."""
COMMIT_PERCENTILE = 90
"""Of some 50 pause readings in a window at 16 streams, a p95 is the third slowest: two streams pausing in the
same second moved it from 1.2 to 1.8 s now and then where the outside client measured p95 1.10 s over the
whole run. The p90 of 30 s read at most 1.28 s in the same run, and a loaded node still shows in it within
seconds (a tenth of the window's readings late)."""
COMMIT_MIN_SAMPLES = 3
MIN_SAMPLES = 5
"""Fewer recent live decodes than this: no estimate (a cold model's first decode is slow)."""


class CapacityEstimator:
    """An observer of the inference loop (``loop.observers``): keeps recent live decode durations."""

    def __init__(self, keep: int = 64, window_s: float = WINDOW_S, min_samples: int = MIN_SAMPLES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.min_samples = min_samples
        self.clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=keep)  # (when, decode seconds)
        self._commits: deque[tuple[float, float]] = deque(maxlen=1024)  # (when, seconds from audio to final)
        self._lock = threading.Lock()  # fed from the loop's threads, read from the event loop
        self.prior: float | None = None  # a batch's cost before any is measured (see seed)

    def seed(self, seconds: float | None) -> None:
        """What a batch of live decodes costs before the loop has measured any (the backend's calibration)."""
        self.prior = seconds if seconds is not None and seconds > 0 else None

    def observe(self, report: BatchReport) -> None:
        """Called by the loop after every batch; uploads (BULK) yield to live work and are not counted."""
        if report.live and report.size:
            with self._lock:
                self._samples.append((self.clock(), report.seconds))

    def observe_commit(self, seconds: float) -> None:
        """A live message made words final ``seconds`` after the newest one's audio arrived."""
        with self._lock:
            self._commits.append((self.clock(), seconds))

    def commit_delay(self, percentile: int = COMMIT_PERCENTILE) -> float | None:
        """That percentile of recent commit delays, or None with too few of them."""
        cutoff = self.clock() - COMMIT_WINDOW_S
        with self._lock:
            recent = sorted(s for t, s in self._commits if t >= cutoff)
        if len(recent) < COMMIT_MIN_SAMPLES:
            return None
        return recent[min(len(recent) - 1, math.ceil(percentile / 100 * len(recent)) - 1)]

    def decode_seconds(self) -> float | None:
        """The median duration of recent live decodes; with too few of them the calibration (None: neither)."""
        cutoff = self.clock() - self.window_s
        with self._lock:
            recent = [s for t, s in self._samples if t >= cutoff]
        return statistics.median(recent) if len(recent) >= self.min_samples else self.prior

    def measured(self) -> bool:
        """Whether the estimate comes from recent live decodes (not the calibration)."""
        cutoff = self.clock() - self.window_s
        with self._lock:
            return sum(t >= cutoff for t, _ in self._samples) >= self.min_samples
