"""Which runs of a final's words are turns of their own."""

from __future__ import annotations

from protocol.messages import Word
from server.pipeline.word_runs import word_runs


def _w(text: str, start: float, end: float) -> Word:
    return Word(text=text, start=start, end=end, probability=0.9, final=True)


def test_segment_split_at_a_turn_change_but_not_for_one_stray_word():
    words = [_w("yes", 0.0, 0.3), _w("I", 0.4, 0.5), _w("agree", 0.5, 0.9), _w("no", 1.0, 1.3),
             _w("you", 1.4, 1.6), _w("don't", 1.6, 2.0), _w("really", 2.0, 2.4)]
    runs = word_runs(words, [1, 1, 1, 2, 2, 2, 2])
    assert [(s, [w.text for w in ws]) for s, ws in runs] == [(1, ["yes", "I", "agree"]),
                                                             (2, ["no", "you", "don't", "really"])]
    stray = word_runs(words, [1, 1, 1, 2, 1, 1, 1])  # one short word heard as another voice: keep one segment
    assert [s for s, _ in stray] == [1] and sum(len(ws) for _, ws in stray) == len(words)
    thin = word_runs(words, [1, 1, 1, 2, 2, 2, 2], keep=lambda s: s == 1)  # voice 2 barely heard yet: no split
    assert [s for s, _ in thin] == [1] and sum(len(ws) for _, ws in thin) == len(words)
