"""Which window of a stream to read next, and how: the planning only window decoders need.

A streaming recognizer (:mod:`asr.recognizer_session`) endpoints itself and needs none of this. For Whisper the
session decides *what* to read (a segment's final, a pause's commit, a refresh of the hypothesis), cuts the
window at dispatch time from the freshest audio, lends a new segment the words before it as context, trims
committed audio off a long window and writes the prompt; the inference loop decides *when*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asr.backends.base import DecodeRequest
from asr.backends.hotwords import hotwords_text
from asr.inference import Priority
from asr.policy import join_words
from asr.segment_book import _WORD_START_SLACK_S
from asr.stream_state import Segment, StreamState
from asr.vad import CHUNK_SECONDS


@dataclass
class Plan:
    """One decode the session wants: of which segment, of what kind, the window's end, and what it commits."""

    segment: Segment
    kind: Priority
    end: float
    commit_before: float = float("inf")
    speech_end: float | None = None


class WindowPlanner:
    """Plans and cuts the decode windows of a stream's segments: a part of the stream's session, over its state."""

    def __init__(self, state: StreamState) -> None:
        self.state = state

    def plan(self) -> Plan | None:
        """What to decode next, decided from the freshest state (called under the lock)."""
        if self.state.closing:
            first = self.state.closing[0]
            return Plan(first, Priority.FINAL, end=first.end or self.state.buffer.end)
        seg = self.state.open
        if seg is None or self.state.paused or not self.state.config.live:
            return None
        tr, cfg = self.state.tracker, self.state.config
        speech_end = tr.speech_end if tr.speech_end is not None else seg.start
        uncommitted = speech_end > max(seg.hyp.committed_end, seg.start) + 0.1
        pause = seg.pending_pause
        if pause is not None and pause > max(seg.hyp.committed_end, seg.start) + 0.1:
            # its window ends at the pause even when the speaker went on before a lane was free: read through
            # the words after it, a clause's end that a reading at the pause closes ("by a similar process.")
            # runs on into the next clause, and its segment waits for the next sentence end or pause
            end = min(self.state.buffer.end, self._read_to(seg, pause))
            return Plan(seg, Priority.ENDPOINT, end=end, commit_before=pause + _WORD_START_SLACK_S,
                         speech_end=pause)
        if not tr.in_speech and tr.silence_run < cfg.pause_commit_s and uncommitted:
            # the speaker may be pausing. The pause's window ends a pad after the speech: once that much has
            # arrived it is read at once, as the pause's decode, instead of when the pause is confirmed; a pause
            # that lasts is committed as the decode ends, speech that resumes first makes it a refresh (_apply)
            if tr.silence_run >= cfg.vad.speech_pad_s and speech_end != seg.endpoint_for:
                return Plan(seg, Priority.ENDPOINT, end=self.state.buffer.end,
                             commit_before=speech_end + _WORD_START_SLACK_S,
                             speech_end=speech_end)
            return None
        pause_end = self._pause_window_end(seg)
        if pause_end is not None and seg.decoded_to >= pause_end - 1e-6:
            return None  # in a pause the window ends at the speech: it was read already, and reads the same
        step = (cfg.first_step_s if seg.read is None else cfg.min_step_s) * self.state.engine.step_scale
        if self.state.buffer.end - seg.decoded_to >= step and uncommitted:
            plan = Plan(seg, Priority.PARTIAL, end=self.state.buffer.end)
            if not tr.in_speech and tr.silence_run >= cfg.pause_commit_s:
                plan.commit_before = speech_end + _WORD_START_SLACK_S  # this window already holds the pause
            return plan
        return None

    def priority(self, plan: Plan) -> Priority:
        # a bulk session (upload) never outranks live work, whatever kind of decode it needs
        return Priority.BULK if self.state.config.priority == Priority.BULK else plan.kind

    def _pause_window_end(self, seg: Segment) -> float | None:
        """Where a live window ends while the speaker pauses: a short pad after the speech, since trailing
        silence is where Whisper invents "Thank you."; None while speech goes on."""
        tr = self.state.tracker
        if tr.in_speech or tr.speech_end is None:
            return None
        return self._read_to(seg, tr.speech_end)

    def _read_to(self, seg: Segment, speech_end: float) -> float:
        """Where a window read at a pause after ``speech_end`` ends: a pad after the speech."""
        return max(speech_end, seg.window_start) + self.state.config.vad.speech_pad_s

    def window_end(self, plan: Plan) -> float:
        """Where the plan's window ends: a live window in a pause ends a pad after the speech."""
        pause_end = self._pause_window_end(plan.segment)
        if plan.kind != Priority.FINAL and pause_end is not None:
            return min(plan.end, pause_end)
        return plan.end

    def build(self) -> tuple[DecodeRequest, Any] | None:
        """Runs on the inference thread at dispatch time."""
        with self.state.lock:
            plan = self.plan()
            if plan is None:
                return None
            seg = plan.segment
            end = plan.end = self.window_end(plan)
            if plan.kind == Priority.FINAL and self.read_to_the_end(plan):
                return None  # nothing new since the last decode: close without decoding
            self._lend_context(seg)
            prompt = self.prompt(seg)
            audio = self.state.buffer.slice(seg.window_start, end)
            self.state.last_cut = (seg, end)
        if len(audio) < 1600:  # under 0.1 s: nothing a model can use
            return None
        request = DecodeRequest(audio=audio, prompt=prompt, language=self.state.config.language,
                                hotwords=hotwords_text(self.state.config.key_terms))
        return request, (plan, seg.window_start, prompt)

    def build_beside(self) -> tuple[DecodeRequest, Any] | None:
        """An urgent decode's build beside a running refresh: nothing when that refresh, cut after it was
        asked for, already reads the same window."""
        with self.state.lock:
            if not self.overtakes(self.plan()):
                return None
        return self.build()

    def overtakes(self, plan: Plan | None) -> bool:
        """A decode to start beside the session's running refresh: a pause commit or a final whose window
        holds audio the refresh does not (called under the lock).

        On a backend with a lane free, waiting for the refresh would add up to a whole decode to the
        commit of the words before a pause, and its reading is made stale by the one that follows."""
        if plan is None or plan.kind == Priority.PARTIAL:
            return False
        if plan.kind == Priority.FINAL and self.read_to_the_end(plan):
            return False  # closes without a decode once the refresh is read
        cut = self.state.last_cut
        return cut is None or cut[0] is not plan.segment or cut[1] < self.window_end(plan) - 1e-6

    def _lend_context(self, seg: Segment) -> None:
        """Start a segment's first window at the last words of the segment before it.

        A segment is cut at a pause, not where the speaker's thought ends; read alone from its onset,
        its first words have no audio before them (the prompt gives their text, not their sound), and a
        short one is too cold a reading to commit from until its final. With the closing words of the
        last segment in its window (an anchor, lined up and dropped like a split segment's) it is read
        the way continuous speech is, and it commits while the speaker goes on. Decided once, at the
        segment's first decode: every earlier segment is final by then (a session decodes in order).

        Never words from before a client's cut (:meth:`~asr.session.StreamSession.cut`): the item after a
        commit holds no audio before it (lent, "ask" after the cut was stamped 0.35 s before it).
        """
        if seg.context_lent:
            return
        seg.context_lent = True
        cfg, last_words = self.state.config, self.state.last_words
        if cfg.context_s <= 0 or seg.hyp.anchor or not last_words:  # a split segment has its anchor
            return
        if last_words[0].start < self.state.cut_time:
            return
        last_end = last_words[-1].end
        if seg.start - last_end > cfg.context_gap_s:
            return
        lent = [w for w in last_words if w.start >= last_end - cfg.context_s and w.start >= self.state.buffer.start]
        if not lent or lent[0].start >= seg.window_start:
            return
        seg.window_start = lent[0].start
        seg.hyp.anchor = lent

    def read_to_the_end(self, plan: Plan) -> bool:
        """A closed segment's latest decode already read all of its audio, and its words reach the speech in
        it: its final needs no decode. Speech that no word covers (a reading that skipped a stretch, or a
        segment cut off behind it at a turn) is read by the final."""
        seg = plan.segment
        hyp = seg.hyp
        if self._stops_short(seg, plan.end, max(hyp.committed_end, hyp.tentative[-1].end if hyp.tentative else 0.0)):
            return False
        return seg.decoded_to >= plan.end and (
            not hyp.tentative or self._was_read(seg, plan.end, self.prompt(seg)))

    def heard_speech(self, start: float, end: float) -> bool:
        """Whether the VAD heard 0.2 s of speech between ``start`` and ``end`` (further back than it remembers:
        assumed, so the final reads it)."""
        recent = self.state.tracker.recent
        if not recent or recent[0][0] > start + CHUNK_SECONDS:
            return True
        threshold = self.state.config.vad.threshold
        return sum(CHUNK_SECONDS for t, p in recent if start < t <= end and p >= threshold) >= 0.2 - 1e-9

    def read_short(self, seg: Segment, end: float) -> bool:
        """(under the lock) A closed segment's words stop short of its speech: at least ``line_gap_s`` of it, in
        which the VAD heard speech, has no word. Once per segment: the second reading stands."""
        return not seg.tail_read and self._stops_short(seg, end, seg.hyp.committed_end)

    def _stops_short(self, seg: Segment, end: float, words_end: float) -> bool:
        """(under the lock) More than ``line_gap_s`` of the closed segment's speech, up to ``end``, lies after
        ``words_end`` and the VAD heard speech there: no word covers it."""
        words_end = max(words_end, seg.start)
        speech_end = min(end, seg.speech_end if seg.speech_end is not None else end)
        return speech_end - words_end > self.state.config.line_gap_s and self.heard_speech(words_end, speech_end)

    @staticmethod
    def _was_read(seg: Segment, end: float, prompt: str) -> bool:
        """The latest decode read this very window with this prompt: decoding it again gives the same words.

        A segment whose pause was read (and left words tentative: a young segment's short window, or an
        unsure word) closes on the same audio, since both cut at the speech end and its pad. Its final then
        takes that reading as it stands instead of queueing the same decode again behind other streams.
        """
        return seg.read is not None and seg.read[0] == seg.window_start and seg.read[1] >= end - 1e-6 \
            and seg.read[2] == prompt

    def prompt(self, seg: Segment) -> str:
        history = self.state.history
        for w in reversed(seg.hyp.anchor):
            # the window starts with this word: given it as text too, the model skips it in the audio and
            # stamps the next word at its time
            history = history.removesuffix(w.text).rstrip()
        before = [w.text for w in seg.hyp.committed if w.end <= seg.window_start + 0.05]
        text = (history + " " + join_words(before)).strip()
        return text[-self.state.config.prompt_chars:] if self.state.config.prompt_chars > 0 else ""

    def reads_cold(self, seg: Segment, window_start: float, end: float) -> bool:
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
        return (end - window_start < self.state.config.min_commit_window_s and window_start <= seg.start
                and not seg.hyp.anchor)

    def stopped_at_anchor(self, seg: Segment, end: float) -> bool:
        """(under the lock) The segment's readings give nothing after its anchor, though its own audio (from
        ``seg.start`` to ``end``) holds ``anchor_stop_s`` and the VAD heard speech in it.

        Whisper reads a window's opening words, the anchor lent from the segment before, and may then close
        its text there and skip the rest: another voice after a pause (the seven-voice dialogue, with 5.6 s
        of the last speaker's words lent) was never read, reading after reading and in the final, and 20 s of
        speech were lost with the segment. A reading that lines up with the anchor and leaves nothing new
        is such a stop once the segment has more than a word's worth of speech of its own."""
        hyp = seg.hyp
        if not hyp.anchor or hyp.committed or hyp.tentative:
            return False
        own = max(seg.start, hyp.anchor[-1].end)
        return end - own >= self.state.config.anchor_stop_s - 1e-9 and self.heard_speech(own, end)

    @staticmethod
    def drop_anchor(seg: Segment) -> None:
        """Read the segment from its own start, without the words lent before it (see ``_stopped_at_anchor``):
        it is then a young segment read cold, as one with nothing to read on from."""
        seg.hyp.anchor = []
        seg.window_start = max(seg.window_start, seg.start)
        seg.read = None

    def trim_window(self, seg: Segment, end: float) -> None:
        # one limit whatever the load: halving it while other sessions waited saved little decode time (the
        # encoder's 30 s pass is most of a decode's cost) and took the model's left context away (replay at
        # N=4: 151 errors of 1372 with the halving, 132 without; one real-time N=4 run on 2 cores: WER
        # 11.8 % -> 10.5 %, commit p95 2.87 -> 2.08 s)
        limit = self.state.config.trim_s
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
            self.state.buffer.discard_before(min([cut] + [s.window_start for s in self.state.closing]))
