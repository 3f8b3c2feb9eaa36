"""The stored form of a diarized transcript: segments cut at the turns, spans over their speech."""

from __future__ import annotations

import numpy as np

from asr.diarization.spans import Part, parts_by_turn, speech_spans


def test_a_span_takes_the_speech_around_its_words_and_never_a_neighbours() -> None:
    """Speech 1.0-3.0 s and 3.2-5.0 s (0.1 s steps). The first segment's words were stamped 1.4-2.6 s: it takes
    1.0-3.0. The second's words 3.5-3.9 s and the third's 4.0-4.6 s share one run of speech: the second takes
    its start (3.2) and runs up to the third's words, which take the rest up to 5.0. A zero-length word at an
    instant in speech gets that speech; one in silence stays as it was."""
    step = 0.1
    speech = np.zeros(80, dtype=bool)
    speech[10:30] = True
    speech[32:50] = True
    speech[60:65] = True
    spans = speech_spans([(1.4, 2.6), (3.5, 3.9), (4.0, 4.6), (6.2, 6.2), (7.5, 7.5)], speech, step)
    assert spans == [(1.0, 3.0), (3.2, 4.0), (4.0, 5.0), (6.0, 6.5), (7.5, 7.5)]


def test_overlapping_words_keep_their_own_span() -> None:
    """Two segments whose words overlap (crosstalk) are never narrowed."""
    speech = np.ones(50, dtype=bool)
    assert speech_spans([(1.0, 2.5), (2.0, 3.0)], speech, 0.1) == [(0.0, 2.5), (2.0, 5.0)]


def test_segments_are_cut_where_their_words_pass_into_another_turn_and_span_it() -> None:
    """Turns A 0-3 s and B 3-6 s. The first segment's last word ("also", 2.9-3.3 s) is said in B's turn: it is
    stored as a piece of its own under B. The pieces of a turn cover it: A's from 0.0 to 3.0, and B's two
    meet where the second segment's words start."""
    speech = np.ones(60, dtype=bool)
    segments = [[(0.5, 1.0), (1.2, 2.0), (2.9, 3.3)], [(3.5, 5.0)]]
    parts = parts_by_turn(segments, [(0.5, 3.3), (3.5, 5.0)], [(0.0, 3.0, 1), (3.0, 6.0, 2)], speech, 0.1)
    assert parts == [Part(0, 0, 2, 1, 0.0, 3.0), Part(0, 2, 3, 2, 3.0, 3.5), Part(1, 0, 1, 2, 3.5, 6.0)]


def test_the_same_words_stamped_elsewhere_give_the_same_voices_and_spans() -> None:
    """Two readings of one call: the second stamped its words 0.2 s later and dropped one. The stored voices
    and spans are the turns' in both, so the stored form scores the same."""
    speech = np.zeros(100, dtype=bool)
    speech[5:40] = speech[45:90] = True
    turns = [(0.5, 4.0, 1), (4.5, 9.0, 2)]
    one = parts_by_turn([[(0.6, 1.5), (2.0, 3.8)], [(4.6, 6.0), (6.1, 8.8)]], [(0.6, 3.8), (4.6, 8.8)],
                        turns, speech, 0.1)
    two = parts_by_turn([[(0.8, 1.7), (2.2, 4.0), (4.7, 5.2)], [(6.3, 8.9)]], [(0.8, 5.2), (6.3, 8.9)],
                        turns, speech, 0.1)
    assert _covered(one) == _covered(two) == {1: (0.5, 4.0), 2: (4.5, 9.0)}
    assert [(p.segment, p.voice) for p in two] == [(0, 1), (0, 2), (1, 2)]


def _covered(parts: list[Part]) -> dict[int, tuple[float, float]]:
    """Each voice's span as its pieces cover it."""
    return {v: (min(p.start for p in parts if p.voice == v), max(p.end for p in parts if p.voice == v))
            for v in {p.voice for p in parts}}


def test_a_piece_spans_its_turn_where_its_words_were_stamped_outside_it() -> None:
    """The turn starts at 0.35 s where the diarizer's VAD heard the voice, the first word is stamped at 0.15 s:
    the stored segment starts with the turn, as it would with any other stamp."""
    speech = np.ones(100, dtype=bool)
    parts = parts_by_turn([[(0.15, 0.6), (0.7, 2.9)], [(2.8, 4.2)]], [(0.15, 2.9), (2.8, 4.2)],
                          [(0.35, 2.5, 1), (3.0, 4.0, 2)], speech, 0.1)
    assert parts == [Part(0, 0, 2, 1, 0.35, 2.5), Part(1, 0, 1, 2, 3.0, 4.0)]


def test_one_voice_across_a_long_pause_is_not_cut() -> None:
    """A title, a pause longer than a turn bridges, then the text, read as one segment by one voice: two turns
    of the same voice, one stored segment over both."""
    speech = np.zeros(200, dtype=bool)
    speech[2:10] = speech[40:150] = True
    parts = parts_by_turn([[(0.2, 0.9), (4.0, 4.5), (4.6, 14.8)]], [(0.2, 14.8)],
                          [(0.2, 1.0, 1), (4.0, 15.0, 1)], speech, 0.1)
    assert parts == [Part(0, 0, 3, 1, 0.2, 15.0)]


def test_a_segment_without_words_or_outside_every_turn_takes_the_nearest() -> None:
    speech = np.zeros(100, dtype=bool)
    parts = parts_by_turn([[], [(5.0, 5.4)]], [(0.2, 0.8), (5.0, 5.4)], [(1.0, 3.0, 1), (6.0, 7.0, 2)], speech,
                          0.1)
    assert parts == [Part(0, 0, 0, 1, 1.0, 3.0), Part(1, 0, 1, 2, 6.0, 7.0)]
    assert parts_by_turn([[(1.0, 2.0)]], [(1.0, 2.0)], [], speech, 0.1) == []
