"""One publisher stream on a recognizer that endpoints itself (NVIDIA Riva): its utterances become segments.

:class:`~asr.session.StreamSession` cuts windows and asks the inference loop to read them; here the service
does both, so this session only forwards the stream's audio and turns what comes back into the same
:class:`~asr.events.SegmentEvent` values, with the same rules, so that a subscriber cannot tell the backends
apart except by their text:

* an utterance is a segment: each interim result is a partial of it (its words not final), the final result
  is the segment's one final, with the recognizer's word timings in transcript time;
* a speaker turn the diarizer found inside an utterance (:meth:`turn_at`) cuts its final there, between words,
  into one segment per voice (each with one final);
* a call that fails is reported (``FailureEvent``) and a new call reads again the audio the failed one had not
  made final (up to ``REPLAY_MAX_S`` of it), on the same timeline, so its utterance keeps its segment and gets
  its final; a call that ends without a final for the utterance being spoken, or a stream whose calls keep
  failing, makes the last interim final: words a subscriber saw are not dropped.

Pausing ends the call (the paused audio is stored, not transcribed); resuming opens the next one.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np

from asr.backends.streaming import StreamedWord, StreamingOptions, StreamingRecognizer, StreamingResult
from asr.events import FailureEvent, SegmentEvent, WordEvent
from asr.policy import join_words
from asr.session import AudioListener, Emit, Report, SessionBase, StreamConfig, random_segment_id
from asr.speech_events import Told, speech_event
from asr.vad import SileroModel, SpeechTracker, VadStream
from media.audio import SAMPLE_RATE

log = logging.getLogger("voxlane.session")

RETRY_S = 1.0
"""Wait before a new call after a failed one; doubled per failure in a row, up to RETRY_MAX_S."""
RETRY_MAX_S = 30.0
REPLAY_MAX_S = 60.0
"""Most audio kept to read again after a failed call (a service that never makes anything final)."""
MAX_FAILURES = 5
"""Calls in a row that fail without a result: the service is not there, the stream's transcription stops."""

@dataclass
class _Utterance:
    """The utterance the recognizer is reading now: the segment its interims update."""

    id: str
    words: list[StreamedWord] = field(default_factory=list)  # stream time
    text: str = ""
    confidence: float = 0.0
    emitted: str | None = None  # text of the last partial sent


def _phrases(config: StreamConfig) -> tuple[str, ...]:
    """Riva's boosted phrases: the key terms whole ("Hester Prynne"), then the prompt's longer words."""
    words = [p for p in config.initial_prompt.replace(",", " ").split() if len(p) > 3]
    return tuple(dict.fromkeys([*config.key_terms, *words]))[:100]


class RecognizerSession(SessionBase):
    """The session interface of :class:`~asr.session.StreamSession` (what publishers and jobs call) over a
    :class:`~asr.backends.streaming.StreamingRecognizer`."""

    def __init__(self, *, recognizer: StreamingRecognizer, vad_model: SileroModel, emit: Emit,
                 config: StreamConfig | None = None, offset: float = 0.0, speaker: str | None = None,
                 participant_id: str | int | None = None, key: str | None = None,
                 listener: AudioListener | None = None, report: Report | None = None,
                 segment_ids: Callable[[], str] | None = None) -> None:
        super().__init__(kind="r", vad_model=vad_model, config=config, key=key, listener=listener)
        self.recognizer = recognizer
        self.options = StreamingOptions(
            language=self.config.language, interim_results=self.config.live,
            phrases=_phrases(self.config))
        self._new_id = segment_ids or random_segment_id
        self.offset = offset
        self.speaker = speaker
        self.participant_id = participant_id
        self._vad: VadStream | None = None  # for a listener or speech events only: the recognizer needs none
        self._tracker = SpeechTracker(self.config.vad)  # where speech is, for the speech events
        self._emit = emit
        self._report = report
        self._lock = threading.Lock()  # feed() runs on an ingest thread
        # audio blocks (stream time, samples) not yet handed to a call; None ends the call (a pause, the end)
        self._audio: deque[tuple[float, np.ndarray] | None] = deque()
        self._has_audio = asyncio.Event()
        self._call = 0  # the call now taking audio: a call that ended must not take the next one's
        self._unconfirmed: deque[tuple[float, np.ndarray]] = deque()  # handed to the call, not yet made final
        self._ended = False  # the call took its end (a pause or the stream's end)
        self._received = 0.0  # stream seconds taken in (paused ones too)
        self._sent = 0.0  # stream seconds handed to a call
        self._heard = 0.0  # stream seconds the recognizer said it processed
        self._paused = False
        self._finishing = False
        self._progressed = asyncio.Event()
        self._utterance: _Utterance | None = None
        self._turns: list[float] = []  # stream times of speaker turns, sorted
        self._last_end = 0.0  # end of the last final word (stream time)
        self.segments_emitted = 0

    # ------------------------------------------------------------ feeding

    @property
    def received(self) -> float:
        return self._received

    @property
    def lag_seconds(self) -> float:
        """Audio handed over that the recognizer has not answered for, while it reads an utterance."""
        if self._utterance is None and not self._audio:
            return 0.0
        return max(0.0, self._sent - self._heard)

    @property
    def hushed(self) -> bool:
        """Never: every frame is handed to the recognizer in order, from the ingest thread."""
        return False

    @property
    def backlog(self) -> int:
        """Audio blocks taken in and not yet handed to the recognizer."""
        return len(self._audio)

    @property
    def transcribed_until(self) -> float:
        """Stream time up to which every utterance is final."""
        if self._utterance is not None:
            return self._utterance.words[0].start if self._utterance.words else self._last_end
        return min(self._heard, self._received) if self._audio else self._received

    def feed(self, samples: np.ndarray) -> None:
        """Take audio in (on the event loop or, in stream order, on one worker thread)."""
        if len(samples) == 0 or self._finishing or self.error is not None:  # gave up: the caller stores it
            return
        seconds = len(samples) / SAMPLE_RATE
        with self._lock:
            t0, paused = self._received, self._paused
            self._received += seconds
        if paused:
            if self.listener is not None:
                self._on_loop(self.listener.skip, seconds)
            return
        if self.listener is not None or self.on_speech is not None:
            if self._vad is None:
                self._vad = VadStream(self._vad_model)
                self._tracker = SpeechTracker(self.config.vad, t=t0)
            probs = self._vad.process(samples)
            if self.listener is not None:
                self._on_loop(self.listener.heard, samples, probs)
            with self._lock:  # pause() and cut() tell speech events from the loop
                told = self._speech.heard(self._tracker, self._tracker.update(probs))
            self._tell_speech(told)
        self._on_loop(self._put, (t0, np.asarray(samples, dtype=np.float32)))

    def _tell_speech(self, told: list[Told]) -> None:
        if (tell := self.on_speech) is not None:
            for event in told:
                self._on_loop(tell, speech_event(event, self.offset, self.participant_id))

    def _put(self, item: tuple[float, np.ndarray] | None) -> None:
        """(event loop)"""
        self._audio.append(item)
        self._has_audio.set()

    async def _take(self, call: int) -> tuple[float, np.ndarray] | None:
        """The next block for call ``call``; None once the call is over (a pause, the end, or it ended)."""
        while True:
            if call != self._call:  # it ended: what comes is the next call's
                return None
            if self._audio:
                break
            self._has_audio.clear()
            await self._has_audio.wait()
        item = self._audio.popleft()
        self._progressed.set()
        return item

    def pause(self) -> None:
        """End the call: what it read is made final; the audio until :meth:`resume` is not transcribed."""
        with self._lock:
            self._paused = True
            told = self._speech.stopped(self._tracker)
        self._tell_speech(told)
        self._vad = None
        self._on_loop(self._put, None)

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def cut(self, t: float) -> None:
        """A client's commit (see :meth:`StreamSession.cut`): the call ends at the audio put so far, which is every
        sample before ``t``, and the audio after it opens the next call."""
        with self._lock:
            told = self._speech.cut(self._tracker, t)
        self._tell_speech(told)
        self.pause()  # the VAD starts again after it: speech going on is told started at its next onset
        self.resume()

    async def wait_backlog(self, at_most: int) -> None:
        """Backpressure for producers faster than real time (a recorded file)."""
        while len(self._audio) > at_most and self._driver is not None and not self._driver.done():
            self._progressed.clear()
            await self._progressed.wait()

    def turn_at(self, t: float) -> None:
        """The diarizer heard a new voice at stream time ``t``: the utterance's final is cut there."""
        if t > self._last_end:
            bisect.insort(self._turns, t)

    async def finish(self, flush_timeout: float = 60.0) -> None:
        """No more audio: the recognizer reads what it has, and every final is emitted."""
        self._finishing = True
        with self._lock:
            told = self._speech.stopped(self._tracker)
        self._tell_speech(told)
        self._put(None)
        if not await self._flushed(flush_timeout):
            await self.cancel()  # (cancelled already) until it has stopped: then its last interim is made final
            await self._close_utterance()

    # ------------------------------------------------------------ calls

    async def _drive(self) -> None:
        failures = 0
        while True:
            first = await self._take(self._call)
            if first is None:
                if self._finishing:
                    return
                continue  # a pause with nothing sent since
            origin = first[0]
            answered = False
            self._unconfirmed.clear()
            self._ended = False
            try:
                try:
                    async for result in self.recognizer.recognize(self._call_audio(first, self._call), self.options):
                        answered = True
                        await self._read(result, origin)
                finally:
                    self._call += 1  # over: its audio generator takes nothing more
                    self._has_audio.set()  # ...and sees so, if it waits
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures = 0 if answered else failures + 1
                give_up = failures >= MAX_FAILURES
                if give_up:
                    await self._close_utterance()
                else:  # the next call reads again what this one did not make final (and ends where it ended)
                    self._audio.extendleft([None] * self._ended + list(reversed(self._unconfirmed)))
                await self._fail(exc, give_up=give_up)
                if give_up:
                    return
                await asyncio.sleep(min(RETRY_MAX_S, RETRY_S * 2 ** max(0, failures - 1)))
                continue
            failures = 0
            await self._close_utterance()  # a call that ended mid-utterance: its last interim stands
            if self._finishing and not self._audio:
                return

    async def _call_audio(self, first: tuple[float, np.ndarray], call: int) -> AsyncIterator[np.ndarray]:
        """One call's audio: from ``first`` until a pause or the end (or the call is over: a transport may still
        ask a call that failed for audio, and must not get the next call's)."""
        item: tuple[float, np.ndarray] | None = first
        while item is not None:
            t0, samples = item
            self._sent = t0 + len(samples) / SAMPLE_RATE
            self._unconfirmed.append(item)
            while self._unconfirmed and self._sent - self._unconfirmed[0][0] > REPLAY_MAX_S:
                self._unconfirmed.popleft()
            yield samples
            item = await self._take(call)
        if call == self._call:
            self._ended = True

    async def _fail(self, exc: Exception, give_up: bool) -> None:
        message = f"{type(exc).__name__}: {exc}"
        log.warning("session %s: the recognizer failed (%s)%s", self.key, message,
                    "; giving up" if give_up else "; opening a new call")
        if give_up:
            self.error = message
        if self._report is not None:
            await self._report(FailureEvent(message=f"speech recognition failed: {message}", recoverable=not give_up,
                                            participant_id=self.participant_id))
        if give_up:  # what comes after is stored, not read: nobody waits on it
            self._audio.clear()

    # ------------------------------------------------------------ results

    async def _read(self, result: StreamingResult, origin: float) -> None:
        self._heard = max(self._heard, origin + result.audio_end)
        words = [StreamedWord(w.text, origin + w.start, origin + w.end, w.confidence) for w in result.words]
        if not words and result.text:  # an interim without word offsets: spread its words over what was heard
            words = _spread(result.text.split(), self._last_end if self._utterance is None else
                            (self._utterance.words[0].start if self._utterance.words else self._last_end),
                            self._heard, result.confidence)
        if self._utterance is None:
            if not words:
                return
            self._utterance = _Utterance(id=self._new_id())
        utt = self._utterance
        utt.words, utt.text, utt.confidence = words, result.text, result.confidence
        if result.is_final:
            confirmed = origin + result.audio_end  # the service endpointed here: what came before is read
            while self._unconfirmed and self._unconfirmed[0][0] + len(self._unconfirmed[0][1]) / SAMPLE_RATE \
                    <= confirmed + 1e-6:
                self._unconfirmed.popleft()
            await self._close_utterance()
        elif self.config.live and utt.text != utt.emitted:
            utt.emitted = utt.text
            await self._emit_event(utt.id, words, final=False)

    async def _close_utterance(self) -> None:
        """The current utterance's final: one segment per voice the turns heard in it."""
        utt, self._utterance = self._utterance, None
        if utt is None or not utt.words:
            return
        pieces: list[list[StreamedWord]] = [[]]
        turns = [t for t in self._turns if utt.words[0].start < t]
        for word in utt.words:
            if turns and pieces[-1] and word.start >= turns[0] - 0.05:
                pieces.append([])
            while turns and word.start >= turns[0] - 0.05:
                turns.pop(0)
            pieces[-1].append(word)
        self._last_end = utt.words[-1].end
        self._turns = [t for t in self._turns if t > self._last_end]
        for i, piece in enumerate(pieces):
            await self._emit_event(utt.id if i == 0 else self._new_id(), piece, final=True)

    async def _emit_event(self, segment_id: str, words: list[StreamedWord], final: bool) -> None:
        off = self.offset
        event = SegmentEvent(
            segment_id=segment_id, text=join_words(w.text for w in words),
            start=round(words[0].start + off, 3), end=round(words[-1].end + off, 3), is_final=final,
            confidence=round(sum(w.confidence for w in words) / len(words), 4),
            words=tuple(WordEvent(text=w.text, start=round(w.start + off, 3), end=round(w.end + off, 3),
                                  probability=round(min(1.0, max(0.0, w.confidence)), 4), final=final)
                        for w in words),
            speaker=self.speaker, participant_id=self.participant_id)
        if final:
            self.segments_emitted += 1
        try:
            await self._emit(event)
        finally:
            self._progressed.set()


def _spread(texts: list[str], start: float, end: float, confidence: float) -> list[StreamedWord]:
    """Words without times, given even shares of ``start``..``end`` (a partial's words are not final)."""
    if not texts:
        return []
    end = max(end, start + 0.1 * len(texts))
    step = (end - start) / len(texts)
    return [StreamedWord(t, start + i * step, start + (i + 1) * step, confidence) for i, t in enumerate(texts)]
