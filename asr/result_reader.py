"""Reading a decode's result into a stream's segments: guards against Whisper's failure modes, then the commit
policy of the reading's kind (a final commits all, a pause commits what comes before it, a refresh what two
readings agree on), then the segment rules the new words trigger, then the events a subscriber gets.
"""

from __future__ import annotations

import logging
from typing import Any

from asr.backends.base import LOOP_COMPRESSION_RATIO, DecodeResult
from asr.events import FailureEvent
from asr.inference import Priority
from asr.policy import (
    TimedWord,
    attach_punctuation,
    copies_prompt,
    drop_trailing_hallucination,
    in_time_order,
    stop_at_stacked_words,
    trim_repetition,
)
from asr.segment_book import Report, SegmentBook
from asr.stream_state import Segment, StreamState
from asr.window_planner import Plan, WindowPlanner

log = logging.getLogger("voxlane.session")


class ResultReader:
    """Applies decode results to the segments they were cut for: a part of the stream's session, which reads
    through its planner and writes through its book."""

    def __init__(self, state: StreamState, book: SegmentBook, planner: WindowPlanner, report: Report | None) -> None:
        self.state = state
        self.book = book
        self.planner = planner
        self._report = report  # tells the subscribers when the model fails on this stream
        self._failing = False  # decodes fail since the last one that read: reported once per run of them

    async def read(self, value: tuple[DecodeResult, Any]) -> None:
        result, (plan, window_start, prompt) = value
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s window %.2f-%.2f speech_end=%s commit_before=%.2f buffer_end=%.2f words=%s",
                      self.state.key, plan.kind.name, window_start, plan.end, self.state.tracker.speech_end,
                      plan.commit_before, self.state.buffer.end,
                      [(w.text, round(w.start, 2), round(w.end, 2)) for w in result.words][-4:])
        await self.apply(plan, window_start, result, prompt)

    async def apply(self, plan: Plan, window_start: float, result: DecodeResult, prompt: str) -> None:
        seg = plan.segment
        if plan.kind == Priority.ENDPOINT and not await self._pause_lasts(plan, self.state.config.pause_commit_s):
            plan = Plan(seg, Priority.PARTIAL, end=plan.end)  # speech went on: a reading of what came before
        if result.error:
            # a failed read says nothing about the audio: a refresh leaves the hypothesis as it was (this
            # audio is read again by the next decode), and a final closes on that latest reading instead of
            # dropping the words its partials showed
            log.warning("decode failed for %s: %s", self.state.key, result.error)
            words = list(seg.hyp.tentative)
            if not self._failing:
                self._failing = True
                await self.tell(f"decoding failed, the words read so far are kept: {result.error}", True)
        else:
            self._failing = False
            words = self._clean(result, window_start, plan.end, prompt)
        if plan.kind == Priority.FINAL:
            words = self.book.spoken(seg, words)
        else:
            words = self._up_to_a_stretched_word(words)  # a final keeps them: it re-reads a tail it stops short of
        final = False
        with self.state.lock:
            self.state.decoded_to = max(self.state.decoded_to, plan.end)
            if plan.kind != Priority.FINAL and result.error:
                if seg is self.state.open:  # the next refresh waits for new audio: a broken backend is not asked now
                    seg.decoded_to = max(seg.decoded_to, plan.end)
                    if plan.kind == Priority.ENDPOINT and seg.pending_pause == plan.speech_end:
                        seg.endpoint_for, seg.pending_pause = plan.speech_end, None
                return
            if plan.kind != Priority.FINAL and seg is not self.state.open:
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
            settled = plan.end - self.state.config.settle_s  # words this far back commit even if hypotheses disagree
            if plan.kind == Priority.FINAL:
                hyp.commit_all(words, start=window_start)
                if not result.error and self.planner.read_short(seg, plan.end):
                    # the model stopped reading before the speech did (Whisper ends a long window early now
                    # and then: "windows of thy" and not a word of the 3.5 s after it): the rest is read once
                    # more, from the last word on, before the segment is final
                    seg.tail_read = True
                    if hyp.committed:
                        seg.window_start = max(seg.window_start, hyp.committed[-1].start)
                    elif hyp.anchor:
                        self.planner.drop_anchor(seg)  # it read the anchor and stopped: read again without it
                    seg.read = None  # the tail is read anew either way
                    seg.decoded_to = min(seg.decoded_to, max(hyp.committed_end, seg.start))
                else:
                    if self.state.closing and self.state.closing[0] is seg:
                        self.state.closing.popleft()
                    final = True
            elif self.planner.reads_cold(seg, window_start, plan.end):
                # a reading to compare the next with, nothing committed
                hyp.agree(words, horizon=float("-inf"), start=window_start)
            elif plan.commit_before != float("inf"):
                # a pause commit, or a refresh whose window already holds the pause: either way an unsure
                # word is weighed against the previous hypothesis, not against this one's own copy of it
                hyp.commit_before(words, plan.commit_before, confident=self.state.config.pause_commit_confidence,
                                  settled=settled, start=window_start)
            else:
                hyp.agree(words, horizon=plan.end - self.state.config.agree_right_context_s, settled=settled,
                          unsure=self.state.config.unsure_probability, unsure_wait=self.state.config.unsure_wait_s,
                          start=window_start)
            if not result.error and self.planner.stopped_at_anchor(seg, plan.end):
                self.planner.drop_anchor(seg)
            if plan.kind == Priority.ENDPOINT:  # this pause has had its decode, committed or not
                seg.endpoint_for = plan.speech_end
                if seg.pending_pause == plan.speech_end:
                    seg.pending_pause = None
            opened = seg
            while not final and (keep := self.book.sentence_end(opened)) is not None:
                self.book.split(opened, keep)  # its final follows at once, with no decode
                assert self.state.open is not None
                opened = self.state.open
            self.planner.trim_window(opened, plan.end)
            if not final:
                self.book.close_if_line_ends(opened)  # its words are final up to a line's end: the final follows
        # what admission times (SegmentBook.emit_segment): a reading for a pause, its own or a refresh whose window
        # holds it, or the final of a segment whose closing pause never had one (the lanes were busy until the
        # segment closed, so the final waited on the load as the pause's reading would have)
        pause_reading = (plan.commit_before != float("inf")
                         or (plan.kind == Priority.FINAL and self.book.pause_unread(seg)))
        if opened is seg:
            await self.book.emit_segment(seg, final=final, pause_reading=pause_reading)
        else:
            await self.book.emit_segment(opened, final=False, pause_reading=pause_reading)  # the next sentence
        if plan.kind == Priority.ENDPOINT and not result.error:
            await self._settle_pause(plan, (window_start, plan.end, prompt), opened)

    async def _settle_pause(self, plan: Plan, read: tuple[float, float, str], seg: Segment) -> None:
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
        if not await self._pause_lasts(plan, self.state.config.pause_settle_s, seg):
            return
        with self.state.lock:
            if seg is not self.state.open or seg.read != expected:
                return
            settled = seg.hyp.settle_before(plan.commit_before)
            self.book.close_if_line_ends(seg)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s settled at a pause of %.2fs: %s", self.state.key, seg.pause_after(plan.speech_end, 0.0),
                      [(w.text, round(w.start, 2), round(w.probability, 2)) for w in settled])
        await self.book.emit_segment(seg, final=False)

    async def _pause_lasts(self, plan: Plan, least: float, seg: Segment | None = None) -> bool:
        """Whether the pause a decode was started for lasted ``least`` seconds (a commit's or a settle's): the
        decode may start before the pause is confirmed, and may even end first (a GPU), and then its reading
        waits for the answer; or it may end after the speaker resumed, and the pause heard decides. No when the
        speech resumed short of it, or when the segment closed first (its final then decides, see _apply).
        ``seg``: the segment the pause is now in, when the reading split its own (see _settle_pause)."""
        seg = plan.segment if seg is None else seg
        while True:
            self.state.wake.clear()  # every frame fed sets it
            with self.state.lock:
                if seg.pause_after(plan.speech_end, -1.0) >= least - 1e-9:
                    return True
                tr = self.state.tracker
                if seg is not self.state.open or tr.in_speech or tr.speech_end != plan.speech_end:
                    return False
            await self.state.wake.wait()

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
        recent = self.state.tracker.recent
        for i, w in enumerate(words):
            if w.end - w.start <= _LONGEST_WORD_S:
                continue
            remembered = bool(recent) and recent[0][0] <= w.start + _LONGEST_WORD_S
            if remembered and all(x.end - x.start < 0.05 for x in words[i + 1:]) \
                    and self.planner.heard_speech(w.start + _LONGEST_WORD_S, w.end):
                return words[:i]  # only on the VAD's word: audio it no longer remembers is not taken for speech
        return words

    async def tell(self, message: str, recoverable: bool) -> None:
        if self._report is None:
            return
        try:
            await self._report(FailureEvent(message=message, recoverable=recoverable,
                                            participant_id=self.state.participant_id))
        except Exception:
            log.exception("session %s could not report a failure", self.state.key)


_LONGEST_WORD_S = 1.2
"""A word stamped longer than this at a reading's end, with speech heard in the rest of its time, is a reading
stopped short (see ``_up_to_a_stretched_word``); a long word said slowly, or one stamped over a pause, is not."""
