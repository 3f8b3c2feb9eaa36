"""Where a live segment closes at a pause: only once every word said before the pause is final.

Light: a session with no decode running (its segment set by hand), the VAD model only.
"""

from __future__ import annotations

from asr.policy import TimedWord
from asr.session import Segment, StreamSession
from asr.vad import SileroModel


class _NoEngine:
    """The session only asks the engine for decodes; these tests start none."""


def _words(*spec: tuple[str, float, float]) -> list[TimedWord]:
    return [TimedWord(text, start, end, 0.9) for text, start, end in spec]


def _segment(committed: list[TimedWord], tentative: list[TimedWord]) -> tuple[StreamSession, Segment]:
    session = StreamSession(engine=_NoEngine(), vad_model=SileroModel(), emit=None)  # type: ignore[arg-type]
    seg = Segment(id="seg1", start=2.5, window_start=2.5, decoded_to=9.6, pauses={9.22: 0.4})
    seg.hyp.committed, seg.hyp.tentative = committed, tentative
    session._open = seg
    return session, seg


LINE = _words(("how", 6.0, 6.3), ("much", 6.3, 6.6), ("do", 8.5, 8.8), ("for", 8.8, 9.1))


def test_a_last_word_stamped_just_after_the_speech_end_holds_its_line_open() -> None:
    """The VAD heard the speech end at 9.22 s and "them." was stamped from 9.24 s: it was said before the pause,
    and the line closing on "for" would send "them." to open the next segment."""
    session, seg = _segment(list(LINE), _words(("them.", 9.24, 9.6)))
    assert session._line_end(seg) is None


def test_once_that_word_is_final_the_line_closes_at_the_pause() -> None:
    session, seg = _segment([*LINE, *_words(("them.", 9.24, 9.6))], [])
    assert session._line_end(seg) == 9.22


def test_a_word_after_the_pause_does_not_hold_the_line() -> None:
    session, seg = _segment([*LINE[:-1], *_words(("for.", 8.8, 9.1))], _words(("This", 9.62, 9.9)))
    assert session._line_end(seg) == 9.22
