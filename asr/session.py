"""One publisher stream's speech state: VAD, open segment, commit policy, emitted events.

Every ingest path (WebSocket, WebRTC, uploads) feeds a ``StreamSession`` with
16 kHz mono float32 audio. The session decides *what* needs decoding (a final for
a closing segment, a commit after a pause, or a partial refresh) and lets the
inference loop decide *when*; the audio window is cut at dispatch time so a
session that is behind coalesces into one decode.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from asr.audio_buffer import AudioBuffer
from asr.backends.base import LOOP_COMPRESSION_RATIO, DecodeRequest, DecodeResult
from asr.events import FailureEvent, SegmentEvent, WordEvent
from asr.inference import InferenceLoop, Priority
from asr.policy import (
    Hypotheses,
    TimedWord,
    attach_punctuation,
    copies_prompt,
    drop_trailing_hallucination,
    in_time_order,
    join_words,
    stop_at_stacked_words,
    trim_repetition,
)
from asr.vad import CHUNK_SECONDS, SileroModel, SpeechTracker, VadConfig, VadStream
from media.audio import SAMPLE_RATE

log = logging.getLogger("voxlane.session")


@dataclass
class StreamConfig:
    vad: VadConfig = field(default_factory=VadConfig)
    min_silence_s: float = 0.8  # a pause this long ends the segment (turn gaps are 0.2-0.4 s)
    pause_commit_s: float = 0.25  # a pause this long commits the words before it
    pause_commit_confidence: float = 0.5  # ...unless a word is this unsure and no earlier hypothesis had it
    # a pause this long commits every word its reading holds before it, an unsure one or a young segment's too:
    # the segment's final would take that very reading had the pause gone on to min_silence_s (see _settle_pause).
    # Replay at N=1, errors of 1372: 133 without, 134 with 0.35 s; commit p95 1.94 -> 1.21 s
    pause_settle_s: float = 0.35
    # least new audio before the hypothesis is refreshed. 1.0 s (VOXLANE_MIN_STEP_MS=1000) reads a lone stream
    # better and with 40 % less CPU (replay at N=1, errors of 1372: 136 -> 123; real time, WER 9.62/9.40 ->
    # 9.18/9.18 %, offline 8.45 %) but four streams worse (real time 131/131 -> 140/132/147 errors)
    min_step_s: float = 0.5
    first_step_s: float = 0.5  # the step before a segment's first reading: its first partial comes this early
    agree_right_context_s: float = 1.0  # agreement commits only words with this much audio after them
    settle_s: float = 1.5  # a word with this much audio after it is committed even if hypotheses disagree
    # ...and a word below this probability needs this much more audio after it, for both (one wrong reading
    # repeated by two hypotheses half a second apart is the commonest streamed error)
    unsure_probability: float = 0.5
    unsure_wait_s: float = 1.0
    lead_in_s: float = 0.2  # audio kept before speech onset (0.6 helped some files and hurt others)
    max_segment_s: float = 20.0  # segments are split at a committed word boundary beyond this
    # a segment closes where a listener would: at a pause of pause_commit_s once every word before it is final,
    # when the last of them ends a sentence or the segment already holds this much speech (0: sentence ends
    # only). Its final then goes out at once, with no decode; the next segment is lent its closing words
    # (_lend_context). Read speech and conversation rarely pause min_silence_s, so without this a segment ran
    # to max_segment_s and a subscriber acting on finals waited 7-17 s for them
    close_after_s: float = 6.0
    # ...and only when its last final word reaches the pause: speech between the last final word and the pause
    # (a reading that skipped a stretch, "windows of wrinkles" for "windows of thine age shalt see, despite of
    # wrinkles this thy golden time") has no word yet, and closing there without a decode dropped it
    line_gap_s: float = 0.6
    # a segment this long whose last final word ends a sentence closes after it though no pause follows (a phone
    # call's abutting turns ran one segment 18 s and its final came that late; negative: only at a pause). Replay,
    # 14 files at N=1: segment final p95 1.18 -> 0.91 s, WER unchanged (132 errors of 1372). 2 s with the split's
    # context below (replay, both dialogues at N=1): segment final p95 6.14 -> 4.45 s, errors 47 -> 45 of 384;
    # 14 files 130 -> 128 errors of 1372. 1 s: 52 errors of 384. 0 (every sentence end; negative: only at a pause),
    # once a reading that skips the anchor keeps its first word and a split's pause settles the next segment's
    # words, and a title's full stop ends no sentence: dialogues 44 -> 47 errors, segment final p95 4.45 -> 2.97 s
    # (short turns, "Neither did I.", close at once); 14 files 128 -> 125 errors, segment final p95 1.18 s as before
    sentence_split_s: float = 0.0
    # the segment after a split opens its window on this much of the closed segment's last words (an anchor,
    # as _lend_context lends one): read from the sentence's last word alone, its first word was lost ("if the
    # reader will", "it is of the"; dialogues at 2 s splits: 47 -> 52 errors of 384 without, 45 with). 4 s:
    # 14 files 131 errors against 128
    split_context_s: float = 2.0
    # the decode window is trimmed at committed words beyond this. A long sentence read in a longer window has
    # more of its own audio before the words being decided: replay at N=1, 12 -> 20 s: 14 files 126 -> 120
    # errors of 1372 (six-file subset 36 -> 33 of 526), latencies unchanged, dialogues word for word the same
    trim_s: float = 20.0
    # recent final text given to the model as its prompt: tiny.en reads a line better with the lines before
    # it. Replay, errors of 1372: at N=1 151 with none, 140 with 200 characters, 135 with 600, 139 with 1000;
    # at N=4 134 with 200, 132 with 600. 600 characters add 0.02 s to a decode on 2 cores
    prompt_chars: int = 600
    # a young segment's window shorter than this commits nothing before its final (see _reads_cold); replay
    # at N=1: 142 -> 136 errors of 1372 with 4 s, no change at 3 s
    min_commit_window_s: float = 4.0
    # a segment that opens this soon after the last final word starts its window up to this much earlier,
    # at the words that ended the last segment (see _lend_context); 0 turns it off. Replay, errors of
    # 1372: at N=1 138 with none, 130 with 2 s, 123 with 4 s, 124 with 6 s (a 6 s gap instead of 3 s: no
    # change); at N=4 137 with none, 134 with 4 s. Commit p95 at N=1 2.19 -> 1.91 s, at N=4 2.60 -> 2.43 s.
    # 4 -> 8 s with the 20 s window (a line is read on from the whole sentence before it; a reading that
    # stops at the lent words drops them, see _stopped_at_anchor): replay at N=1, 14 files 123 -> 120 errors
    # of 1372 (commit p95 1.13 -> 1.06 s), six-file subset 33 -> 31 of 526, dialogues 46 -> 43 of 384
    # (segment final p95 2.97 s either way). 8 s lent to a split segment as well (split_context_s) made the
    # dialogues' segment finals later
    context_gap_s: float = 3.0
    context_s: float = 8.0
    initial_prompt: str = ""  # context for the first segment (vocabulary, spelling), as Whisper's prompt
    language: str | None = None
    priority: Priority = Priority.PARTIAL  # live sessions; uploads use BULK
    live: bool = True  # False: file mode, one decode per closed segment and no partials


@dataclass
class Segment:
    id: str
    start: float  # stream time
    window_start: float
    end: float | None = None  # set when the segment closes
    hyp: Hypotheses = field(default_factory=Hypotheses)
    decoded_to: float = 0.0  # end of the audio of the latest decode
    endpoint_for: float | None = None  # speech_end that a pause-commit already covered
    speech_end: float | None = None  # where the VAD heard the last speech, once the segment closed
    pending_pause: float | None = None  # speech end of a pause not yet covered by a commit decode
    # speech ends followed by a pause of pause_commit_s, with the longest silence heard after each so far
    pauses: dict[float, float] = field(default_factory=dict)
    emitted: tuple[str, int] | None = None  # (text, n_final) of the last partial sent
    read: tuple[float, float, str] | None = None  # (window start, end, prompt) of the latest decode applied
    context_lent: bool = False  # its window was given the last segment's closing words (or had none to take)
    tail_read: bool = False  # its final read the speech its first final reading stopped short of
    final_told: int = 0  # words already sent as final (their commit latency was measured)

    @property
    def words(self) -> list[TimedWord]:
        return self.hyp.committed + self.hyp.tentative

    def pauses_after(self, t: float) -> dict[float, float]:
        """The pauses heard after ``t``: what the segment opening there inherits."""
        return {k: v for k, v in self.pauses.items() if k > t}

    def pause_after(self, speech_end: float | None, default: float) -> float:
        """The longest silence heard so far after the speech that ended at ``speech_end`` (``default``: none)."""
        return self.pauses.get(speech_end, default) if speech_end is not None else default


@dataclass
class _Plan:
    segment: Segment
    kind: Priority
    end: float
    commit_before: float = float("inf")
    speech_end: float | None = None


Emit = Callable[[SegmentEvent], Awaitable[None]]
Report = Callable[[FailureEvent], Awaitable[None]]


class AudioListener(Protocol):
    """Something that follows a stream's audio with the session's VAD (speaker diarization)."""

    def heard(self, samples: np.ndarray, probs: np.ndarray) -> None: ...

    def skip(self, seconds: float) -> None: ...


_ids = itertools.count(1)


def _random_id() -> str:
    return uuid.uuid4().hex[:12]


class StreamSession:
    def __init__(self, *, engine: InferenceLoop, vad_model: SileroModel, emit: Emit,
                 config: StreamConfig | None = None, offset: float = 0.0, speaker: str | None = None,
                 participant_id: str | int | None = None, key: str | None = None,
                 listener: AudioListener | None = None, report: Report | None = None,
                 segment_ids: Callable[[], str] | None = None) -> None:
        self.config = config or StreamConfig()
        # A recorded file's job passes ids derived from its chunk, so an attempt run again replaces its own
        # segments instead of adding a second copy of them.
        self._new_id = segment_ids or _random_id
        self.key = key or f"s{next(_ids)}-{uuid.uuid4().hex[:6]}"
        self.offset = offset  # transcript time of this stream's t=0
        self.speaker = speaker
        self.participant_id = participant_id
        self._engine = engine
        self._emit = emit
        self._report = report  # tells the subscribers when the model fails on this stream
        self._failing = False  # decodes fail since the last one that read: reported once per run of them
        self.listener = listener  # gets the audio with its VAD probabilities (or the paused stretches)
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

    def feed(self, samples) -> None:
        """Take audio in. VAD and buffering run where this is called: on the event loop, or on a worker thread
        (one call at a time, in stream order) so that a big frame never stalls other streams; the listener and
        the decode scheduler, which live on the event loop, are told there, in order."""
        if len(samples) == 0 or self._finishing:
            return
        with self._lock:  # pause()/resume() may run between two frames
            paused, vad = self._paused, self._vad
        if paused:
            with self._lock:
                self._buffer.skip(len(samples) / SAMPLE_RATE)
                self._tracker.t = self._buffer.end
            if self.listener is not None:
                self._on_loop(self.listener.skip, len(samples) / SAMPLE_RATE)
            return
        probs = vad.process(samples)
        if self.listener is not None:
            self._on_loop(self.listener.heard, samples, probs)
        with self._lock:
            self._buffer.append(samples)
            self._arrivals.append((self._buffer.end, self._engine.clock()))
            for kind, t in self._tracker.update(probs):
                if kind == "speech_start" and self._open is None:
                    start = max(t - self.config.lead_in_s, self._last_closed_end, self._buffer.start)
                    self._open = Segment(id=self._new_id(), start=start, window_start=start,
                                         decoded_to=start)
            self._update_segments()
            self._release_idle_audio()
        self._on_loop(self._poke)

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
        """Call ``fn`` now when on the event loop, else queue it there (asyncio objects are loop-only; the
        loop runs queued calls in the order they were queued)."""
        if _running_loop() is not None or self._loop is None:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def pause(self) -> None:
        """Stop transcribing (audio is still stored by the caller); the open segment is finalized."""
        with self._lock:
            self._close_open(self._tracker.t)
            self._paused = True
            self._last_words = []  # the audio after the pause does not follow them
        self._on_loop(self._poke)

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._vad = VadStream(self._vad._model)
            self._tracker = SpeechTracker(self.config.vad)
            self._tracker.t = self._buffer.end

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

    # ------------------------------------------------------------ segment bookkeeping (under lock)

    def _close_open(self, t: float) -> None:
        seg = self._open
        if seg is None:
            return
        tr = self._tracker
        end = t
        if not tr.in_speech and tr.speech_end is not None and seg.start <= tr.speech_end <= t:
            end = min(t, tr.speech_end + self.config.vad.speech_pad_s)
        seg.end = max(end, seg.start)
        seg.speech_end = min(seg.end, tr.speech_end) if tr.speech_end is not None and not tr.in_speech else seg.end
        self._closing.append(seg)
        self._open = None
        self._last_closed_end = seg.end

    def _update_segments(self) -> None:
        seg = self._open
        if seg is None:
            return
        cfg = self.config
        tr = self._tracker
        if not tr.in_speech and tr.silence_run >= cfg.pause_commit_s and tr.speech_end is not None:
            seg.pauses[tr.speech_end] = tr.silence_run
            if tr.speech_end != seg.endpoint_for and tr.speech_end > seg.hyp.committed_end + 0.1:
                seg.pending_pause = tr.speech_end  # remembered even if speech resumes before a decode is free
        if self._tracker.silence_run >= cfg.min_silence_s:
            self._close_open(self._tracker.t)
        elif (pause := self._line_end(seg)) is not None:
            self._close_at_pause(seg, pause)
        elif (keep := self._sentence_end(seg)) is not None:
            self._split(seg, keep)
        elif self._tracker.t - seg.start >= cfg.max_segment_s:
            if seg.hyp.committed:
                self._split(seg)
            elif not cfg.live:
                # nothing is committed in file mode: cut where the audio is least speech-like
                cut = self._tracker.quietest(since=seg.start + cfg.max_segment_s * 0.6) or self._tracker.t
                self._close_open(cut)
                self._open = Segment(id=self._new_id(), start=cut, window_start=cut, decoded_to=cut)

    def _line_end(self, seg: Segment) -> float | None:
        """(under the lock) Where a listener closes a line: the speech end of a pause of ``pause_commit_s`` (now
        or already over) before which every word is final, after which none is, and whose last word ends a
        sentence (or a segment that has run ``close_after_s``). Nothing in the segment then waits for another
        reading. None when there is no such pause."""
        cfg = self.config
        hyp = seg.hyp
        if not cfg.live or seg is not self._open or not hyp.committed:
            return None
        last = hyp.committed[-1]
        for p in sorted(seg.pauses):
            if seg.pauses[p] < cfg.pause_commit_s - 1e-9:
                continue  # not long enough yet
            if last.start >= p + _WORD_START_SLACK_S or hyp.committed_end - p > _WORD_END_OVERHANG_S:
                continue  # a pause inside the committed words (a final word after it stays in this segment)
            if seg.decoded_to < p or any(w.start < p + _WORD_START_SLACK_S for w in hyp.tentative):
                return None  # the speech before it is not read to its end, or not all final
            if p - hyp.committed_end > cfg.line_gap_s:
                return None  # speech before the pause that no final word covers: the final must read it
            long_enough = cfg.close_after_s > 0 and p - seg.start >= cfg.close_after_s
            return p if last.closes_sentence or long_enough else None
        return None

    def _sentence_end(self, seg: Segment) -> int | None:
        """(under the lock) Where the open segment closes at a sentence end that the speaker went on from
        without a pause (a conversation's abutting turns, crosstalk), as a split does, instead of running on to
        a pause or to ``max_segment_s``: how many of its committed words it keeps. None: nowhere.

        Words told final stay in the segment (it keeps at least ``final_told``); words committed by the
        reading being applied and not told yet may open the next segment already committed. So a sentence
        end that a reading commits together with the next sentence's first words still closes the segment:
        committed one reading at a time, "design. Okay, I thought" had no moment at which a sentence end was
        the last final word, and the segment ran on 7 s more."""
        cfg = self.config
        hyp = seg.hyp
        if not cfg.live or cfg.sentence_split_s < 0 or seg is not self._open or not hyp.committed:
            return None  # a closed segment (one whose final re-reads its tail, say) has its final coming
        n = len(hyp.committed)
        for i in range(max(0, seg.final_told - 1), n):
            w = hyp.committed[i]
            following = hyp.committed[i + 1] if i + 1 < n else (hyp.tentative[0] if hyp.tentative else None)
            if (following is not None and w.closes_sentence
                    and w.end - seg.start >= cfg.sentence_split_s and following.start >= w.end - 0.05):
                return i + 1
        return None

    def _close_at_pause(self, seg: Segment, pause: float) -> None:
        """(under the lock) Close the open segment at a pause on the words it has committed: its final needs no
        decode. Speech after the pause (a reading that ended after the speaker went on) opens the next segment,
        with the tentative words read there held for its own agreement."""
        tr = self._tracker
        cut = pause + min(self.config.vad.speech_pad_s, seg.pauses[pause] / 2)
        after = [w for w in seg.hyp.tentative if w.start >= cut]
        seg.hyp.tentative = []
        seg.end = max(cut, seg.start)
        seg.speech_end = pause
        seg.decoded_to = max(seg.decoded_to, seg.end)
        pending, seg.pending_pause = seg.pending_pause, None
        self._closing.append(seg)
        self._last_closed_end = seg.end
        self._open = None
        if tr.in_speech or (tr.speech_end is not None and tr.speech_end > cut):  # the speaker went on
            nxt = Segment(id=self._new_id(), start=seg.end, window_start=seg.end, decoded_to=seg.end,
                          endpoint_for=seg.endpoint_for,
                          pending_pause=pending if pending is not None and pending > cut else None,
                          pauses=seg.pauses_after(cut))
            nxt.hyp.tentative = after
            self._open = nxt

    def _close_if_line_ends(self, seg: Segment) -> None:
        pause = self._line_end(seg)
        if pause is not None:
            self._close_at_pause(seg, pause)

    def turn_at(self, t: float) -> None:
        """A speaker turn found at stream time ``t`` (live diarization): the next speaker's words open a new
        segment. Words already final stay where the partials showed them: should the turn fall before the last
        of them, the segment is cut after it (its speaker is then told by ``diarization`` messages over time
        ranges); the words before the turn that are not final yet are read once more, up to the turn, by the
        segment's final."""
        with self._lock:
            seg = self._open
            if seg is None or not self.config.live:
                return
            t = self._gap_near(t, since=seg.start)
            if t < seg.start + MIN_TURN_SEGMENT_S:
                return  # the segment opened at (or after) this turn
            hyp = seg.hyp
            if hyp.committed and hyp.committed_end >= t - 1e-6:
                # the committed words after the turn are the next voice's: those not told yet open the next
                # segment, committed there; told ones stay
                before = sum(1 for w in hyp.committed if w.start < t)
                keep = max(seg.final_told, before)
                self._split(seg, keep or None)  # none before the turn: the segment keeps them all
            elif t < self._buffer.end:
                self._cut_at(seg, t)
            else:
                return
        self._on_loop(self._poke)

    def _gap_near(self, t: float, since: float) -> float:
        """(under the lock) Where a turn the diarizer placed at ``t`` is cut: the middle of the longest quiet
        stretch the VAD heard from ``TURN_GAP_BEFORE_S`` before ``t`` to ``TURN_GAP_AFTER_S`` after it (the
        nearest of equal ones), or ``t`` itself where the voices abut. A diarizer places a turn on its one-second
        windows' centres, 0.3-0.4 s late on a dialogue's 0.25-0.35 s gaps, so cut at ``t`` the next voice's
        first word ("Let", "Everyone") was read into the segment of the voice before it."""
        runs = self._tracker.quiet_runs(max(since, t - TURN_GAP_BEFORE_S), t + TURN_GAP_AFTER_S, TURN_GAP_MIN_S)
        if not runs:
            return t
        start, end = max(runs, key=lambda r: (round(r[1] - r[0], 3), -abs((r[0] + r[1]) / 2 - t)))
        return (start + end) / 2

    def _cut_at(self, seg: Segment, t: float) -> None:
        """(under the lock) Close ``seg`` at ``t``: its final reads its window up to there and keeps the words
        spoken before it; the audio after ``t`` is the next segment's."""
        seg.end = seg.speech_end = t
        seg.pending_pause = None
        self._closing.append(seg)
        self._open = Segment(id=self._new_id(), start=t, window_start=t, decoded_to=t)
        self._last_closed_end = t

    def _split(self, seg: Segment, keep: int | None = None) -> None:
        """Close a segment after its ``keep``-th committed word (default: its last); the rest of its audio
        starts the next one.

        Every committed word shown final in this segment's partials stays in it (a cut before one would move
        a final word into the next segment); committed words not told yet (see ``_sentence_end``) open the
        next segment, committed there. The uncommitted tail carries over, so its agreement with the next
        hypothesis is not lost. The next window starts at the last ``split_context_s`` of the kept words (its
        anchor), never after the last one: a word's end timestamp is often late, and a window cut there clips
        the start of the next word ("Bible" heard as "fireball").
        """
        hyp = seg.hyp
        keep = len(hyp.committed) if keep is None else keep
        carried = hyp.committed[keep:]
        del hyp.committed[keep:]
        last = hyp.committed[-1]
        cut = last.end
        tentative, pause = hyp.tentative, seg.pending_pause
        hyp.tentative = []
        seg.end = cut
        # a segment closed with only committed words needs no decode: it is final as it stands
        decoded = seg.decoded_to
        seg.decoded_to = max(seg.decoded_to, cut)
        seg.pending_pause = None
        self._closing.append(seg)
        # the audio after the cut was already decoded and a detected pause still needs its commit
        anchor = [w for w in hyp.committed if w.start >= cut - self.config.split_context_s] or [last]
        nxt = Segment(id=self._new_id(), start=cut, window_start=min(cut, anchor[0].start),
                      decoded_to=max(cut, decoded), endpoint_for=seg.endpoint_for,
                      pending_pause=pause if pause is not None and pause > cut else None,
                      pauses=seg.pauses_after(cut), hyp=Hypotheses(anchor=anchor))
        nxt.hyp.committed = carried
        nxt.hyp.tentative = tentative
        self._open = nxt
        self._last_closed_end = cut

    def _plan(self) -> _Plan | None:
        """What to decode next, decided from the freshest state (called under the lock)."""
        if self._closing:
            first = self._closing[0]
            return _Plan(first, Priority.FINAL, end=first.end or self._buffer.end)
        seg = self._open
        if seg is None or self._paused or not self.config.live:
            return None
        tr, cfg = self._tracker, self.config
        speech_end = tr.speech_end if tr.speech_end is not None else seg.start
        uncommitted = speech_end > max(seg.hyp.committed_end, seg.start) + 0.1
        pause = seg.pending_pause
        if pause is not None and pause > max(seg.hyp.committed_end, seg.start) + 0.1:
            # its window ends at the pause even when the speaker went on before a lane was free: read through
            # the words after it, a clause's end that a reading at the pause closes ("by a similar process.")
            # runs on into the next clause, and its segment waits for the next sentence end or pause
            end = min(self._buffer.end, self._read_to(seg, pause))
            return _Plan(seg, Priority.ENDPOINT, end=end, commit_before=pause + _WORD_START_SLACK_S,
                         speech_end=pause)
        if not tr.in_speech and tr.silence_run < cfg.pause_commit_s and uncommitted:
            # the speaker may be pausing. The pause's window ends a pad after the speech: once that much has
            # arrived it is read at once, as the pause's decode, instead of when the pause is confirmed; a pause
            # that lasts is committed as the decode ends, speech that resumes first makes it a refresh (_apply)
            if tr.silence_run >= cfg.vad.speech_pad_s and speech_end != seg.endpoint_for:
                return _Plan(seg, Priority.ENDPOINT, end=self._buffer.end,
                             commit_before=speech_end + _WORD_START_SLACK_S,
                             speech_end=speech_end)
            return None
        pause_end = self._pause_window_end(seg)
        if pause_end is not None and seg.decoded_to >= pause_end - 1e-6:
            return None  # in a pause the window ends at the speech: it was read already, and reads the same
        step = cfg.first_step_s if seg.read is None else cfg.min_step_s
        if self._buffer.end - seg.decoded_to >= step and uncommitted:
            plan = _Plan(seg, Priority.PARTIAL, end=self._buffer.end)
            if not tr.in_speech and tr.silence_run >= cfg.pause_commit_s:
                plan.commit_before = speech_end + _WORD_START_SLACK_S  # this window already holds the pause
            return plan
        return None

    # ------------------------------------------------------------ decoding

    def _priority(self, plan: _Plan) -> Priority:
        # a bulk session (upload) never outranks live work, whatever kind of decode it needs
        return Priority.BULK if self.config.priority == Priority.BULK else plan.kind

    def _poke(self) -> None:
        self._wake.set()
        with self._lock:
            plan = self._plan()
        if plan is not None and self._engine.is_queued(self.key):
            self._engine.schedule(self.key, self._priority(plan), self._build)  # upgrade priority

    def _pause_window_end(self, seg: Segment) -> float | None:
        """Where a live window ends while the speaker pauses: a short pad after the speech, since trailing
        silence is where Whisper invents "Thank you."; None while speech goes on."""
        tr = self._tracker
        if tr.in_speech or tr.speech_end is None:
            return None
        return self._read_to(seg, tr.speech_end)

    def _read_to(self, seg: Segment, speech_end: float) -> float:
        """Where a window read at a pause after ``speech_end`` ends: a pad after the speech."""
        return max(speech_end, seg.window_start) + self.config.vad.speech_pad_s

    def _window_end(self, plan: _Plan) -> float:
        """Where the plan's window ends: a live window in a pause ends a pad after the speech."""
        pause_end = self._pause_window_end(plan.segment)
        if plan.kind != Priority.FINAL and pause_end is not None:
            return min(plan.end, pause_end)
        return plan.end

    def _build(self) -> tuple[DecodeRequest, Any] | None:
        """Runs on the inference thread at dispatch time."""
        with self._lock:
            plan = self._plan()
            if plan is None:
                return None
            seg = plan.segment
            end = plan.end = self._window_end(plan)
            if plan.kind == Priority.FINAL and self._read_to_the_end(plan):
                return None  # nothing new since the last decode: close without decoding
            self._lend_context(seg)
            prompt = self._prompt(seg)
            audio = self._buffer.slice(seg.window_start, end)
            self._last_cut = (seg, end)
        if len(audio) < 1600:  # under 0.1 s: nothing a model can use
            return None
        request = DecodeRequest(audio=audio, prompt=prompt, language=self.config.language)
        return request, (plan, seg.window_start, prompt)

    def _overtakes(self, plan: _Plan | None) -> bool:
        """A decode to start beside the session's running refresh: a pause commit or a final whose window
        holds audio the refresh does not (called under the lock).

        On a backend with a lane free, waiting for the refresh would add up to a whole decode to the
        commit of the words before a pause, and its reading is made stale by the one that follows."""
        if plan is None or plan.kind == Priority.PARTIAL:
            return False
        if plan.kind == Priority.FINAL and self._read_to_the_end(plan):
            return False  # closes without a decode once the refresh is read
        cut = self._last_cut
        return cut is None or cut[0] is not plan.segment or cut[1] < self._window_end(plan) - 1e-6

    def _lend_context(self, seg: Segment) -> None:
        """Start a segment's first window at the last words of the segment before it.

        A segment is cut at a pause, not where the speaker's thought ends; read alone from its onset,
        its first words have no audio before them (the prompt gives their text, not their sound), and a
        short one is too cold a reading to commit from until its final. With the closing words of the
        last segment in its window (an anchor, lined up and dropped like a split segment's) it is read
        the way continuous speech is, and it commits while the speaker goes on. Decided once, at the
        segment's first decode: every earlier segment is final by then (a session decodes in order).
        """
        if seg.context_lent:
            return
        seg.context_lent = True
        cfg = self.config
        if cfg.context_s <= 0 or seg.hyp.anchor or not self._last_words:  # a split segment has its anchor
            return
        last_end = self._last_words[-1].end
        if seg.start - last_end > cfg.context_gap_s:
            return
        lent = [w for w in self._last_words if w.start >= last_end - cfg.context_s and w.start >= self._buffer.start]
        if not lent or lent[0].start >= seg.window_start:
            return
        seg.window_start = lent[0].start
        seg.hyp.anchor = lent

    def _read_to_the_end(self, plan: _Plan) -> bool:
        """A closed segment's latest decode already read all of its audio, and its words reach the speech in
        it: its final needs no decode. Speech that no word covers (a reading that skipped a stretch, or a
        segment cut off behind it at a turn) is read by the final."""
        seg = plan.segment
        hyp = seg.hyp
        if self._stops_short(seg, plan.end, max(hyp.committed_end, hyp.tentative[-1].end if hyp.tentative else 0.0)):
            return False
        return seg.decoded_to >= plan.end and (
            not hyp.tentative or self._was_read(seg, plan.end, self._prompt(seg)))

    def _heard_speech(self, start: float, end: float) -> bool:
        """Whether the VAD heard 0.2 s of speech between ``start`` and ``end`` (further back than it remembers:
        assumed, so the final reads it)."""
        recent = self._tracker.recent
        if not recent or recent[0][0] > start + CHUNK_SECONDS:
            return True
        threshold = self.config.vad.threshold
        return sum(CHUNK_SECONDS for t, p in recent if start < t <= end and p >= threshold) >= 0.2 - 1e-9

    def _read_short(self, seg: Segment, end: float) -> bool:
        """(under the lock) A closed segment's words stop short of its speech: at least ``line_gap_s`` of it, in
        which the VAD heard speech, has no word. Once per segment: the second reading stands."""
        return not seg.tail_read and self._stops_short(seg, end, seg.hyp.committed_end)

    def _stops_short(self, seg: Segment, end: float, words_end: float) -> bool:
        """(under the lock) More than ``line_gap_s`` of the closed segment's speech, up to ``end``, lies after
        ``words_end`` and the VAD heard speech there: no word covers it."""
        words_end = max(words_end, seg.start)
        speech_end = min(end, seg.speech_end if seg.speech_end is not None else end)
        return speech_end - words_end > self.config.line_gap_s and self._heard_speech(words_end, speech_end)

    @staticmethod
    def _was_read(seg: Segment, end: float, prompt: str) -> bool:
        """The latest decode read this very window with this prompt: decoding it again gives the same words.

        A segment whose pause was read (and left words tentative: a young segment's short window, or an
        unsure word) closes on the same audio, since both cut at the speech end and its pad. Its final then
        takes that reading as it stands instead of queueing the same decode again behind other streams.
        """
        return seg.read is not None and seg.read[0] == seg.window_start and seg.read[1] >= end - 1e-6 \
            and seg.read[2] == prompt

    def _prompt(self, seg: Segment) -> str:
        history = self._history
        for w in reversed(seg.hyp.anchor):
            # the window starts with this word: given it as text too, the model skips it in the audio and
            # stamps the next word at its time
            history = history.removesuffix(w.text).rstrip()
        before = [w.text for w in seg.hyp.committed if w.end <= seg.window_start + 0.05]
        text = (history + " " + join_words(before)).strip()
        return text[-self.config.prompt_chars:] if self.config.prompt_chars > 0 else ""

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

    def _build_beside(self) -> tuple[DecodeRequest, Any] | None:
        """An urgent decode's build beside a running refresh: nothing when that refresh, cut after it was
        asked for, already reads the same window."""
        with self._lock:
            if not self._overtakes(self._plan()):
                return None
        return self._build()

    async def _read(self, value: tuple[DecodeResult, Any]) -> None:
        result, (plan, window_start, prompt) = value
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s window %.2f-%.2f speech_end=%s commit_before=%.2f buffer_end=%.2f words=%s",
                      self.key, plan.kind.name, window_start, plan.end, self._tracker.speech_end,
                      plan.commit_before, self._buffer.end,
                      [(w.text, round(w.start, 2), round(w.end, 2)) for w in result.words][-4:])
        await self._apply(plan, window_start, result, prompt)

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

    async def _final_as_read(self, seg: Segment) -> None:
        """Close a segment on its latest reading, without another decode."""
        seg.hyp.commit_all(self._spoken(seg, seg.hyp.tentative))
        await self._emit_segment(seg, final=True)

    async def _tell(self, message: str, recoverable: bool) -> None:
        if self._report is None:
            return
        try:
            await self._report(FailureEvent(message=message, recoverable=recoverable,
                                            participant_id=self.participant_id))
        except Exception:
            log.exception("session %s could not report a failure", self.key)

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

    async def _apply(self, plan: _Plan, window_start: float, result: DecodeResult, prompt: str) -> None:
        seg = plan.segment
        if plan.kind == Priority.ENDPOINT and not await self._pause_lasts(plan, self.config.pause_commit_s):
            plan = _Plan(seg, Priority.PARTIAL, end=plan.end)  # speech went on: a reading of what came before
        if result.error:
            # a failed read says nothing about the audio: a refresh leaves the hypothesis as it was (this
            # audio is read again by the next decode), and a final closes on that latest reading instead of
            # dropping the words its partials showed
            log.warning("decode failed for %s: %s", self.key, result.error)
            words = list(seg.hyp.tentative)
            if not self._failing:
                self._failing = True
                await self._tell(f"decoding failed, the words read so far are kept: {result.error}", True)
        else:
            self._failing = False
            words = self._clean(result, window_start, plan.end, prompt)
        if plan.kind == Priority.FINAL:
            words = self._spoken(seg, words)
        else:
            words = self._up_to_a_stretched_word(words)  # a final keeps them: it re-reads a tail it stops short of
        final = False
        with self._lock:
            self._decoded_to = max(self._decoded_to, plan.end)
            if plan.kind != Priority.FINAL and result.error:
                if seg is self._open:  # the next refresh waits for new audio: a broken backend is not asked at once
                    seg.decoded_to = max(seg.decoded_to, plan.end)
                    if plan.kind == Priority.ENDPOINT and seg.pending_pause == plan.speech_end:
                        seg.endpoint_for, seg.pending_pause = plan.speech_end, None
                return
            if plan.kind != Priority.FINAL and seg is not self._open:
                # the segment closed or split while this refresh ran: its final decides. A pause that closed
                # it (a split has no speech end) ends the final's window where this one ends: kept as the
                # latest reading, _was_read tells the final it is its own
                if seg.speech_end is not None:
                    seg.decoded_to = max(seg.decoded_to, plan.end)
                    seg.read = (window_start, plan.end, prompt)
                    # held for the final, nothing committed here
                    seg.hyp.agree(words, horizon=float("-inf"), start=window_start)
                return
            seg.decoded_to = max(seg.decoded_to, plan.end)
            seg.read = None if result.error else (window_start, plan.end, prompt)
            hyp = seg.hyp
            settled = plan.end - self.config.settle_s  # words this far back commit even if hypotheses disagree
            if plan.kind == Priority.FINAL:
                hyp.commit_all(words, start=window_start)
                if not result.error and self._read_short(seg, plan.end):
                    # the model stopped reading before the speech did (Whisper ends a long window early now
                    # and then: "windows of thy" and not a word of the 3.5 s after it): the rest is read once
                    # more, from the last word on, before the segment is final
                    seg.tail_read = True
                    if hyp.committed:
                        seg.window_start = max(seg.window_start, hyp.committed[-1].start)
                    elif hyp.anchor:
                        self._drop_anchor(seg)  # it read the anchor and stopped: read again without it
                    seg.read = None  # the tail is read anew either way
                    seg.decoded_to = min(seg.decoded_to, max(hyp.committed_end, seg.start))
                else:
                    if self._closing and self._closing[0] is seg:
                        self._closing.popleft()
                    final = True
            elif self._reads_cold(seg, window_start, plan.end):
                # a reading to compare the next with, nothing committed
                hyp.agree(words, horizon=float("-inf"), start=window_start)
            elif plan.commit_before != float("inf"):
                # a pause commit, or a refresh whose window already holds the pause: either way an unsure
                # word is weighed against the previous hypothesis, not against this one's own copy of it
                hyp.commit_before(words, plan.commit_before, confident=self.config.pause_commit_confidence,
                                  settled=settled, start=window_start)
            else:
                hyp.agree(words, horizon=plan.end - self.config.agree_right_context_s, settled=settled,
                          unsure=self.config.unsure_probability, unsure_wait=self.config.unsure_wait_s,
                          start=window_start)
            if not result.error and self._stopped_at_anchor(seg, plan.end):
                self._drop_anchor(seg)
            if plan.kind == Priority.ENDPOINT:  # this pause has had its decode, committed or not
                seg.endpoint_for = plan.speech_end
                if seg.pending_pause == plan.speech_end:
                    seg.pending_pause = None
            opened = seg
            while not final and (keep := self._sentence_end(opened)) is not None:
                self._split(opened, keep)  # its final follows at once, with no decode
                assert self._open is not None
                opened = self._open
            self._trim_window(opened, plan.end)
            if not final:
                self._close_if_line_ends(opened)  # its words are final up to a line's end: the final follows
        if opened is seg:
            await self._emit_segment(seg, final=final)
        else:
            await self._emit_segment(opened, final=False)  # the next sentence, its first words perhaps final
        if plan.kind == Priority.ENDPOINT and not result.error:
            await self._settle_pause(plan, (window_start, plan.end, prompt), opened)

    async def _settle_pause(self, plan: _Plan, read: tuple[float, float, str], seg: Segment) -> None:
        """Commit what a pause's reading left tentative before the pause once the pause lasts ``pause_settle_s``.

        A pause commit holds back a word the model is unsure of that no earlier reading had, and a young
        segment's cold reading, for a later reading to confirm. If the speaker resumes at once, that later
        reading hears the words after it; but a pause that lasts has been read whole (the window ends at the
        speech and its pad), and had it gone on to ``min_silence_s`` the segment's final would have taken this
        very reading. Waiting on, those words were held until the next utterance was 1-2 s along
        ("missal type" before a 0.45 s pause: 3 s). The segment closing or a newer reading first: nothing.
        ``seg`` is where the reading's tentative words went: the reading's segment, or the next one when the
        reading split it at a sentence end (it has no reading of its own yet; unsettled, "It's right here."
        before a 0.6 s pause waited 2 s for the next utterance).
        """
        expected = read if seg is plan.segment else None
        if not any(w.start < plan.commit_before for w in seg.hyp.tentative):
            return
        if not await self._pause_lasts(plan, self.config.pause_settle_s, seg):
            return
        with self._lock:
            if seg is not self._open or seg.read != expected:
                return
            settled = seg.hyp.settle_before(plan.commit_before)
            self._close_if_line_ends(seg)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s settled at a pause of %.2fs: %s", self.key, seg.pause_after(plan.speech_end, 0.0),
                      [(w.text, round(w.start, 2), round(w.probability, 2)) for w in settled])
        await self._emit_segment(seg, final=False)

    async def _pause_lasts(self, plan: _Plan, least: float, seg: Segment | None = None) -> bool:
        """Whether the pause a decode was started for lasted ``least`` seconds (a commit's or a settle's): the
        decode may start before the pause is confirmed, and may even end first (a GPU), and then its reading
        waits for the answer; or it may end after the speaker resumed, and the pause heard decides. No when the
        speech resumed short of it, or when the segment closed first (its final then decides, see _apply).
        ``seg``: the segment the pause is now in, when the reading split its own (see _settle_pause)."""
        seg = plan.segment if seg is None else seg
        while True:
            self._wake.clear()  # every frame fed sets it
            with self._lock:
                if seg.pause_after(plan.speech_end, -1.0) >= least - 1e-9:
                    return True
                tr = self._tracker
                if seg is not self._open or tr.in_speech or tr.speech_end != plan.speech_end:
                    return False
            await self._wake.wait()

    @staticmethod
    def _spoken(seg: Segment, words: list[TimedWord]) -> list[TimedWord]:
        """A closed segment's words up to where the VAD last heard speech: nothing is said after it."""
        if seg.speech_end is None:
            return words
        return [w for w in words if w.start < seg.speech_end + _WORD_START_SLACK_S]

    def _reads_cold(self, seg: Segment, window_start: float, end: float) -> bool:
        """A window that holds a young segment's speech from its onset and little else: too short a reading
        to commit from.

        Whisper reads its first words from a second or two of audio with nothing before them, and two
        such readings half a second apart agree on a wrong word as readily as on a right one ("And Mister
        Dashwood" read "Mr. Dashwood", "That" read "Let"); a pause commit after the first line of a stream
        froze whatever the short window said. Such a segment's words wait until its window holds
        ``min_commit_window_s`` of audio, for a pause long enough to settle them (``_settle_pause``: the
        final would take that reading), or for the segment's final decode. A window trimmed inside a long
        segment, or one that begins in earlier speech (an anchor), has the words before it in the audio or
        the prompt and is not held back.
        """
        return (end - window_start < self.config.min_commit_window_s and window_start <= seg.start
                and not seg.hyp.anchor)

    def _stopped_at_anchor(self, seg: Segment, end: float) -> bool:
        """(under the lock) The segment's readings give nothing after its anchor, though its own audio (from
        ``seg.start`` to ``end``) holds ``_ANCHOR_STOP_S`` and the VAD heard speech in it.

        Whisper reads a window's opening words, the anchor lent from the segment before, and may then close
        its text there and skip the rest: another voice after a pause (the seven-voice dialogue, with 5.6 s
        of the last speaker's words lent) was never read, reading after reading and in the final, and 20 s of
        speech were lost with the segment. A reading that lines up with the anchor and leaves nothing new
        is such a stop once the segment has more than a word's worth of speech of its own."""
        hyp = seg.hyp
        if not hyp.anchor or hyp.committed or hyp.tentative:
            return False
        own = max(seg.start, hyp.anchor[-1].end)
        return end - own >= _ANCHOR_STOP_S and self._heard_speech(own, end)

    @staticmethod
    def _drop_anchor(seg: Segment) -> None:
        """Read the segment from its own start, without the words lent before it (see ``_stopped_at_anchor``):
        it is then a young segment read cold, as one with nothing to read on from."""
        seg.hyp.anchor = []
        seg.window_start = max(seg.window_start, seg.start)
        seg.read = None

    def _trim_window(self, seg: Segment, end: float) -> None:
        # one limit whatever the load: halving it while other sessions waited saved little decode time (the
        # encoder's 30 s pass is most of a decode's cost) and took the model's left context away (replay at
        # N=4: 151 errors of 1372 with the halving, 132 without; one real-time N=4 run on 2 cores: WER
        # 11.8 % -> 10.5 %, commit p95 2.87 -> 2.08 s)
        limit = self.config.trim_s
        if end - seg.window_start <= limit or not seg.hyp.committed:
            return
        cut = seg.hyp.sentence_boundary(seg.hyp.committed_end)
        if cut is None or cut <= seg.window_start or end - cut > limit:
            # keep the last committed word in the window: cut at its end and a late timestamp clips the
            # start of the next word; the new hypothesis' copy of the committed word is matched to it and
            # dropped
            cut = seg.hyp.committed[-1].start
        if cut > seg.window_start:
            seg.window_start = cut
            self._buffer.discard_before(min([cut] + [s.window_start for s in self._closing]))

    def _clean(self, result: DecodeResult, window_start: float, end: float, prompt: str) -> list[TimedWord]:
        """Guards against the classic Whisper failure modes before anything reaches the policy."""
        if result.error:
            return []
        if result.no_speech_prob > 0.6 and result.avg_logprob < -1.0:
            return []  # the model itself says this was not speech
        words = [TimedWord(w.text.strip(), window_start + max(0.0, w.start),
                           window_start + max(w.start, w.end), w.probability)
                 for w in result.words if w.text.strip()]
        words = in_time_order(drop_trailing_hallucination(stop_at_stacked_words(attach_punctuation(words))))
        words = [w for w in words if w.start < end + 0.1]
        words = trim_repetition(words)
        if result.compression_ratio > LOOP_COMPRESSION_RATIO and len(words) > 6:
            words = trim_repetition(words, max_repeats=2)
        if prompt and copies_prompt(words, prompt) and sum(w.probability for w in words) / len(words) < 0.75:
            return []
        for w in words:
            w.end = min(w.end, end)
            w.start = min(w.start, w.end)
        return words

    def _up_to_a_stretched_word(self, words: list[TimedWord]) -> list[TimedWord]:
        """A reading up to a word stretched over speech that no word covers.

        Whisper ends a window's reading early now and then ("windows of thy" and not a word of the 2.4 s after
        it) and stamps its last word over the rest: "of 37.61-40.01, thy 40.01-40.01". Two such readings agree,
        and their words were committed with those ends: the words said in that time ("age shall see despite
        of") then lay before the committed end and were dropped from every later reading, the final's too.
        Such a word, and the stacked words after it, wait for a reading that covers its time (a segment's final
        reads again from its last word when it stops short: ``_read_short``)."""
        recent = self._tracker.recent
        for i, w in enumerate(words):
            if w.end - w.start <= _LONGEST_WORD_S:
                continue
            remembered = bool(recent) and recent[0][0] <= w.start + _LONGEST_WORD_S
            if remembered and all(x.end - x.start < 0.05 for x in words[i + 1:]) \
                    and self._heard_speech(w.start + _LONGEST_WORD_S, w.end):
                return words[:i]  # only on the VAD's word: audio it no longer remembers is not taken for speech
        return words

    # ------------------------------------------------------------ events

    def _measure_commit(self, word_end: float) -> None:
        """Tell the inference loop how long after its audio arrived an utterance's last word became final:
        admission control steers on what a stream's listeners wait for, as the loop's load makes it."""
        with self._lock:
            arrived = _arrived_at(self._arrivals, word_end)
        observe = getattr(getattr(self._engine, "capacity", None), "observe_commit", None)
        if arrived is not None and observe is not None and self.config.priority != Priority.BULK:  # live only
            observe(max(0.0, self._engine.clock() - arrived))

    async def _emit_segment(self, seg: Segment, final: bool) -> None:
        try:
            await self._emit_segment_inner(seg, final)
        finally:
            self._progressed.set()

    async def _emit_segment_inner(self, seg: Segment, final: bool) -> None:
        words = seg.hyp.committed if final else seg.words
        n_final = len(seg.hyp.committed)
        text = join_words(w.text for w in words)
        if not final:
            if not words or seg.emitted == (text, n_final):
                return
            seg.emitted = (text, n_final)
        elif not words and seg.emitted is None:
            return  # nothing was ever said here: a VAD blip needs no message
        off = self.offset
        event = SegmentEvent(
            text=text,
            speaker=self.speaker,
            confidence=round(sum(w.probability for w in words) / len(words), 4) if words else 0.0,
            segment_id=seg.id,
            is_final=final,
            start=round((words[0].start if words else seg.start) + off, 3),
            end=round((words[-1].end if words else (seg.end or seg.start)) + off, 3),
            words=tuple(WordEvent(text=w.text, start=round(w.start + off, 3), end=round(w.end + off, 3),
                                  probability=round(min(1.0, max(0.0, w.probability)), 4),
                                  final=final or i < n_final)
                        for i, w in enumerate(words)),
            participant_id=self.participant_id,
        )
        newly_final = len(words) if final else n_final
        if newly_final > seg.final_told:
            last = words[newly_final - 1].end
            ends = [*seg.pauses, *([seg.speech_end] if seg.speech_end is not None else [])]
            if any(abs(end - last) <= _UTTERANCE_END_S for end in ends):  # the word that ends what was said
                self._measure_commit(last)
            seg.final_told = newly_final
        if final:
            self.segments_emitted += 1
            self._last_words = list(words)
            self._history = (self._history + " " + text).strip()[-1000:]
        await self._emit(event)


_UTTERANCE_END_S = 0.5
"""A final word this close to where the VAD heard speech end closes an utterance: how long after it was said
it became final is what a listener waits for (the commit latency the benchmark and admission control target);
words inside running speech wait for two readings to agree and are not what the target is about."""
_WORD_END_OVERHANG_S = 0.5
"""How far past the VAD's speech end a segment's last word may be stamped and still end before the pause: the
aligner stamps a line's last word late (0.15-0.2 s on read speech), and a tolerance of 0.15 s read "for them."
stamped 7.03 s as a word after the pause at 6.85 s, so the line waited 3.9 s for the next pause to close."""
_WORD_START_SLACK_S = 0.1
"""A word stamped to start this soon after the VAD's speech end was said before it, and a pause commits it with
the words before: a line's last word is stamped late, its start too ("for them." before a pause: "them" stamped
from 0.02 s after the speech end on a GPU's float16 reading), and left tentative there it did not hold the line
back, which closed on "for" and left "them." to open the next segment, whose final came 4.7 s after it was said."""
_LONGEST_WORD_S = 1.2
"""A word stamped longer than this at a reading's end, with speech heard in the rest of its time, is a reading
stopped short (see ``_up_to_a_stretched_word``); a long word said slowly, or one stamped over a pause, is not."""
_ANCHOR_STOP_S = 2.0
"""A reading that gives nothing after its window's anchor though the segment has this much audio of its own, in
which the VAD heard speech, stopped at the anchor (see ``_stopped_at_anchor``)."""
MIN_TURN_SEGMENT_S = 0.5
"""A turn this close after a segment's start is the one the segment opened at: no split."""
TURN_GAP_BEFORE_S = 0.8
TURN_GAP_AFTER_S = 0.3
"""How far before and after the diarizer's turn time a quiet stretch is looked for to cut the turn at."""
TURN_GAP_MIN_S = 0.1
"""The shortest quiet stretch a turn is cut in: a stop consonant inside a word is quiet for a chunk or two."""


def _arrived_at(arrivals: deque[tuple[float, float]], t: float) -> float | None:
    """When the audio at stream time ``t`` arrived (the first block reaching it), from the newest side."""
    found = None
    for end, at in reversed(arrivals):
        if end < t:
            break
        found = at
    return found


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a worker thread
        return None


def _dropped(decode: asyncio.Future) -> None:
    """A refresh that an urgent decode overtook ends: its reading is stale, and so is its failure."""
    if not decode.cancelled():
        decode.exception()
