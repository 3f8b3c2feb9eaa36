"""How many live streams the inference loop can serve within a latency target, measured from its own decodes.

The loop coalesces: a stream that waits gets one decode of everything it has, so more streams do not queue
more work, they make each stream's readings rarer and its commits later. What bounds a commit's latency is
how many decodes may run ahead of it. With ``slots`` decodes served at once (lanes x batch size) and ``n``
other streams, a commit waits at worst ``floor(n / slots)`` rounds of decodes and then takes its own, so with
``S`` the typical duration of a live decode (the median of the recent ones, measured as they run, on this
machine, at this load)::

    commit share of the loop ~= S * ceil((n + 1) / slots)   ->   capacity = slots * floor(target / S)

That share is a floor: decodes lengthen as a stream's window grows, and a word needs two readings that agree
(or a pause's urgent one). So the estimator also keeps what listeners really wait for: how long after its
audio arrived an utterance's last word was sent as final (:meth:`observe_commit`, from every live session).
With ``n`` streams served, one more makes each stream's readings come about ``(n + 1) / n`` times further
apart once the loop is saturated, so the p90 of recent commit delays scaled by that is the second prediction.
It holds for the load the delays were measured under: streams that started since have not slowed anything
yet, so the server judges a burst by the first prediction alone.

A lone stream is always admitted (refusing it helps nobody). Before live decodes are measured (a fresh
process, or one idle for a minute) the estimate is the backend's calibration: a full batch of hurried live
windows, timed when the model was warmed (``seed``). So a burst of streams at start is admitted as far as the
machine serves it and no further, instead of all at once or a few at a time. The estimator only measures and
predicts; the policy that refuses lives in the server.
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

    def predicted_commit_delay(self, streams_now: int) -> float | None:
        """The commit delay listeners would see with one stream more than the ``streams_now`` that the recent
        delays were measured with (None: not measured yet)."""
        delay = self.commit_delay()
        if delay is None or streams_now <= 0:
            return None
        return delay * (streams_now + 1) / streams_now

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

    def predicted_latency(self, streams: int, slots: int) -> float | None:
        """The loop's share of a commit's latency with ``streams`` live streams (None: not measured yet)."""
        s = self.decode_seconds()
        return None if s is None else s * math.ceil(max(1, streams) / max(1, slots))

    def headroom(self, streams: int, target_s: float, slots: int) -> int | None:
        """Live streams that may still be admitted within ``target_s`` with ``streams`` on (None: unknown)."""
        cap = self.capacity(target_s, slots)
        return None if cap is None else max(0, cap - streams)

    def capacity(self, target_s: float, slots: int) -> int | None:
        """Most live streams whose commits stay within ``target_s`` (at least 1; None: not measured yet)."""
        s = self.decode_seconds()
        if s is None:
            return None
        return max(1, max(1, slots) * math.floor(target_s / s)) if s > 0 else None
