"""One publisher stream on the inference loop: audio in, VAD, and the driver of its decodes.

Every ingest path (WebSocket, WebRTC, uploads) feeds a ``StreamSession`` with
16 kHz mono float32 audio. The session decides *what* needs decoding (a final for
a closing segment, a commit after a pause, or a partial refresh) and lets the
inference loop decide *when*; the audio window is cut at dispatch time so a
session that is behind coalesces into one decode.

The rest is split by concern into parts over one shared state (:mod:`asr.stream_state`): the segments and
committed words every reader of them relies on (:mod:`asr.segment_book`), the planning of decode windows
(:mod:`asr.window_planner`), and the reading of a result into the segments (:mod:`asr.result_reader`); the
settings are :mod:`asr.stream_config`'s.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from asr.events import SpeechEvent
from asr.handoff import call_soon
from asr.inference import InferenceLoop, Priority
from asr.result_reader import ResultReader
from asr.segment_book import Emit, Report, SegmentBook
from asr.speech_events import SpeechTeller, Told, speech_event
from asr.stream_config import StreamConfig
from asr.stream_state import Segment, StreamState
from asr.vad import SileroModel, SpeechTracker, VadSteps, VadStream, run_steps
from asr.window_planner import WindowPlanner
from media.audio import SAMPLE_RATE

__all__ = ["AudioListener", "Emit", "Report", "Segment", "SessionBase", "StreamConfig", "StreamSession"]

log = logging.getLogger("voxlane.session")


class AudioListener(Protocol):
    """Something that follows a stream's audio with the session's VAD (speaker diarization)."""

    def heard(self, samples: np.ndarray, probs: np.ndarray) -> None: ...

    def skip(self, seconds: float) -> None: ...


_ids = itertools.count(1)


def random_segment_id() -> str:
    """A live segment's id where the caller derives none (every session kind makes them so)."""
    return uuid.uuid4().hex[:12]


class SessionBase:
    """What every session kind (this module's :class:`StreamSession`, and
    :class:`~asr.recognizer_session.RecognizerSession`) keeps and does alike: its settings, key, listener and
    speech teller, and the task that drives it, with the event loop that task and the listener live on."""

    def __init__(self, *, kind: str, vad_model: SileroModel, config: StreamConfig | None, key: str | None,
                 listener: AudioListener | None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.config = config or StreamConfig()
        self.key = key or f"{kind}{next(_ids)}-{uuid.uuid4().hex[:6]}"
        self.listener = listener  # gets the audio with its VAD probabilities (or the paused stretches)
        self.on_speech: Callable[[SpeechEvent], None] | None = None  # told, on the loop, when speech starts/stops
        self._speech = SpeechTeller(self.config.min_silence_s)
        self._vad_model = vad_model
        self._driver: asyncio.Task | None = None
        self._loop = loop  # until start(): the loop it was made on, if any (feed() may run on a worker thread)
        self.error: str | None = None

    def start(self) -> None:
        if self._driver is None:
            self._loop = asyncio.get_running_loop()
            self._driver = self._loop.create_task(self._drive(), name=f"session-{self.key}")

    async def _drive(self) -> None:
        raise NotImplementedError

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn`` on the event loop: now when this is it, else in the order queued (asyncio objects are
        loop-only; see :mod:`asr.handoff`)."""
        if self._loop is None:
            fn(*args)
        else:
            call_soon(self._loop, fn, *args)

    async def _flushed(self, flush_timeout: float) -> bool:
        """Wait for the driver to end, at most ``flush_timeout`` seconds: False when it did not (it is cancelled
        then)."""
        if self._driver is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._driver), flush_timeout)
            except TimeoutError:
                log.error("session %s did not flush within %.0fs", self.key, flush_timeout)
                self._driver.cancel()
                return False
        return True

    async def cancel(self) -> None:
        if self._driver is not None:
            self._driver.cancel()
            await asyncio.gather(self._driver, return_exceptions=True)


class StreamSession(SessionBase):
    """One stream's session on the inference loop: it takes the audio in, runs the VAD, and drives decodes.

    It is three parts over one :class:`~asr.stream_state.StreamState`: ``book`` (what the segments are,
    :mod:`asr.segment_book`), ``planner`` (which windows are read, :mod:`asr.window_planner`) and ``reader``
    (how a result is read into them, :mod:`asr.result_reader`); the session feeds the state and drives the
    decodes the planner asks for."""

    def __init__(self, *, engine: InferenceLoop, vad_model: SileroModel, emit: Emit,
                 config: StreamConfig | None = None, offset: float = 0.0, speaker: str | None = None,
                 participant_id: str | int | None = None, key: str | None = None,
                 listener: AudioListener | None = None, report: Report | None = None,
                 segment_ids: Callable[[], str] | None = None) -> None:
        super().__init__(kind="s", vad_model=vad_model, config=config, key=key, listener=listener,
                         loop=_running_loop())
        # A recorded file's job passes ids derived from its chunk, so an attempt run again replaces its own
        # segments instead of adding a second copy of them.
        self.state = StreamState(config=self.config, engine=engine, vad=VadStream(vad_model),
                                 new_id=segment_ids or random_segment_id, key=self.key, offset=offset,
                                 speaker=speaker, participant_id=participant_id)
        self._engine = engine  # the session schedules its decodes; the book measures their commits
        self.book = SegmentBook(self.state, emit)
        self.planner = WindowPlanner(self.state)
        self.reader = ResultReader(self.state, self.book, self.planner, report)

    @property
    def offset(self) -> float:
        """Transcript time of this stream's t=0."""
        return self.state.offset

    @offset.setter
    def offset(self, value: float) -> None:
        self.state.offset = value

    @property
    def speaker(self) -> str | None:
        return self.state.speaker

    @property
    def participant_id(self) -> str | int | None:
        return self.state.participant_id

    @property
    def segments_emitted(self) -> int:
        """Segments told final so far."""
        return self.book.segments_emitted

    # ------------------------------------------------------------ feeding (event loop)

    @property
    def received(self) -> float:
        """Seconds of audio this stream has received (paused audio included)."""
        return self.state.buffer.end

    @property
    def lag_seconds(self) -> float:
        with self.state.lock:
            if self.state.open is None and not self.state.closing:
                return 0.0
            tr = self.state.tracker
            heard = tr.t if tr.in_speech else (tr.speech_end or 0.0)  # speech received so far
            pending = [s.decoded_to for s in [*self.state.closing, *([self.state.open] if self.state.open else [])]]
            return max(0.0, min(heard, self.state.buffer.end) - min(pending))

    def feed(self, samples: np.ndarray) -> None:
        """Take audio in. VAD and buffering run where this is called: on the event loop, or on a worker thread
        (one call at a time, in stream order) so that a big frame never stalls other streams; the listener and
        the decode scheduler, which live on the event loop, are told there, in order."""
        steps = self.scoring(samples)
        self.take(samples, run_steps(self._vad_model, steps) if steps is not None else None)

    def scoring(self, samples: np.ndarray) -> VadSteps | None:
        """The VAD's steps over ``samples`` (see :func:`asr.vad.score_together`: an ingest thread runs those of
        many streams in one model call), or None when they are taken without (paused, finishing, empty). The
        probabilities go to :meth:`take`, in the same call order."""
        if len(samples) == 0 or self.state.finishing:
            return None
        with self.state.lock:  # pause()/resume() may run between two frames
            paused, vad = self.state.paused, self.state.vad
        return None if paused else vad.steps(samples)

    def take(self, samples: np.ndarray, probs: np.ndarray | None) -> None:
        """``samples`` with their VAD probabilities (None: scored by nobody, the stream is paused or done)."""
        if len(samples) == 0 or self.state.finishing:
            return
        if probs is None:
            with self.state.lock:
                self.state.buffer.skip(len(samples) / SAMPLE_RATE)
                self.state.tracker.t = self.state.buffer.end
            if self.listener is not None:
                self._on_loop(self.listener.skip, len(samples) / SAMPLE_RATE)
            return
        if self.listener is not None:
            self._on_loop(self.listener.heard, samples, probs)
        st = self.state
        with st.lock:
            st.buffer.append(samples)
            st.arrivals.append((st.buffer.end, st.engine.clock()))
            events = st.tracker.update(probs)
            for kind, t in events:
                if kind == "speech_start" and st.open is None:
                    start = max(t - st.config.lead_in_s, st.last_closed_end, st.buffer.start)
                    st.open = Segment(id=st.new_id(), start=start, window_start=start, decoded_to=start)
            told = self._speech.heard(st.tracker, events)
            self.book.update_segments()
            self._release_idle_audio()
        self._tell_speech(told)
        self._on_loop(self._poke)

    def _tell_speech(self, told: list[Told]) -> None:
        if self.on_speech is not None:
            for event in told:
                self._on_loop(self.on_speech, speech_event(event, self.state.offset, self.state.participant_id))

    IDLE_KEEP_S = 5.0
    """Audio kept behind the stream's end while nothing is open: a new segment's lead-in and VAD onset lag."""

    def _release_idle_audio(self) -> None:
        """(under the lock) Between segments no decode needs the buffered audio, save the last final's context
        that a segment starting soon may be lent: without this the buffer only shrank inside long segments,
        and a stream with long silences held all its audio (64 KB a second: 230 MB after an hour)."""
        st, cfg = self.state, self.config
        if st.open is not None or st.closing:
            return
        keep_from = st.buffer.end - max(self.IDLE_KEEP_S, cfg.lead_in_s)
        if st.last_words and st.buffer.end - st.last_words[-1].end <= cfg.context_gap_s + self.IDLE_KEEP_S:
            keep_from = min(keep_from, st.last_words[-1].end - cfg.context_s)
        st.buffer.discard_before(keep_from)

    def cut(self, t: float) -> None:
        """End the open segment at stream time ``t`` without stopping (a client's commit: OpenAI's
        ``input_audio_buffer.commit`` takes exactly the audio appended before it). Its final reads its window
        to ``t`` and keeps the words spoken before it; speech going on at ``t`` opens the next segment there,
        and no later segment reaches back before ``t`` for its lead-in (a pause closes at the speech's end,
        and the segment after it started a lead-in earlier: one word was read into both). The speech being
        told is told stopped (at ``t`` if it goes on, and started there again once the audio after the cut
        is heard as speech). Call it in order with the audio, after every sample before ``t``."""
        with self.state.lock:
            seg = self.state.open
            speaking = self.state.tracker.in_speech
            if seg is not None and seg.start < t:
                if speaking:
                    self.book.cut_at(seg, t)
                else:
                    self.book.close_open(t)  # at the speech's end and a pad, as a pause closes it
            self.state.last_closed_end = max(self.state.last_closed_end, t)
            self.state.cut_time = max(self.state.cut_time, t)
            told = self._speech.cut(self.state.tracker, t)
        self._tell_speech(told)
        self._on_loop(self._poke)

    def turn_at(self, t: float) -> None:
        """A speaker turn found at stream time ``t`` (live diarization): see :meth:`SegmentBook.turn_at`."""
        if self.book.turn_at(t):
            self._on_loop(self._poke)

    def pause(self) -> None:
        """Stop transcribing (audio is still stored by the caller); the open segment is finalized."""
        with self.state.lock:
            self.book.close_open(self.state.tracker.t)
            self.state.paused = True
            self.state.last_words = []  # the audio after the pause does not follow them
            told = self._speech.stopped(self.state.tracker)
        self._tell_speech(told)
        self._on_loop(self._poke)

    def resume(self) -> None:
        with self.state.lock:
            self.state.paused = False
            self.state.vad = VadStream(self.state.vad._model)
            self.state.tracker = SpeechTracker(self.config.vad)
            self.state.tracker.t = self.state.buffer.end

    @property
    def hushed(self) -> bool:
        """Whether the stream is in silence its VAD no longer asks the model about (see :class:`VadStream`)."""
        return not self.state.paused and self.state.vad.hushed

    @property
    def backlog(self) -> int:
        """Segments closed but not yet final."""
        return len(self.state.closing)

    async def wait_backlog(self, at_most: int) -> None:
        """Backpressure for producers faster than real time (uploads)."""
        while len(self.state.closing) > at_most and self._driver is not None and not self._driver.done():
            self.state.progressed.clear()
            await self.state.progressed.wait()

    @property
    def transcribed_until(self) -> float:
        """Stream time up to which every segment is final (file-mode progress)."""
        with self.state.lock:
            pending = [s.start for s in self.state.closing] + ([self.state.open.start] if self.state.open else [])
            return min(pending) if pending else self.state.buffer.end

    async def finish(self, flush_timeout: float = 60.0) -> None:
        """Flush: close the open segment and wait until every final has been emitted."""
        with self.state.lock:
            self.book.close_open(self.state.tracker.t)
            self.state.finishing = True
            told = self._speech.stopped(self.state.tracker)
        self._tell_speech(told)
        self._poke()
        await self._flushed(flush_timeout)
        self._engine.forget(self.key)

    async def cancel(self) -> None:
        await super().cancel()
        self._engine.forget(self.key)

    # ------------------------------------------------------------ decoding

    def _poke(self) -> None:
        self.state.wake.set()
        with self.state.lock:
            plan = self.planner.plan()
        if plan is not None and self._engine.is_queued(self.key):
            self._engine.schedule(self.key, self.planner.priority(plan), self.planner.build)  # a higher priority

    async def _drive(self) -> None:
        try:
            while True:
                with self.state.lock:
                    plan = self.planner.plan()
                    done = self.state.finishing and plan is None and self.state.open is None and not self.state.closing
                    # a final that needs no decode is sent now, not after the batch the model is running
                    read = plan is not None and plan.kind == Priority.FINAL and self.planner.read_to_the_end(plan)
                if done:
                    return
                if read:
                    await self._settle_without_decode()
                    continue
                if plan is None:
                    self.state.wake.clear()
                    with self.state.lock:
                        plan = self.planner.plan()
                    if plan is None:
                        await self.state.wake.wait()
                    continue
                decode = self._engine.schedule(self.key, self.planner.priority(plan), self.planner.build)
                if plan.kind == Priority.PARTIAL and self._engine.lanes > 1:
                    await self._read_refresh(decode)
                    continue
                value = await decode
                if value is None:
                    await self._settle_without_decode()
                else:
                    await self.reader.read(value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("session %s failed", self.key)
            self.error = str(exc)
            await self._salvage()
            await self.reader.tell(f"transcription of this stream stopped ({type(exc).__name__}: {exc}); its audio is"
                             " stored and its segments are final as last read", False)
        finally:
            self.state.progressed.set()

    async def _read_refresh(self, refresh: asyncio.Future) -> None:
        """Read a refresh; should a pause commit or a final become due while it runs, start that beside it
        on a free lane. The refresh is read if it ends first, and dropped if the urgent decode, which holds
        more of the audio, ends before it."""
        urgent: asyncio.Future | None = None
        while not refresh.done():
            self.state.wake.clear()  # every frame fed sets it: the plan is looked at again
            with self.state.lock:
                plan = self.planner.plan()
                overtake = self.planner.overtakes(plan) and not self._engine.is_queued(self.key)
                ready = plan is not None and plan.kind == Priority.FINAL and self.planner.read_to_the_end(plan)
            if ready:  # a segment closed on final words: its final goes out now, not after this refresh
                await self._settle_without_decode()
                continue
            if overtake and plan is not None:  # (it overtakes only when there is a plan)
                urgent = self._engine.schedule(self.key, plan.kind, self.planner.build_beside)
                break
            woken = asyncio.ensure_future(self.state.wake.wait())
            try:
                await asyncio.wait((refresh, woken), return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
        if urgent is not None:
            await asyncio.wait((refresh, urgent), return_when=asyncio.FIRST_COMPLETED)
            if not refresh.done():
                value = urgent.result()
                if value is not None:
                    refresh.add_done_callback(_dropped)  # read already: a lane still runs it, nobody waits
                    await self.reader.read(value)
                    return
                urgent = None  # it found nothing to read beside the refresh: the refresh's reading stands
        value = await refresh
        if value is not None:
            await self.reader.read(value)
        later = await urgent if urgent is not None else None
        if later is not None:
            await self.reader.read(later)
        if value is None and later is None:
            await self._settle_without_decode()

    async def _salvage(self) -> None:
        """The driver failed: every segment closes on the words it has read, so what the subscribers were
        shown is stored rather than left open forever."""
        with self.state.lock:
            self.book.close_open(self.state.tracker.t)
            segments = list(self.state.closing)
            self.state.closing.clear()
        try:
            for seg in segments:
                await self.book.final_as_read(seg)
        except Exception:
            log.exception("session %s could not store its last segments", self.key)

    async def _settle_without_decode(self) -> None:
        """build() declined: close a finishing segment as it stands, or wait for more audio."""
        with self.state.lock:
            plan = self.planner.plan()
            seg = self.state.closing[0] if (plan and plan.kind == Priority.FINAL) else None
            if seg is not None:
                self.state.closing.popleft()
        if seg is not None:
            await self.book.final_as_read(seg)
            return
        self.state.wake.clear()
        with self.state.lock:
            again = self.planner.plan()
        if again is not None and again.kind == Priority.PARTIAL:
            await asyncio.sleep(0.05)  # audio too short: wait a moment rather than spin
        elif again is None:
            await self.state.wake.wait()



def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a worker thread
        return None


def _dropped(decode: asyncio.Future) -> None:
    """A refresh that an urgent decode overtook ends: its reading is stale, and so is its failure."""
    if not decode.cancelled():
        decode.exception()
