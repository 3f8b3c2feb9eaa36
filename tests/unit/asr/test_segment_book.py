"""What a live message's newly final words tell admission control: how long after its audio arrived the word
that ends what was said became final, when a reading for its pause committed it; a word two readings agreed on
while the speaker went on, or one a final closed after its pause's reading, did not wait for the loop's load.

Light: a session with no decode running, its segment and audio arrivals set by hand.
"""

from __future__ import annotations

import pytest

from asr.policy import TimedWord
from asr.session import Segment, StreamSession
from asr.vad import SileroModel


class _Commits:
    """Where the book reports commit delays (the capacity estimator's ``observe_commit``)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def observe_commit(self, seconds: float) -> None:
        self.delays.append(seconds)


class _Engine:
    """The clock and the commit observer the book reports to; no decodes."""

    def __init__(self) -> None:
        self.now = 104.0
        self.capacity = _Commits()

    def clock(self) -> float:
        return self.now

    def is_queued(self, key: str) -> bool:
        return False


async def _emitted(event: object) -> None:
    return None


def _committed_before_a_pause() -> tuple[StreamSession, Segment, _Engine]:
    """'the whole team.' committed, a 0.3 s pause heard after 'team.' (3.2 s), its audio arrived at 100.0."""
    engine = _Engine()
    session = StreamSession(engine=engine, vad_model=SileroModel(), emit=_emitted)  # type: ignore[arg-type]
    session.state.arrivals.extend([(2.0, 99.0), (3.3, 100.0), (6.0, 102.0)])
    seg = Segment(id="seg1", start=1.0, window_start=1.0, decoded_to=5.0)
    seg.pauses[3.2] = 0.3
    seg.hyp.committed = [TimedWord(t, a, b, 0.9) for t, a, b in
                         (("the", 2.0, 2.4), ("whole", 2.4, 2.9), ("team.", 2.9, 3.2))]
    session.state.open = seg
    return session, seg, engine


@pytest.mark.parametrize("pause_reading", [True, False])
async def test_only_a_pause_reading_of_the_word_before_it_is_timed(pause_reading: bool) -> None:
    session, seg, engine = _committed_before_a_pause()
    await session.book.emit_segment(seg, final=False, pause_reading=pause_reading)
    assert seg.final_told == 3  # told final either way
    assert engine.capacity.delays == ([pytest.approx(4.0)] if pause_reading else [])


async def test_a_word_far_from_any_pause_is_not_timed() -> None:
    session, seg, engine = _committed_before_a_pause()
    seg.pauses.clear()
    await session.book.emit_segment(seg, final=False, pause_reading=True)
    assert not engine.capacity.delays


@pytest.mark.parametrize("pause_read", [True, False])
async def test_a_final_is_timed_only_when_its_pause_had_no_reading(pause_read: bool) -> None:
    """After the pause's reading, a final's wait was the silence that closes a segment, the same on an idle
    machine as on a loaded one; without one, the lanes were busy until the segment closed, and the final
    stands for the pause's reading."""
    session, seg, engine = _committed_before_a_pause()
    seg.hyp.committed, seg.hyp.tentative = seg.hyp.committed[:2], seg.hyp.committed[2:]
    seg.speech_end = 3.2
    seg.endpoint_for = 3.2 if pause_read else None
    await session.book.final_as_read(seg)
    assert seg.final_told == 3
    assert engine.capacity.delays == ([] if pause_read else [pytest.approx(4.0)])
