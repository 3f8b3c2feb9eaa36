"""The ingest threads: every stream's audio taken in off the event loop, many streams in one pass.

Taking a frame in is decoding it, writing it to the stream's recording, running the VAD over it and handing the
session its probabilities. Each stream used to have a thread of its own for this, and every frame crossed to it
and back: at sixteen streams in 100 ms frames, 500-700 hand-offs a second, a VAD call per 32 ms chunk per stream
under one lock, and 20,000 context switches a second. Here a small fixed set of threads (``VOXLANE_INGEST_THREADS``)
takes, in each pass, the frames every stream has waiting: it decodes and stores each, runs all their VAD chunks
together (one model call scores a chunk of every stream: :func:`asr.vad.score_together`), hands each session its
audio, and tells the event loop of everything in one callback (:mod:`asr.handoff`). The thread count does not
grow with the streams.

A stream's work stays in order and is never run by two threads at once: each stream has an :class:`IngestQueue`,
and a pass takes the front of each ready queue. A frame is cut into pieces of at most a second of audio by its
publisher, and a pass takes at most :data:`PIECES_PER_PASS` of a stream's, so one stream's backlog (minutes sent
in one frame) is taken in a piece at a time beside the others instead of holding every stream up.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from asr.handoff import call_soon, gathered
from asr.vad import SileroModel, VadSteps, score_together

log = logging.getLogger("voxlane.ingest")

PIECES_PER_PASS = 4
"""Audio pieces (each at most a second) of one stream taken in one pass, before the other streams' turn."""


class Takes(Protocol):
    """A stream's session as the ingest threads feed it: the VAD's steps over some audio, then the audio with
    their probabilities (a session without :meth:`scoring` is fed whole, its VAD its own)."""

    def feed(self, samples: np.ndarray) -> None: ...


Prepare = Callable[[], tuple[int, np.ndarray]]
"""(ingest thread) Decode and store a piece of a stream's audio: (samples it counts for the stream's pacing, the
samples the session takes, none where they could not be stored)."""


@dataclass(eq=False)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    call: Callable[..., Any] | None = None  # an ordered call (pause, cut, ...)
    args: tuple[Any, ...] = ()
    prepare: Prepare | None = None  # audio
    session: Any = None
    counted: int = 0
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    error: BaseException | None = None


class IngestPool:
    """The process's ingest threads (see the module's note)."""

    def __init__(self, vad_model: SileroModel | None, threads: int = 1) -> None:
        self.vad_model = vad_model
        self._cond = threading.Condition()
        self._ready: deque[IngestQueue] = deque()
        self._stopping = False
        self.passes = 0  # passes run, and the pieces of audio they took in (metrics: pieces per pass)
        self.pieces = 0
        self._threads = [threading.Thread(target=self._run, name=f"voxlane-ingest-{i}", daemon=True)
                         for i in range(max(1, threads))]
        for t in self._threads:
            t.start()

    @property
    def threads(self) -> int:
        return len(self._threads)

    def queue(self) -> IngestQueue:
        """A new stream's queue."""
        return IngestQueue(self)

    def close(self, timeout: float = 5.0) -> None:
        """No more passes once what is queued is done (or ``timeout`` passed)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    # ------------------------------------------------------------ queues' side

    def _wake(self, queue: IngestQueue) -> None:
        """(under the condition) ``queue`` has work and no thread has it: it is ready."""
        if not queue.running and not queue.listed:
            queue.listed = True
            self._ready.append(queue)
            self._cond.notify()

    # ------------------------------------------------------------ ingest threads

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stopping:
                    self._cond.wait()
                if not self._ready:
                    return
                taken = []
                while self._ready:
                    queue = self._ready.popleft()
                    queue.listed = False
                    queue.running = True
                    taken.append((queue, queue.front()))
            try:
                self._pass(taken)
            except BaseException:  # a bug here must not stop every stream's audio: each job was answered
                log.exception("ingest pass failed")
            finally:
                with self._cond:
                    for queue, _ in taken:
                        queue.running = False
                        if queue.jobs:
                            self._wake(queue)

    def _pass(self, taken: list[tuple[IngestQueue, list[_Job]]]) -> None:
        """Each stream's front jobs: its ordered calls as they come, its audio pieces decoded and stored, their VAD
        run together with every other stream's, then taken in by the sessions; every job answered once all are
        done, in one hand-off to the event loop."""
        with gathered():
            audio: list[list[_Job]] = []
            for _, jobs in taken:
                pieces = [job for job in jobs if job.prepare is not None]
                if pieces:  # a queue's front is either ordered calls or audio pieces (see IngestQueue.front)
                    for job in pieces:
                        self._prepare(job)
                    audio.append(pieces)
                else:
                    for job in jobs:
                        self._call(job)
            self._take(audio)
            self.passes += 1  # counted before anyone hears the pass is done
            self.pieces += sum(len(pieces) for pieces in audio)
            for _, jobs in taken:
                for job in jobs:
                    call_soon(job.loop, _settle, job.future, job.counted, job.error)

    @staticmethod
    def _prepare(job: _Job) -> None:
        assert job.prepare is not None
        try:
            job.counted, job.samples = job.prepare()
        except BaseException as exc:  # answered to the caller of this piece alone
            job.error = exc

    @staticmethod
    def _call(job: _Job) -> None:
        assert job.call is not None
        try:
            job.counted = job.call(*job.args)
        except BaseException as exc:
            job.error = exc

    def _take(self, audio: list[list[_Job]]) -> None:
        """Each stream's pieces, in order, to its session: the VAD of all of them in shared model calls."""
        fed: list[tuple[Any, np.ndarray]] = []
        for pieces in audio:
            kept = [job.samples for job in pieces if job.error is None and len(job.samples)]
            if kept:
                fed.append((pieces[0].session, kept[0] if len(kept) == 1 else np.concatenate(kept)))
        scored: list[tuple[Any, np.ndarray, VadSteps]] = []
        for session, samples in fed:
            try:
                scoring = getattr(session, "scoring", None)
                steps = scoring(samples) if scoring is not None and self.vad_model is not None else None
                if steps is None and scoring is None:
                    session.feed(samples)  # a session whose VAD is its own
                elif steps is None:
                    session.take(samples, None)
                else:
                    scored.append((session, samples, steps))
            except Exception:
                log.exception("a stream's audio could not be taken in")
        if not scored:
            return
        assert self.vad_model is not None
        probs = score_together(self.vad_model, [steps for _, _, steps in scored])
        for (session, samples, _), p in zip(scored, probs, strict=True):
            try:
                session.take(samples, p)
            except Exception:
                log.exception("a stream's audio could not be taken in")


class IngestQueue:
    """One stream's work on the ingest threads, in the order it was asked for."""

    def __init__(self, pool: IngestPool) -> None:
        self.pool = pool
        self.jobs: deque[_Job] = deque()
        self.running = False  # a thread has its front
        self.listed = False  # in the pool's ready list
        self.closed = False

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        """``fn(*args)`` on an ingest thread after everything asked before; the future has its result."""
        return self._put(_Job(asyncio.get_running_loop(), asyncio.get_running_loop().create_future(), call=fn,
                              args=args))

    def feed(self, prepare: Prepare, session: Takes) -> asyncio.Future:
        """A piece of audio: ``prepare`` (decode, store) then the session takes what it gives; the future has the
        samples counted. Queued at once, so pieces asked for one after the other are taken in that order."""
        return self._put(_Job(asyncio.get_running_loop(), asyncio.get_running_loop().create_future(),
                              prepare=prepare, session=session))

    @property
    def idle(self) -> bool:
        """Nothing asked for is still to be done."""
        return not self.jobs and not self.running

    def close(self) -> None:
        """No more work; what was asked for still runs."""
        self.closed = True

    def _put(self, job: _Job) -> asyncio.Future:
        if self.closed:
            job.future.set_exception(RuntimeError("this stream takes no more audio"))
            return job.future
        with self.pool._cond:
            self.jobs.append(job)
            self.pool._wake(self)
        return job.future

    def front(self) -> list[_Job]:
        """(under the pool's condition) What a pass takes: the leading audio pieces (at most
        :data:`PIECES_PER_PASS`), or the leading ordered calls up to the next piece."""
        out: list[_Job] = []
        audio = self.jobs[0].prepare is not None
        while self.jobs and (self.jobs[0].prepare is not None) == audio and len(out) < PIECES_PER_PASS:
            out.append(self.jobs.popleft())
        return out


def _settle(future: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if future.done():  # its caller was cancelled: the work was done all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
