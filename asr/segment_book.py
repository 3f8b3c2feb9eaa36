"""A stream's segments and committed words: the book every session of the window-decoding path keeps.

It holds what a subscriber is told and the rules that make it trustworthy: a segment opens at speech and closes
at a pause, a line's end, a sentence end the speaker went on from, a speaker turn or its longest length; a word
told final never moves to another segment; every segment gets exactly one final. Which windows are read to
fill it in is :mod:`asr.window_planner`'s business, and how a reading's words enter it :mod:`asr.result_reader`'s.

:class:`SegmentBook` is a part of :class:`~asr.session.StreamSession`: it holds the methods that change the
segments of the stream's :class:`~asr.stream_state.StreamState`, and tells a subscriber what they became.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from asr.events import FailureEvent, SegmentEvent, WordEvent
from asr.inference import Priority
from asr.policy import Hypotheses, TimedWord, join_words
from asr.stream_state import Segment, StreamState

Emit = Callable[[SegmentEvent], Awaitable[None]]
Report = Callable[[FailureEvent], Awaitable[None]]


class SegmentBook:
    """The segments of one stream and the rules that close, split and finalise them. Methods marked "under the
    lock" are called with ``state.lock`` held."""

    def __init__(self, state: StreamState, emit: Emit) -> None:
        self.state = state
        self._emit = emit
        self.segments_emitted = 0

    def close_open(self, t: float) -> None:
        seg = self.state.open
        if seg is None:
            return
        tr = self.state.tracker
        end = t
        if not tr.in_speech and tr.speech_end is not None and seg.start <= tr.speech_end <= t:
            end = min(t, tr.speech_end + self.state.config.vad.speech_pad_s)
        seg.end = max(end, seg.start)
        seg.speech_end = min(seg.end, tr.speech_end) if tr.speech_end is not None and not tr.in_speech else seg.end
        self.state.closing.append(seg)
        self.state.open = None
        self.state.last_closed_end = seg.end

    def update_segments(self) -> None:
        seg = self.state.open
        if seg is None:
            return
        cfg = self.state.config
        tr = self.state.tracker
        if not tr.in_speech and tr.silence_run >= cfg.pause_commit_s and tr.speech_end is not None:
            seg.pauses[tr.speech_end] = tr.silence_run
            if tr.speech_end != seg.endpoint_for and tr.speech_end > seg.hyp.committed_end + 0.1:
                seg.pending_pause = tr.speech_end  # remembered even if speech resumes before a decode is free
        if self.state.tracker.silence_run >= cfg.min_silence_s:
            self.close_open(self.state.tracker.t)
        elif (pause := self.line_end(seg)) is not None:
            self.close_at_pause(seg, pause)
        elif (keep := self.sentence_end(seg)) is not None:
            self.split(seg, keep)
        elif self.state.tracker.t - seg.start >= cfg.max_segment_s:
            if seg.hyp.committed:
                self.split(seg)
            elif not cfg.live:
                # nothing is committed in file mode: cut where the audio is least speech-like
                cut = self.state.tracker.quietest(since=seg.start + cfg.max_segment_s * 0.6) or self.state.tracker.t
                self.close_open(cut)
                self.state.open = Segment(id=self.state.new_id(), start=cut, window_start=cut, decoded_to=cut)

    def line_end(self, seg: Segment) -> float | None:
        """(under the lock) Where a listener closes a line: the speech end of a pause of ``pause_commit_s`` (now
        or already over) before which every word is final, after which none is, and whose last word ends a
        sentence (or a segment that has run ``close_after_s``). Nothing in the segment then waits for another
        reading. None when there is no such pause."""
        cfg = self.state.config
        hyp = seg.hyp
        if not cfg.live or seg is not self.state.open or not hyp.committed:
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

    def sentence_end(self, seg: Segment) -> int | None:
        """(under the lock) Where the open segment closes at a sentence end that the speaker went on from
        without a pause (a conversation's abutting turns, crosstalk), as a split does, instead of running on to
        a pause or to ``max_segment_s``: how many of its committed words it keeps. None: nowhere.

        Words told final stay in the segment (it keeps at least ``final_told``); words committed by the
        reading being applied and not told yet may open the next segment already committed. So a sentence
        end that a reading commits together with the next sentence's first words still closes the segment:
        committed one reading at a time, "design. Okay, I thought" had no moment at which a sentence end was
        the last final word, and the segment ran on 7 s more."""
        cfg = self.state.config
        hyp = seg.hyp
        if not cfg.live or cfg.sentence_split_s < 0 or seg is not self.state.open or not hyp.committed:
            return None  # a closed segment (one whose final re-reads its tail, say) has its final coming
        n = len(hyp.committed)
        for i in range(max(0, seg.final_told - 1), n):
            w = hyp.committed[i]
            following = hyp.committed[i + 1] if i + 1 < n else (hyp.tentative[0] if hyp.tentative else None)
            if (following is not None and w.closes_sentence
                    and w.end - seg.start >= cfg.sentence_split_s and following.start >= w.end - 0.05):
                return i + 1
        return None

    def close_at_pause(self, seg: Segment, pause: float) -> None:
        """(under the lock) Close the open segment at a pause on the words it has committed: its final needs no
        decode. Speech after the pause (a reading that ended after the speaker went on) opens the next segment,
        with the tentative words read there held for its own agreement."""
        tr = self.state.tracker
        cut = pause + min(self.state.config.vad.speech_pad_s, seg.pauses[pause] / 2)
        after = [w for w in seg.hyp.tentative if w.start >= cut]
        seg.hyp.tentative = []
        seg.end = max(cut, seg.start)
        seg.speech_end = pause
        seg.decoded_to = max(seg.decoded_to, seg.end)
        pending, seg.pending_pause = seg.pending_pause, None
        self.state.closing.append(seg)
        self.state.last_closed_end = seg.end
        self.state.open = None
        if tr.in_speech or (tr.speech_end is not None and tr.speech_end > cut):  # the speaker went on
            nxt = Segment(id=self.state.new_id(), start=seg.end, window_start=seg.end, decoded_to=seg.end,
                          endpoint_for=seg.endpoint_for,
                          pending_pause=pending if pending is not None and pending > cut else None,
                          pauses=seg.pauses_after(cut))
            nxt.hyp.tentative = after
            self.state.open = nxt

    def close_if_line_ends(self, seg: Segment) -> None:
        pause = self.line_end(seg)
        if pause is not None:
            self.close_at_pause(seg, pause)

    def turn_at(self, t: float) -> bool:
        """A speaker turn found at stream time ``t`` (live diarization): the next speaker's words open a new
        segment. Words already final stay where the partials showed them: should the turn fall before the last
        of them, the segment is cut after it (its speaker is then told by ``diarization`` messages over time
        ranges); the words before the turn that are not final yet are read once more, up to the turn, by the
        segment's final. True when it cut: a decode may be due."""
        with self.state.lock:
            seg = self.state.open
            if seg is None or not self.state.config.live:
                return False
            t = self._gap_near(t, since=seg.start)
            if t < seg.start + MIN_TURN_SEGMENT_S:
                return False  # the segment opened at (or after) this turn
            hyp = seg.hyp
            if hyp.committed and hyp.committed_end >= t - 1e-6:
                # the committed words after the turn are the next voice's: those not told yet open the next
                # segment, committed there; told ones stay
                before = sum(1 for w in hyp.committed if w.start < t)
                keep = max(seg.final_told, before)
                self.split(seg, keep or None)  # none before the turn: the segment keeps them all
            elif t < self.state.buffer.end:
                self.cut_at(seg, t)
            else:
                return False
        return True

    def _gap_near(self, t: float, since: float) -> float:
        """(under the lock) Where a turn the diarizer placed at ``t`` is cut: the middle of the longest quiet
        stretch the VAD heard from ``TURN_GAP_BEFORE_S`` before ``t`` to ``TURN_GAP_AFTER_S`` after it (the
        nearest of equal ones), or ``t`` itself where the voices abut. A diarizer places a turn on its one-second
        windows' centres, 0.3-0.4 s late on a dialogue's 0.25-0.35 s gaps, so cut at ``t`` the next voice's
        first word ("Let", "Everyone") was read into the segment of the voice before it."""
        runs = self.state.tracker.quiet_runs(max(since, t - TURN_GAP_BEFORE_S), t + TURN_GAP_AFTER_S, TURN_GAP_MIN_S)
        if not runs:
            return t
        start, end = max(runs, key=lambda r: (round(r[1] - r[0], 3), -abs((r[0] + r[1]) / 2 - t)))
        return (start + end) / 2

    def cut_at(self, seg: Segment, t: float) -> None:
        """(under the lock) Close ``seg`` at ``t``: its final reads its window up to there and keeps the words
        spoken before it; the audio after ``t`` is the next segment's."""
        seg.end = seg.speech_end = t
        seg.pending_pause = None
        self.state.closing.append(seg)
        self.state.open = Segment(id=self.state.new_id(), start=t, window_start=t, decoded_to=t)
        self.state.last_closed_end = t

    def split(self, seg: Segment, keep: int | None = None) -> None:
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
        self.state.closing.append(seg)
        # the audio after the cut was already decoded and a detected pause still needs its commit
        anchor = [w for w in hyp.committed if w.start >= cut - self.state.config.split_context_s] or [last]
        nxt = Segment(id=self.state.new_id(), start=cut, window_start=min(cut, anchor[0].start),
                      decoded_to=max(cut, decoded), endpoint_for=seg.endpoint_for,
                      pending_pause=pause if pause is not None and pause > cut else None,
                      pauses=seg.pauses_after(cut), hyp=Hypotheses(anchor=anchor))
        nxt.hyp.committed = carried
        nxt.hyp.tentative = tentative
        self.state.open = nxt
        self.state.last_closed_end = cut

    async def final_as_read(self, seg: Segment) -> None:
        """Close a segment on its latest reading, without another decode."""
        seg.hyp.commit_all(self.spoken(seg, seg.hyp.tentative))
        await self.emit_segment(seg, final=True, pause_reading=self.pause_unread(seg))

    @staticmethod
    def pause_unread(seg: Segment) -> bool:
        """Whether the pause that closed ``seg`` never had its reading: the lanes were busy until the segment
        closed (on 2 cores beside two busy processes, every time in one test), so its final stands for that
        reading, and its wait is the load's as the reading's would have been."""
        return seg.speech_end is not None and seg.endpoint_for != seg.speech_end

    @staticmethod
    def spoken(seg: Segment, words: list[TimedWord]) -> list[TimedWord]:
        """A closed segment's words up to where the VAD last heard speech: nothing is said after it."""
        if seg.speech_end is None:
            return words
        return [w for w in words if w.start < seg.speech_end + _WORD_START_SLACK_S]

    def _measure_commit(self, word_end: float) -> None:
        """Tell the inference loop how long after its audio arrived an utterance's last word became final:
        admission control steers on what a stream's listeners wait for, as the loop's load makes it."""
        with self.state.lock:
            arrived = _arrived_at(self.state.arrivals, word_end)
        observe = getattr(getattr(self.state.engine, "capacity", None), "observe_commit", None)
        if arrived is not None and observe is not None and self.state.config.priority != Priority.BULK:  # live only
            observe(max(0.0, self.state.engine.clock() - arrived))

    async def emit_segment(self, seg: Segment, final: bool, *, pause_reading: bool = False) -> None:
        """``pause_reading``: this message follows a reading for a pause (its own; a refresh whose window holds
        it because no lane was free before the pause was sure; or the final of a segment whose closing pause
        never had a reading), the decode whose wait the loop's load makes. Admission times the words it makes
        final only then: words two readings agreed on waited for agreement, and a settle, or a final after the
        pause's reading, for a fixed silence. At 16 streams on 2 cores pause readings were timed at p50 / p95
        0.79 / 1.20 s (the outside client: 0.76 / 1.10 s) and all finals at 1.41 / 2.15 s: timed too, those
        finals read as an overload the client never saw."""
        try:
            await self._emit_segment_inner(seg, final, pause_reading)
        finally:
            self.state.progressed.set()

    async def _emit_segment_inner(self, seg: Segment, final: bool, pause_reading: bool) -> None:
        words = seg.hyp.committed if final else seg.words
        n_final = len(seg.hyp.committed)
        text = join_words(w.text for w in words)
        if not final:
            if not words or seg.emitted == (text, n_final):
                return
            seg.emitted = (text, n_final)
        elif not words and seg.emitted is None:
            return  # nothing was ever said here: a VAD blip needs no message
        off = self.state.offset
        event = SegmentEvent(
            text=text,
            speaker=self.state.speaker,
            confidence=round(sum(w.probability for w in words) / len(words), 4) if words else 0.0,
            segment_id=seg.id,
            is_final=final,
            start=round((words[0].start if words else seg.start) + off, 3),
            end=round((words[-1].end if words else (seg.end or seg.start)) + off, 3),
            words=tuple(WordEvent(text=w.text, start=round(w.start + off, 3), end=round(w.end + off, 3),
                                  probability=round(min(1.0, max(0.0, w.probability)), 4),
                                  final=final or i < n_final)
                        for i, w in enumerate(words)),
            participant_id=self.state.participant_id,
        )
        newly_final = len(words) if final else n_final
        if newly_final > seg.final_told:
            last = words[newly_final - 1].end
            ends = [*seg.pauses, *([seg.speech_end] if seg.speech_end is not None else [])]
            if pause_reading and any(abs(end - last) <= _UTTERANCE_END_S for end in ends):  # ends what was said
                self._measure_commit(last)
            seg.final_told = newly_final
        if final:
            self.segments_emitted += 1
            self.state.last_words = list(words)
            self.state.history = (self.state.history + " " + text).strip()[-1000:]
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
