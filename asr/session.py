"""One publisher stream on the inference loop: audio in, VAD, and the driver of its decodes.

Every ingest path (WebSocket, WebRTC, uploads) feeds a ``StreamSession`` with
16 kHz mono float32 audio. The session decides *what* needs decoding (a final for
a closing segment, a commit after a pause, or a partial refresh) and lets the
inference loop decide *when*; the audio window is cut at dispatch time so a
session that is behind coalesces into one decode.

The rest is split by concern: the segments and committed words every reader of them relies on
(:mod:`asr.segment_book`), the planning of decode windows (:mod:`asr.window_planner`), and the reading of a
result into the segments (:mod:`asr.result_reader`); the settings are :mod:`asr.stream_config`'s.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from asr.audio_buffer import AudioBuffer
from asr.client_cuts import ClientCuts
from asr.events import SpeechEvent
from asr.handoff import call_soon
from asr.inference import InferenceLoop, Priority
from asr.policy import TimedWord
from asr.segment_book import Emit, Report, Segment
from asr.speech_events import SpeechTeller, Told, speech_event
from asr.stream_config import StreamConfig
from asr.vad import SileroModel, SpeechTracker, VadSteps, VadStream, run_steps
from media.audio import SAMPLE_RATE

__all__ = ["AudioListener", "Emit", "Report", "Segment", "StreamConfig", "StreamSession"]

log = logging.getLogger("voxlane.session")


class AudioListener(Protocol):
    """Something that follows a stream's audio with the session's VAD (speaker diarization)."""

    def heard(self, samples: np.ndarray, probs: np.ndarray) -> None: ...

    def skip(self, seconds: float) -> None: ...


_ids = itertools.count(1)


def random_segment_id() -> str:
    """A live segment's id where the caller derives none (every session kind makes them so)."""
    return uuid.uuid4().hex[:12]


class StreamSession(ClientCuts):
    """One stream's session on the inference loop: it takes the audio in, runs the VAD, and drives decodes;
    what the segments are (:mod:`asr.segment_book`), which windows are read (:mod:`asr.window_planner`) and how
    a result is read into them (:mod:`asr.result_reader`) live in the classes it builds on."""

    def __init__(self, *, engine: InferenceLoop, vad_model: SileroModel, emit: Emit,
                 config: StreamConfig | None = None, offset: float = 0.0, speaker: str | None = None,
                 participant_id: str | int | None = None, key: str | None = None,
                 listener: AudioListener | None = None, report: Report | None = None,
                 segment_ids: Callable[[], str] | None = None) -> None:
        self.config = config or StreamConfig()
        # A recorded file's job passes ids derived from its chunk, so an attempt run again replaces its own
        # segments instead of adding a second copy of them.
        self._new_id = segment_ids or random_segment_id
        self.key = key or f"s{next(_ids)}-{uuid.uuid4().hex[:6]}"
        self.offset = offset  # transcript time of this stream's t=0
        self.speaker = speaker
        self.participant_id = participant_id
        self._engine = engine
        self._emit = emit
        self._report = report  # tells the subscribers when the model fails on this stream
        self._failing = False  # decodes fail since the last one that read: reported once per run of them
        self.listener = listener  # gets the audio with its VAD probabilities (or the paused stretches)
        self.on_speech: Callable[[SpeechEvent], None] | None = None  # told, on the loop, when speech starts/stops
        self._speech = SpeechTeller(self.config.min_silence_s)
        self._vad_model = vad_model
        self._vad = VadStream(vad_model)
        self._tracker = SpeechTracker(self.config.vad)
        self._buffer = AudioBuffer()
        self._lock = threading.Lock()
        self._open: Segment | None = None
        self._closing: deque[Segment] = deque()
        self._last_closed_end = 0.0
        self._history = self.config.initial_prompt.strip()  # recent final text, the prompt for the next segment
        self._last_words: list[TimedWord] = []  # the words of the latest final, stream time
        self._paused = False
        self._finishing = False
        self._wake = asyncio.Event()
        self._driver: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = _running_loop()  # feed() may run on a worker thread
        self._decoded_to = 0.0
        self._last_cut: tuple[Segment, float] | None = None  # the segment and end of the latest window cut
        self._progressed = asyncio.Event()
        # (stream time, loop clock) as audio arrives: how long after its audio came a word was committed
        self._arrivals: deque[tuple[float, float]] = deque(maxlen=4096)
        self.segments_emitted = 0
        self.error: str | None = None

    # ------------------------------------------------------------ feeding (event loop)

    @property
    def received(self) -> float:
        """Seconds of audio this stream has received (paused audio included)."""
        return self._buffer.end

    @property
    def lag_seconds(self) -> float:
        with self._lock:
            if self._open is None and not self._closing:
                return 0.0
            tr = self._tracker
            heard = tr.t if tr.in_speech else (tr.speech_end or 0.0)  # speech received so far
            pending = [s.decoded_to for s in self._closing] + ([self._open.decoded_to] if self._open else [])
            return max(0.0, min(heard, self._buffer.end) - min(pending))

    def start(self) -> None:
        if self._driver is None:
            self._loop = asyncio.get_running_loop()
            self._driver = self._loop.create_task(self._drive(), name=f"session-{self.key}")

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
        if len(samples) == 0 or self._finishing:
            return None
        with self._lock:  # pause()/resume() may run between two frames
            paused, vad = self._paused, self._vad
        return None if paused else vad.steps(samples)

    def take(self, samples: np.ndarray, probs: np.ndarray | None) -> None:
        """``samples`` with their VAD probabilities (None: scored by nobody, the stream is paused or done)."""
        if len(samples) == 0 or self._finishing:
            return
        if probs is None:
            with self._lock:
                self._buffer.skip(len(samples) / SAMPLE_RATE)
                self._tracker.t = self._buffer.end
            if self.listener is not None:
                self._on_loop(self.listener.skip, len(samples) / SAMPLE_RATE)
            return
        if self.listener is not None:
            self._on_loop(self.listener.heard, samples, probs)
        with self._lock:
            self._buffer.append(samples)
            self._arrivals.append((self._buffer.end, self._engine.clock()))
            events = self._tracker.update(probs)
            for kind, t in events:
                if kind == "speech_start" and self._open is None:
                    start = max(t - self.config.lead_in_s, self._last_closed_end, self._buffer.start)
                    self._open = Segment(id=self._new_id(), start=start, window_start=start,
                                         decoded_to=start)
            told = self._speech.heard(self._tracker, events)
            self._update_segments()
            self._release_idle_audio()
        self._tell_speech(told)
        self._on_loop(self._poke)

    def _tell_speech(self, told: list[Told]) -> None:
        if self.on_speech is not None:
            for event in told:
                self._on_loop(self.on_speech, speech_event(event, self.offset, self.participant_id))

    IDLE_KEEP_S = 5.0
    """Audio kept behind the stream's end while nothing is open: a new segment's lead-in and VAD onset lag."""

    def _release_idle_audio(self) -> None:
        """(under the lock) Between segments no decode needs the buffered audio, save the last final's context
        that a segment starting soon may be lent: without this the buffer only shrank inside long segments,
        and a stream with long silences held all its audio (64 KB a second: 230 MB after an hour)."""
        if self._open is not None or self._closing:
            return
        cfg = self.config
        keep_from = self._buffer.end - max(self.IDLE_KEEP_S, cfg.lead_in_s)
        if self._last_words and self._buffer.end - self._last_words[-1].end <= cfg.context_gap_s + self.IDLE_KEEP_S:
            keep_from = min(keep_from, self._last_words[-1].end - cfg.context_s)
        self._buffer.discard_before(keep_from)

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn`` on the event loop: now when this is it, else in the order queued (asyncio objects are
        loop-only; see :mod:`asr.handoff`)."""
        if self._loop is None:
            fn(*args)
        else:
            call_soon(self._loop, fn, *args)

    def pause(self) -> None:
        """Stop transcribing (audio is still stored by the caller); the open segment is finalized."""
        with self._lock:
            self._close_open(self._tracker.t)
            self._paused = True
            self._last_words = []  # the audio after the pause does not follow them
            told = self._speech.stopped(self._tracker)
        self._tell_speech(told)
        self._on_loop(self._poke)

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._vad = VadStream(self._vad._model)
            self._tracker = SpeechTracker(self.config.vad)
            self._tracker.t = self._buffer.end

    @property
    def hushed(self) -> bool:
        """Whether the stream is in silence its VAD no longer asks the model about (see :class:`VadStream`)."""
        return not self._paused and self._vad.hushed

    @property
    def backlog(self) -> int:
        """Segments closed but not yet final."""
        return len(self._closing)

    async def wait_backlog(self, at_most: int) -> None:
        """Backpressure for producers faster than real time (uploads)."""
        while len(self._closing) > at_most and self._driver is not None and not self._driver.done():
            self._progressed.clear()
            await self._progressed.wait()

    @property
    def transcribed_until(self) -> float:
        """Stream time up to which every segment is final (file-mode progress)."""
        with self._lock:
            pending = [s.start for s in self._closing] + ([self._open.start] if self._open else [])
            return min(pending) if pending else self._buffer.end

    async def finish(self, flush_timeout: float = 60.0) -> None:
        """Flush: close the open segment and wait until every final has been emitted."""
        with self._lock:
            self._close_open(self._tracker.t)
            self._finishing = True
            told = self._speech.stopped(self._tracker)
        self._tell_speech(told)
        self._poke()
        if self._driver is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._driver), flush_timeout)
            except TimeoutError:
                log.error("session %s did not flush within %.0fs", self.key, flush_timeout)
                self._driver.cancel()
        self._engine.forget(self.key)

    async def cancel(self) -> None:
        if self._driver is not None:
            self._driver.cancel()
            await asyncio.gather(self._driver, return_exceptions=True)
        self._engine.forget(self.key)

    # ------------------------------------------------------------ decoding

    def _poke(self) -> None:
        self._wake.set()
        with self._lock:
            plan = self._plan()
        if plan is not None and self._engine.is_queued(self.key):
            self._engine.schedule(self.key, self._priority(plan), self._build)  # upgrade priority

    async def _drive(self) -> None:
        try:
            while True:
                with self._lock:
                    plan = self._plan()
                    done = self._finishing and plan is None and self._open is None and not self._closing
                    # a final that needs no decode is sent now, not after the batch the model is running
                    read = plan is not None and plan.kind == Priority.FINAL and self._read_to_the_end(plan)
                if done:
                    return
                if read:
                    await self._settle_without_decode()
                    continue
                if plan is None:
                    self._wake.clear()
                    with self._lock:
                        plan = self._plan()
                    if plan is None:
                        await self._wake.wait()
                    continue
                decode = self._engine.schedule(self.key, self._priority(plan), self._build)
                if plan.kind == Priority.PARTIAL and self._engine.lanes > 1:
                    await self._read_refresh(decode)
                    continue
                value = await decode
                if value is None:
                    await self._settle_without_decode()
                else:
                    await self._read(value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("session %s failed", self.key)
            self.error = str(exc)
            await self._salvage()
            await self._tell(f"transcription of this stream stopped ({type(exc).__name__}: {exc}); its audio is"
                             " stored and its segments are final as last read", False)
        finally:
            self._progressed.set()

    async def _read_refresh(self, refresh: asyncio.Future) -> None:
        """Read a refresh; should a pause commit or a final become due while it runs, start that beside it
        on a free lane. The refresh is read if it ends first, and dropped if the urgent decode, which holds
        more of the audio, ends before it."""
        urgent: asyncio.Future | None = None
        while not refresh.done():
            self._wake.clear()  # every frame fed sets it: the plan is looked at again
            with self._lock:
                plan = self._plan()
                overtake = self._overtakes(plan) and not self._engine.is_queued(self.key)
                ready = plan is not None and plan.kind == Priority.FINAL and self._read_to_the_end(plan)
            if ready:  # a segment closed on final words: its final goes out now, not after this refresh
                await self._settle_without_decode()
                continue
            if overtake and plan is not None:  # (it overtakes only when there is a plan)
                urgent = self._engine.schedule(self.key, plan.kind, self._build_beside)
                break
            woken = asyncio.ensure_future(self._wake.wait())
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
                    await self._read(value)
                    return
                urgent = None  # it found nothing to read beside the refresh: the refresh's reading stands
        value = await refresh
        if value is not None:
            await self._read(value)
        later = await urgent if urgent is not None else None
        if later is not None:
            await self._read(later)
        if value is None and later is None:
            await self._settle_without_decode()

    async def _salvage(self) -> None:
        """The driver failed: every segment closes on the words it has read, so what the subscribers were
        shown is stored rather than left open forever."""
        with self._lock:
            self._close_open(self._tracker.t)
            segments = list(self._closing)
            self._closing.clear()
        try:
            for seg in segments:
                await self._final_as_read(seg)
        except Exception:
            log.exception("session %s could not store its last segments", self.key)

    async def _settle_without_decode(self) -> None:
        """build() declined: close a finishing segment as it stands, or wait for more audio."""
        with self._lock:
            plan = self._plan()
            seg = self._closing[0] if (plan and plan.kind == Priority.FINAL) else None
            if seg is not None:
                self._closing.popleft()
        if seg is not None:
            await self._final_as_read(seg)
            return
        self._wake.clear()
        with self._lock:
            again = self._plan()
        if again is not None and again.kind == Priority.PARTIAL:
            await asyncio.sleep(0.05)  # audio too short: wait a moment rather than spin
        elif again is None:
            await self._wake.wait()



def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a worker thread
        return None


def _dropped(decode: asyncio.Future) -> None:
    """A refresh that an urgent decode overtook ends: its reading is stale, and so is its failure."""
    if not decode.cancelled():
        decode.exception()
