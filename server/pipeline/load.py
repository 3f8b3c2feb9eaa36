"""Closed-loop control of a node's live load: what the admitted streams get decides whether one more is admitted,
and what is shed when the machine slows under them.

A capacity formula is an estimate: on one 2-core box it let sixteen streams in where eight were its edge, and their
words came 4-11 s after they were said. So once a second a :class:`LoadMonitor` reads what the streams get: how long
after its audio an utterance's last word was made final by a reading for its pause (the p90 of the last 30 s,
every live stream: :mod:`asr.capacity`, :meth:`asr.segment_book.SegmentBook.emit_segment`), how far each
stream's transcription is behind its audio and whether that grows, and how late the event loop runs while
streams are live. Its verdict:

* ``ok``: within ``VOXLANE_LATENCY_TARGET_S`` (commit p90 under :data:`FULL_SHARE` of it, no stream's lag growing,
  the loop on time): streams may come up to what is proven or estimated, and one beyond it (a probe) while the
  commit p90 is under :data:`OK_SHARE` of the target and the median stream's transcript runs less than
  that behind its audio;
* ``full``: approaching it: nobody more;
* ``overloaded``: past it, or a stream's lag grows: nobody more, and work is shed.

Admission (:mod:`server.pipeline.admission`) asks :meth:`LoadMonitor.refusal`. A burst is admitted at once up to the
streams the node has been seen to serve (``proven``: the most streams that were ``ok`` once settled) or up to what
the decode cost calibrated at warm-up allows (:meth:`LoadMonitor.estimate`), whichever is more; beyond that one
stream at a time, each once the ones before it have settled and the verdict is still ``ok``. The fewest streams
seen ``overloaded`` bound it from above until streams are served ``ok`` beyond them.

Shedding, in this order, one measure more for every :data:`SHED_AFTER_S` that the verdict stays ``overloaded``,
one less for every :data:`UNSHED_AFTER_S` that it is ``ok``: every live reading hurried (the encoder reads the
window and a few seconds, not 30 s), partials refreshed half as often, and every second speaker window left out
of live diarization. ``status`` messages and ``/metrics`` name the measures in force.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from asr.inference import InferenceLoop
    from server.pipeline.loop_delay import LoopDelay
    from server.pipeline.speaker_worker import SpeakerWorker

log = logging.getLogger("voxlane.load")

SAMPLE_S = 1.0
LAG_WINDOW_S = 10.0
"""A stream's lowest lag over this long is compared with that of the span before (see
:meth:`LoadMonitor._trough_growth`)."""
LAG_GROWTH = 0.05
"""A lag whose lows grow faster than this (seconds per second), once past :data:`LAG_FLOOR_SHARE` of the target
(and 1.5 s), is a stream falling behind."""
LAG_FLOOR_SHARE = 0.75
OK_SHARE = 0.75
FULL_SHARE = 0.9
LOOP_FULL_SHARE = 0.025
LOOP_OVERLOADED_SHARE = 0.1
"""The event loop late by this share of the target (50 and 200 ms of a 2 s target) fills or overloads the node:
every stream's messages wait that long, and longer at the tail."""
SETTLE_S = 6.0
"""A stream this young has not slowed the others yet: the verdict does not count it as served."""
SHED_AFTER_S = 3.0
UNSHED_AFTER_S = 20.0
SHED_MEASURES = ("hurried readings", "slower partials", "fewer speaker windows")
ROUNDS_PER_COMMIT = 1.4
"""How many calibrated decodes' time a commit takes per slot's worth of streams, before anything is proven (see
:meth:`LoadMonitor.estimate`). The loop reads a pause before any refresh and a waiting stream gets one reading
of all it has, so commits do not queue behind every stream's decodes. On a 2-core AVX-512 EPYC the calibration
reads 0.160-0.164 s; the outside client measured sixteen streams at commit p95 1.11-1.17 s, and the server
read twenty at commit p90 1.0-1.1 s with the median stream 2.0-2.5 s behind and saw them fall behind at
twenty-two: 1.4 admits 17 there at once, and 8 on a machine that calibrates at 0.35 s (half as fast).
3.0, rounds of every stream's decodes, admitted 6 there before live decodes were measured."""


class Stream(Protocol):
    """A live stream as the monitor reads it (a publisher)."""

    started_at: float
    paused: bool
    finished: bool

    @property
    def lag_seconds(self) -> float: ...


@dataclass(frozen=True)
class Health:
    streams: int  # live streams now
    settled: int  # of them, those older than SETTLE_S
    commit_p90: float | None
    lag_max: float
    lag_typical: float  # the median stream's mean lag over the last LAG_WINDOW_S (see LoadMonitor.refusal)
    lag_growth: float  # the fastest-growing stream's lag, seconds per second
    loop_p99: float | None
    verdict: str  # ok | full | overloaded


@dataclass(frozen=True)
class Refusal:
    reason: str  # overloaded | full | capacity
    message: str
    details: dict[str, Any]


class LoadMonitor:
    """Reads the live streams' service once a second (see the module's note) and steers admission and shedding."""

    def __init__(self, *, target_s: float, streams: Callable[[], Sequence[Stream]], engine: InferenceLoop | None,
                 loop_delay: LoopDelay, speakers: SpeakerWorker | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.target_s = target_s
        self._streams = streams
        self._engine = engine
        self._loop_delay = loop_delay
        self._speakers = speakers
        self._clock = clock
        self._lags: dict[int, deque[tuple[float, float]]] = {}
        self.health = Health(0, 0, None, 0.0, 0.0, 0.0, None, "ok")
        self.proven = 0  # most streams served ok once settled
        self.overloaded_at: int | None = None  # fewest streams seen overloaded (until more are served ok)
        self.level = 0  # shed measures in force (the first ``level`` of SHED_MEASURES)
        self._since = clock()  # when the verdict last changed kind (ok / not ok)
        self._live_since: float | None = None  # when streams last began after none were live
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------ running

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="load-monitor")
            if self._engine is not None and self._engine.capacity.prior:
                log.info("live admission: a batch of live refreshes took %.3f s at warm-up: a burst of up to %d"
                         " streams is admitted at once", self._engine.capacity.prior, max(self.allowed(), 0))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._apply(0)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_S)
            try:
                self.sample()
            except Exception:  # a reading must never stop the control loop
                log.exception("load sample failed")

    # ------------------------------------------------------------ reading

    def sample(self) -> Health:
        now = self._clock()
        live = [s for s in self._streams() if not s.finished]
        settled = [s for s in live if now - s.started_at >= SETTLE_S]
        growth, lag_max = 0.0, 0.0
        means: list[float] = []
        seen = set()
        for s in live:
            key = id(s)
            seen.add(key)
            lag = 0.0 if s.paused else float(s.lag_seconds)
            lag_max = max(lag_max, lag)
            history = self._lags.setdefault(key, deque())
            history.append((now, lag))
            while history and now - history[0][0] > 2 * LAG_WINDOW_S:
                history.popleft()
            growth = max(growth, self._trough_growth(history, now))
            recent = [lag for t, lag in history if now - t <= LAG_WINDOW_S]
            means.append(sum(recent) / len(recent))
        for key in set(self._lags) - seen:
            del self._lags[key]
        commit = self._engine.capacity.commit_delay() if self._engine is not None else None
        loop = self._loop_lateness(live, now)
        if ((commit is not None and commit > self.target_s) or growth > 2 * LAG_GROWTH
                or (loop is not None and loop > LOOP_OVERLOADED_SHARE * self.target_s)):
            verdict = "overloaded"
        elif ((commit is not None and commit > FULL_SHARE * self.target_s) or growth > LAG_GROWTH
              or (loop is not None and loop > LOOP_FULL_SHARE * self.target_s)):
            verdict = "full"
        else:
            verdict = "ok"
        previous = self.health.verdict
        typical = sorted(means)[len(means) // 2] if means else 0.0
        self.health = Health(len(live), len(settled), commit, lag_max, typical, growth, loop, verdict)
        if (verdict == "ok") != (previous == "ok"):
            self._since = now
        self._learn(self.health)
        self._shed(self.health, now)
        return self.health

    def _loop_lateness(self, live: list[Stream], now: float) -> float | None:
        """The loop's p99 lateness since the first of ``live`` began (at most :data:`LAG_WINDOW_S`): a loop late
        while nothing streamed (the model warming, a job's start) says nothing of what a stream would get, and
        a fresh server's warm-up (0.13-0.14 s late) read ``full`` to the first burst."""
        if not live:
            self._live_since = None
            return None
        if self._live_since is None:
            self._live_since = min(s.started_at for s in live)
        return self._loop_delay.percentile(99, within_s=min(LAG_WINDOW_S, max(0.0, now - self._live_since)))

    def _trough_growth(self, history: deque[tuple[float, float]], now: float) -> float:
        """How fast a stream's lag rises where it is lowest: the least lag of its last :data:`LAG_WINDOW_S`
        against that of the window before, per second. A lag rises through every sentence and falls at its
        pause, so its peaks say little; a stream falling behind no longer comes back down."""
        if not history or now - history[0][0] < 1.5 * LAG_WINDOW_S:
            return 0.0
        recent = min(lag for t, lag in history if now - t <= LAG_WINDOW_S)
        before = min(lag for t, lag in history if now - t > LAG_WINDOW_S)
        if recent <= max(1.5, LAG_FLOOR_SHARE * self.target_s):
            return 0.0
        return max(0.0, (recent - before) / LAG_WINDOW_S)

    def _learn(self, health: Health) -> None:
        if health.verdict == "ok" and health.settled == health.streams and health.streams:
            self.proven = max(self.proven, health.streams)
            if self.overloaded_at is not None and health.streams >= self.overloaded_at:
                self.overloaded_at = None  # served well beyond it: what was seen then was something else
        elif health.verdict == "overloaded" and health.settled:
            at = health.settled
            self.overloaded_at = at if self.overloaded_at is None else min(self.overloaded_at, at)
            self.proven = min(self.proven, max(0, at - 1))

    def _shed(self, health: Health, now: float) -> None:
        if health.verdict == "overloaded" and self.level < len(SHED_MEASURES) and now - self._since >= SHED_AFTER_S:
            self._apply(self.level + 1)
            self._since = now
        elif health.verdict == "ok" and self.level and now - self._since >= UNSHED_AFTER_S:
            self._apply(self.level - 1)
            self._since = now
        elif not health.streams and self.level:
            self._apply(0)

    def _apply(self, level: int) -> None:
        if level != self.level:  # with the figures that decided it: an operator reads why, not only that
            figures = {k: v for k, v in self._figures().items() if k != "shedding"}
            log.warning("live load %s: %s %s", self.health.verdict, f"shedding {', '.join(SHED_MEASURES[:level])}"
                        if level else "no longer shedding", figures)
        self.level = level
        if self._engine is not None:
            self._engine.hurry_all = level >= 1
            self._engine.step_scale = 2.0 if level >= 2 else 1.0
        if self._speakers is not None:
            self._speakers.window_stride = 2 if level >= 3 else 1

    @property
    def shedding(self) -> list[str]:
        """The measures in force, in the order they are taken."""
        return list(SHED_MEASURES[:self.level])

    # ------------------------------------------------------------ admission

    def estimate(self) -> int | None:
        """Streams the decode cost calibrated at warm-up allows within the target: ``slots`` decodes at once,
        and a commit takes :data:`ROUNDS_PER_COMMIT` calibrated decodes per slot's worth of streams.

        The calibration, not the live decodes' median: live decodes lengthen with every stream admitted (0.06 s
        for the first second of a burst, 0.25 s at sixteen), so an estimate from them read 20 streams as a burst
        began and 4 once it was served at p95 1.2 s, and admitted 11 of 16 at once in one run, 15 in another.
        What the streams admitted then get is the verdict's to judge. A backend with no calibration (Riva) is
        sized on its measured decodes."""
        if self._engine is None:
            return None
        capacity = self._engine.capacity
        seconds = capacity.prior or capacity.decode_seconds()
        if not seconds:
            return None
        return max(1, math.floor(self._engine.slots * self.target_s / (ROUNDS_PER_COMMIT * seconds)))

    @property
    def floor(self) -> int:
        """Streams always admitted, whatever the verdict: two per decode slot (a loop that far from its knee
        serves them, and refusing them helps nobody: what slows them is not the streams)."""
        return 2 * self._engine.slots if self._engine is not None else 1

    def allowed(self) -> int:
        """Streams that may be live at once now: the most proven, the estimate, and at least :attr:`floor`,
        unless more than that overloaded the node with fewer."""
        guess = max(self.proven, self.estimate() or 0, self.floor)
        if self.overloaded_at is None:
            return guess
        return max(self.floor, min(guess, self.overloaded_at - 1))

    def refusal(self, streams: int, starting: int) -> Refusal | None:
        """Whether one more stream beside ``streams`` (``starting`` of them not settled yet) would be refused."""
        health = self.health
        if streams < self.floor:
            return None
        if self.level or health.verdict == "overloaded":
            return Refusal("overloaded", "the server is past its capacity: its live streams' words are made final"
                           f" later than {self.target_s:g} s after they are spoken, or fall behind; try again later",
                           self._figures())
        allowed = self.allowed()
        if streams < allowed and (health.verdict == "ok" or not health.settled):
            return None  # within what is proven or estimated: served well, or a burst the calibration sizes
        if health.verdict != "ok":
            return Refusal("full", "the server is at capacity: its live streams' words are made final close to"
                           f" {self.target_s:g} s after they are spoken; try again later", self._figures())
        if starting:
            return Refusal("capacity", f"the server serves {streams} live streams and the newest have not settled"
                           " yet; try again in a few seconds", {**self._figures(), "starting": starting})
        if self.overloaded_at is not None and streams + 1 >= self.overloaded_at:
            return Refusal("capacity", f"{self.overloaded_at} live streams overloaded this server; try again"
                           " later", self._figures())
        if health.commit_p90 is not None and health.commit_p90 > OK_SHARE * self.target_s:
            return Refusal("full", "the server is at capacity: one stream more would take its live streams' words"
                           f" past {self.target_s:g} s after they are spoken; try again later", self._figures())
        if health.lag_typical > OK_SHARE * self.target_s:
            # The knee shows in the lag before the commits: a pause's reading goes first, so commits stay quick
            # while every stream's refreshes come rarer. On 2 cores the median stream ran 1.3 s behind at 16
            # streams and 1.6-1.9 s at 18-20, with the commit p90 still 0.9-1.1 s, and twenty fell behind in one
            # run of two (probes held to 90 % of the target went on to them).
            return Refusal("full", "the server is at capacity: its live streams' transcripts run close to"
                           f" {self.target_s:g} s behind their audio; try again later", self._figures())
        return None  # settled and served with room to spare: one stream more is a probe

    def _figures(self) -> dict[str, Any]:
        h = self.health
        out: dict[str, Any] = {"streams": h.streams, "verdict": h.verdict,
                               "lag_growth_s_per_s": round(h.lag_growth, 3), "lag_typical_s": round(h.lag_typical, 2)}
        if h.commit_p90 is not None:
            out["commit_p90_s"] = round(h.commit_p90, 3)
        if h.loop_p99 is not None:
            out["loop_delay_p99_s"] = round(h.loop_p99, 4)
        if self.level:
            out["shedding"] = self.shedding
        return out
