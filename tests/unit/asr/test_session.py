"""A live session's segment boundaries: where it cuts at a speaker turn the diarizer found (in the quiet the VAD
heard near it), where a line closes at a pause (only once every word said before the pause is final), and where
it closes at a sentence end the speaker went on from.

Light: a session with no decode running (its segments and VAD history set by hand), the VAD model only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asr.policy import TimedWord
from asr.session import Segment, StreamSession
from asr.vad import CHUNK_SECONDS, SileroModel


class _NoEngine:
    """The session only asks the engine for decodes; these tests start none."""

    def is_queued(self, key: str) -> bool:
        return False


def _session(quiet: Sequence[tuple[float, float]] = (), until: float = 0.0) -> StreamSession:
    """A session whose VAD heard speech up to ``until`` except in the ``quiet`` stretches."""
    session = StreamSession(engine=_NoEngine(), vad_model=SileroModel(), emit=None)  # type: ignore[arg-type]
    n = int(round(until / CHUNK_SECONDS))
    ends = (np.arange(n) + 1) * CHUNK_SECONDS
    probs = np.array([0.02 if any(a < e - CHUNK_SECONDS / 2 < b for a, b in quiet) else 0.95 for e in ends])
    session.state.tracker.update(probs)
    return session


def _words(*spec: tuple[str, float, float]) -> list[TimedWord]:
    return [TimedWord(text, start, end, 0.9) for text, start, end in spec]


# ------------------------------------------------------------ speaker turns

def _open(session: StreamSession, committed: list[TimedWord], told: int) -> Segment:
    seg = Segment(id="seg1", start=1.0, window_start=1.0, decoded_to=5.0)
    seg.hyp.committed = committed
    seg.final_told = told
    session.state.open = seg
    return seg


TURN_LINE = _words(("the", 2.0, 2.4), ("whole", 2.4, 2.9), ("team.", 2.9, 3.2), ("Let", 3.55, 3.8))


def test_a_late_turn_is_cut_in_the_gap_before_it_and_the_next_voice_keeps_its_first_word() -> None:
    """The diarizer put the turn 0.3 s into the next voice; the words committed after the gap, not told yet,
    open the next segment committed there."""
    session = _session(quiet=[(3.2, 3.55)], until=5.0)
    seg = _open(session, list(TURN_LINE), told=2)
    session.turn_at(3.85)
    assert [w.text for w in seg.hyp.committed] == ["the", "whole", "team."]
    assert seg in session.state.closing
    assert session.state.open is not None and [w.text for w in session.state.open.hyp.committed] == ["Let"]


def test_a_word_told_final_stays_in_its_segment() -> None:
    session = _session(quiet=[(3.2, 3.55)], until=5.0)
    seg = _open(session, list(TURN_LINE), told=4)
    session.turn_at(3.85)
    assert [w.text for w in seg.hyp.committed] == ["the", "whole", "team.", "Let"]
    assert session.state.open is not None and session.state.open.hyp.committed == []


def test_abutting_voices_are_cut_where_the_diarizer_put_the_turn() -> None:
    session = _session(quiet=[], until=5.0)
    assert session.book._gap_near(3.85, since=1.0) == 3.85


def test_the_longest_quiet_near_the_turn_wins_and_a_stop_consonant_is_no_gap() -> None:
    session = _session(quiet=[(3.0, 3.064), (3.3, 3.6)], until=5.0)  # two chunks of quiet, then a real gap
    assert abs(session.book._gap_near(3.9, since=1.0) - 3.45) <= CHUNK_SECONDS
    session = _session(quiet=[(3.0, 3.064)], until=5.0)
    assert session.book._gap_near(3.2, since=1.0) == 3.2


# ------------------------------------------------------------ lines closing at a pause

def _segment(committed: list[TimedWord], tentative: list[TimedWord]) -> tuple[StreamSession, Segment]:
    session = _session()
    seg = Segment(id="seg1", start=2.5, window_start=2.5, decoded_to=9.6, pauses={9.22: 0.4})
    seg.hyp.committed, seg.hyp.tentative = committed, tentative
    session.state.open = seg
    return session, seg


PAUSED_LINE = _words(("how", 6.0, 6.3), ("much", 6.3, 6.6), ("do", 8.5, 8.8), ("for", 8.8, 9.1))


def test_a_last_word_stamped_just_after_the_speech_end_holds_its_line_open() -> None:
    """The VAD heard the speech end at 9.22 s and "them." was stamped from 9.24 s: it was said before the pause,
    and the line closing on "for" would send "them." to open the next segment."""
    session, seg = _segment(list(PAUSED_LINE), _words(("them.", 9.24, 9.6)))
    assert session.book.line_end(seg) is None


def test_once_that_word_is_final_the_line_closes_at_the_pause() -> None:
    session, seg = _segment([*PAUSED_LINE, *_words(("them.", 9.24, 9.6))], [])
    assert session.book.line_end(seg) == 9.22


def test_a_word_after_the_pause_does_not_hold_the_line() -> None:
    session, seg = _segment([*PAUSED_LINE[:-1], *_words(("for.", 8.8, 9.1))], _words(("This", 9.62, 9.9)))
    assert session.book.line_end(seg) == 9.22


# ------------------------------------------------------------ sentence ends without a pause

def test_a_sentence_end_a_later_reading_found_closes_the_segment_after_the_words_told_final() -> None:
    """A phone call's "Well, there isn't that much difference. At least you know..." (0.08 s apart): the
    readings that committed "difference" had no full stop, a later one did; the segment closes there instead of
    running on to the speaker's next pause (6.5 s later)."""
    session = _session(until=6.0)
    spoken = _words(("Well", 1.0, 1.3), ("there", 1.3, 1.5), ("isn't", 1.5, 1.8), ("that", 1.8, 2.0),
                    ("much", 2.0, 2.3), ("difference", 2.3, 3.0), ("at", 3.05, 3.2), ("least", 3.2, 3.5))
    seg = _open(session, spoken[:6], told=6)
    seg.hyp.tentative = spoken[6:]
    assert session.book.sentence_end(seg) is None
    seg.hyp.committed[-1].stop_after = True
    assert session.book.sentence_end(seg) == 6  # every word told final stays
