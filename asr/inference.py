"""The dedicated inference loop: it owns the model and decides what runs next.

Sessions never queue audio here. They register *that* they have work and hand
over a ``build`` callback that snapshots their freshest audio at dispatch time,
so a session that falls behind gets one decode of everything it has instead of
a backlog of stale windows (coalescing). Among ready sessions the loop serves
the most urgent priority first and, within a priority, the session served
least recently (fairness); up to ``backend.max_batch`` of them run as one batch.

A backend that can run several decodes at once (``backend.lanes``) gets one
thread per lane, all taking from the same schedule. A session's refreshes are
read one at a time, in order; only an urgent decode (a pause commit or a final)
may start on a free lane while the session's refresh still runs, so a speaker's
pause is not read a whole decode late behind a hypothesis it makes stale.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from asr.backends.base import AsrBackend, DecodeRequest, DecodeResult
from asr.batch_report import BatchReport, Observer
from asr.capacity import CapacityEstimator
from asr.pace import LivePace

log = logging.getLogger("voxlane.inference")


class Priority(IntEnum):
    FINAL = 0  # closes a segment: a subscriber is waiting for the final
    ENDPOINT = 1  # the speaker paused: commit what was said
    PARTIAL = 2  # refresh the live hypothesis
    BULK = 3  # uploads and jobs: only when live work is idle


URGENT = (Priority.FINAL, Priority.ENDPOINT)

# build() runs on the inference thread and returns (request, context) or None when
# nothing is left to do; context travels back untouched with the result.
Build = Callable[[], tuple[DecodeRequest, Any] | None]


@dataclass
class _Entry:
    key: str
    priority: Priority
    build: Build
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    seq: int
    ready_at: float


@dataclass
class LoopStats:
    batches: int = 0
    requests: int = 0
    busy_seconds: float = 0.0
    coalesced: int = 0
    max_batch_seen: int = 0
    hurried: int = 0  # requests decoded the cheaper way (other live streams waited, or the machine is slow)
    max_lanes_busy: int = 0  # most batches seen running at once
    # where the model's time goes: lane-seconds by the kind of decode (final, endpoint, partial, bulk), and the
    # encoder's share of them (as the backend reports it)
    seconds_by_kind: dict[str, float] = field(default_factory=dict)
    encode_seconds: float = 0.0


class InferenceLoop:
    def __init__(self, backend: AsrBackend, partial_max_wait: float = 1.5,
                 clock: Callable[[], float] = time.monotonic, step_s: float = 0.0) -> None:
        """``step_s``: the live streams' step (``StreamConfig.min_step_s``); once a full live decode takes
        longer on this machine, every live refresh is hurried (see :mod:`asr.pace`). 0: only decodes that other
        live streams wait for are."""
        self.backend = backend
        self.clock = clock  # the replay bench runs the loop on simulated time
        self.partial_max_wait = partial_max_wait
        self._cond = threading.Condition()
        self._pending: dict[str, _Entry] = {}
        self._running: dict[str, list[Priority]] = {}  # keys in flight, with the priority each was taken at
        self._in_flight = 0  # batches taken and not yet served: lanes busy
        self._last_served: dict[str, float] = {}
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.stats = LoopStats()
        # shed under overload (server.pipeline.load): every live reading hurried, live refreshes this many times
        # further apart
        self.hurry_all = False
        self.step_scale = 1.0
        self.capacity = CapacityEstimator()  # live decode timings: what admission control predicts from
        self.capacity.seed(getattr(backend, "calibration_seconds", None))  # until live decodes are measured
        self.pace = LivePace(step_s)
        self.pace.seed(self._warm_up_full_decode())  # until live decodes are measured
        # called on a lane's thread after each batch
        self.observers: list[Observer] = [self.capacity.observe, self.pace.observe]

    def _warm_up_full_decode(self) -> float | None:
        """A live-sized window read in full, alone, as the backend timed it warming up (None: not timed); the
        replay bench's loop models it instead."""
        return getattr(self.backend, "full_decode_seconds", None)

    # ------------------------------------------------------------ event-loop side

    @property
    def lanes(self) -> int:
        """Decodes the backend runs at once, each from a thread of the loop's own."""
        return max(1, getattr(self.backend, "lanes", 1))

    @property
    def slots(self) -> int:
        """Decodes served at once: lanes x batch size."""
        return self.lanes * max(1, getattr(self.backend, "max_batch", 1))

    def start(self) -> None:
        if not self._threads:
            self._stopping = False
            self._threads = [threading.Thread(target=self._run, args=(i,), name=f"voxlane-inference-{i}",
                                             daemon=True)
                             for i in range(self.lanes)]
            for t in self._threads:
                t.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        for entry in list(self._pending.values()):
            _resolve(entry, None, RuntimeError("inference loop stopped"))
        self._pending.clear()

    def schedule(self, key: str, priority: Priority, build: Build) -> asyncio.Future:
        """Ask for one decode for ``key``; a second call before dispatch coalesces into the first.

        The future resolves to ``(result, context)`` or ``None`` when ``build`` found nothing to do.
        """
        loop = asyncio.get_running_loop()
        with self._cond:
            entry = self._pending.get(key)
            if entry is not None:
                self.stats.coalesced += 1
                if priority < entry.priority:
                    entry.priority = priority
                entry.build = build
                return entry.future
            if self._stopping:
                fut = loop.create_future()
                fut.set_exception(RuntimeError("inference loop stopped"))
                return fut
            entry = _Entry(key, priority, build, loop.create_future(), loop, next(self._seq), self.clock())
            self._pending[key] = entry
            self._cond.notify_all()  # every lane: only some of them may take it
            return entry.future

    @property
    def queue_depth(self) -> int:
        """Sessions waiting for a decode now (each coalesced into one request)."""
        with self._cond:
            return len(self._pending)

    def is_queued(self, key: str) -> bool:
        with self._cond:
            return key in self._pending

    def forget(self, key: str) -> None:
        """Drop fairness bookkeeping for a finished session."""
        with self._cond:
            self._last_served.pop(key, None)

    def _takeable(self, e: _Entry) -> bool:
        """Nothing of this session is in flight, or only a refresh that this urgent decode overtakes (called
        under the condition)."""
        running = self._running.get(e.key)
        return not running or (e.priority in URGENT and running == [Priority.PARTIAL])

    def _waiting(self) -> bool:
        """Some session has work that a free lane may take now (called under the condition)."""
        return any(self._takeable(e) for e in self._pending.values())

    # ------------------------------------------------------------ inference thread

    def _effective(self, e: _Entry, now: float) -> Priority:
        """Aging: a live refresh that has waited too long competes with pause commits, so a stream that
        never pauses is not starved by streams that pause often."""
        if e.priority == Priority.PARTIAL and now - e.ready_at > self.partial_max_wait:
            return Priority.ENDPOINT
        return e.priority

    def _take_batch(self) -> tuple[list[_Entry], bool]:
        """The next batch, and whether to hurry it: live work of other streams is left waiting behind it
        (more than the lanes still free will take at once), or it is a batch of live refreshes and this
        machine's full decodes take longer than the live step (``self.pace``). A pause's reading and a
        segment's final are then still read in full: they commit the words that stay, and a refresh only
        shows them sooner."""
        now = self.clock()
        ready = [e for e in self._pending.values() if self._takeable(e)]
        # an aged refresh ranks with the pause commits but after them: under load most refreshes age, and a pause
        # read behind them commits its words a round of decodes late
        ready.sort(key=lambda e: (self._effective(e, now), e.priority, self._last_served.get(e.key, 0.0), e.seq))
        # a batch holds requests of one urgency: a segment's final must not wait for three refreshes
        # (finals and pause commits go together, partial refreshes together, uploads alone)
        prio = {e.key: self._effective(e, now) for e in ready}
        head = prio[ready[0].key] if ready else None
        same = [e for e in ready if (prio[e.key] in URGENT) == (head in URGENT) and
                (prio[e.key] == Priority.BULK) == (head == Priority.BULK)]
        batch = same[: self.backend.max_batch]
        for e in batch:
            del self._pending[e.key]
            self._running.setdefault(e.key, []).append(e.priority)
        if batch:
            self._in_flight += 1
            self.stats.max_lanes_busy = max(self.stats.max_lanes_busy, self._in_flight)
        taken = {e.key for e in batch}
        behind = sum(e.key not in taken and prio[e.key] != Priority.BULK for e in ready)
        slow = self.pace.behind and head == Priority.PARTIAL
        shed = self.hurry_all and head != Priority.BULK
        return batch, shed or slow or behind > (self.lanes - self._in_flight) * self.backend.max_batch

    def _run(self, lane: int = 0) -> None:
        """Lane ``lane`` takes work only while the lanes before it are all busy: a lone stream is always
        decoded by the first lane's model, warm in the CPU's caches (two lanes taking turns made a decode
        alone slower)."""
        while True:
            with self._cond:
                while not self._stopping and not (self._waiting() and self._in_flight >= lane):
                    self._cond.wait()
                if self._stopping:
                    return
                batch, hurried = self._take_batch()
                if self._waiting():
                    self._cond.notify_all()  # the next lane may now take what is left
            try:
                built = self._build(batch, hurried)
                if built:
                    self._deliver(built, self._decode(built))
            finally:
                self._served(batch)

    def _served(self, batch: list[_Entry]) -> None:
        now = self.clock()
        with self._cond:
            if batch:
                self._in_flight -= 1
            for e in batch:
                running = self._running[e.key]
                running.remove(e.priority)
                if not running:
                    del self._running[e.key]
                self._last_served[e.key] = now
            self._cond.notify_all()  # a session that was running may have work pending: any free lane takes it

    def _build(self, batch: list[_Entry], hurried: bool) -> list[tuple[_Entry, DecodeRequest, Any]]:
        """Each session cuts its window now, at dispatch: the freshest audio, coalesced. ``hurried``: live work
        waits behind this batch, so its requests are marked for the backend's cheaper decode."""
        built: list[tuple[_Entry, DecodeRequest, Any]] = []
        for e in batch:
            try:
                item = e.build()
            except Exception as exc:  # a session bug must not kill the loop
                log.exception("build failed for %s", e.key)
                _resolve(e, None, exc)
                continue
            if item is None:
                _resolve(e, None, None)
            else:
                if hurried:
                    item[0].hurried = True
                built.append((e, item[0], item[1]))
        return built

    def _decode(self, built: list[tuple[_Entry, DecodeRequest, Any]]) -> list[DecodeResult]:
        dispatched = self.clock()
        t0 = time.perf_counter()
        results = self._transcribe([r for _, r, _ in built])
        dt = self._spent(built, results, time.perf_counter() - t0)
        hurried = sum(r.hurried for _, r, _ in built)
        with self._cond:
            self.stats.batches += 1
            self.stats.requests += len(built)
            self.stats.hurried += hurried
            self.stats.busy_seconds += dt  # lane-seconds: lanes decoding at once each count
            self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(built))
            by_kind = self.stats.seconds_by_kind
            for e, _, _ in built:  # each request its share of the batch
                by_kind[e.priority.name.lower()] = by_kind.get(e.priority.name.lower(), 0.0) + dt / len(built)
            measured = sum(r.compute_seconds for r in results)
            if measured > 0:  # the encoder's share of what the backend measured, applied to what the batch cost
                self.stats.encode_seconds += dt * sum(r.encode_seconds for r in results) / measured
            lanes_busy = self._in_flight
        self._report(BatchReport(
            size=len(built), seconds=dt, live=any(e.priority != Priority.BULK for e, _, _ in built),
            urgent=any(e.priority in URGENT for e, _, _ in built), hurried=hurried,
            waited=max(0.0, max(dispatched - e.ready_at for e, _, _ in built)), lanes_busy=lanes_busy))
        return results

    def _spent(self, built: list[tuple[_Entry, DecodeRequest, Any]], results: list[DecodeResult],
               measured: float) -> float:
        """What the batch cost, as stats and observers see it: the time it took (the replay bench's loop
        charges a modelled time instead)."""
        return measured

    def _report(self, report: BatchReport) -> None:
        for observe in list(self.observers):
            try:
                observe(report)
            except Exception:  # an observer's bug must not cost a stream its result
                log.exception("inference observer %r failed", observe)

    def _transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """A batch the backend fails on is read again a window at a time: one window it cannot read (a
        GPU out of memory on the longest, a server that rejects one stream's audio) fails alone instead of
        failing every stream batched with it."""
        try:
            return self.backend.transcribe(requests)
        except Exception as exc:
            if len(requests) > 1:
                log.warning("backend failed on a batch of %d (%s: %s): each window is read alone", len(requests),
                            type(exc).__name__, exc)
                return [self._transcribe([r])[0] for r in requests]
            log.exception("backend failed on a window")
            return [DecodeResult(error=f"{type(exc).__name__}: {exc}")]

    def _deliver(self, built: list[tuple[_Entry, DecodeRequest, Any]], results: list[DecodeResult]) -> None:
        for (e, _, ctx), res in zip(built, results, strict=True):
            _resolve(e, (res, ctx), None)


def _resolve(entry: _Entry, value: Any, exc: BaseException | None) -> None:
    def done() -> None:
        if entry.future.done():
            return
        if exc is not None:
            entry.future.set_exception(exc)
        else:
            entry.future.set_result(value)

    try:
        entry.loop.call_soon_threadsafe(done)
    except RuntimeError:  # the event loop is closed: nobody is waiting any more
        pass
