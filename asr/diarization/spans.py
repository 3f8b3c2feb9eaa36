"""The stored form of a diarized transcript: segments cut at the speaker turns and spanning them.

A segment's live span runs from its first word's start to its last word's end, as the model stamped them, and
those stamps move from run to run with the readings (a hurried reading stamped "Hello." at one instant, or
"Oh" over 0.8 s of the other voice's "Hello?"). A reader of the stored transcript asks which voice spoke when:
scored that way, the seven-voice dialogue's segments missed 6-7 % of its speech in the gaps around their words
(DER 12-13 % against 8.5 % for the speaker turns). So the stored form widens each segment over the speech the
VAD heard running on from its words, never into a neighbour's span.

Which voice the stored form names, and when, is the final speaker turns' (:func:`parts_by_turn`): a segment is
cut where its words pass into another turn, each piece takes its turn's voice, and the pieces of one turn
span it whole. The turns are a function of the audio (windows on a fixed clock, re-clusterings counted in
windows); the words are not (a hurried reading stamps them elsewhere, or drops them), and segments that took
their voice and edges from their words scored 12.5-18.6 % DER on the phone call run to run, where its turns
scored 10.2 % in every run. Words keep the stamps the model gave them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def speech_spans(spans: Sequence[tuple[float, float]], speech: np.ndarray, step: float) -> list[tuple[float, float]]:
    """``spans`` (time-ordered, stream seconds) each widened over the speech in ``speech`` (one flag per
    ``step`` seconds) that runs on from its start backwards and from its end forwards, up to the end of the
    span before it (as widened) and the start of the one after it; never narrower than it was."""
    out: list[tuple[float, float]] = []
    n = len(speech)

    def heard(t: float) -> bool:
        i = int(t / step + 1e-9)
        return 0 <= i < n and bool(speech[i])

    for k, (start, end) in enumerate(spans):
        lo = max(0.0, out[-1][1]) if out else 0.0
        hi = spans[k + 1][0] if k + 1 < len(spans) else n * step
        a = start
        while a - step >= lo - 1e-9 and heard(a - step):
            a -= step
        b = end
        while b + step <= hi + 1e-9 and heard(b):
            b += step
        a = min(start, max(lo, a))  # never shorter than its words, where they overlap a neighbour's
        b = max(end, min(b, hi))
        out.append((round(a, 3), round(b, 3)))
    return out


@dataclass(frozen=True)
class Part:
    """Words ``first:stop`` of stored segment ``segment`` (none for a segment without words), stored under
    ``voice`` over ``start``-``end``."""

    segment: int
    first: int
    stop: int
    voice: int
    start: float
    end: float


def parts_by_turn(segments: Sequence[Sequence[tuple[float, float]]], extents: Sequence[tuple[float, float]],
                  turns: Sequence[tuple[float, float, int]], speech: np.ndarray, step: float) -> list[Part]:
    """Each segment (its words' times, in time order; ``extents`` its own span, for one without words) cut where
    its words pass into another voice's turn (``turns``: start, end, voice): a word belongs to the turn that
    holds its middle, or the nearest turn where none does. The pieces of a turn cover it, from its start to its
    end: two neighbours meet halfway between their words' :func:`speech_spans`. So the stored form names the
    turns' voices over the turns' time wherever a turn has words: where the diarizer heard the voice, not where
    the model stamped a word (letting a piece reach out to a word stamped before its turn moved the seven
    voices' stored DER by 0.4-1.1 points with the stamps). Returned by segment, then word."""
    if not turns:
        return []
    turns = _joined(segments, extents, turns)
    pieces: list[tuple[int, int, int, int, float, float]] = []  # segment, first, stop, turn, start, end
    for si, words in enumerate(segments):
        if not words:
            lo, hi = extents[si]
            pieces.append((si, 0, 0, _turn_of((lo + hi) / 2, turns), lo, hi))
            continue
        of = [_turn_of((a + b) / 2, turns) for a, b in words]
        first = 0
        for i in range(1, len(words) + 1):
            if i == len(words) or of[i] != of[first]:
                pieces.append((si, first, i, of[first], words[first][0], max(b for _, b in words[first:i])))
                first = i
    out: list[Part] = []
    for t, (t_start, t_end, voice) in enumerate(turns):
        mine = sorted((p for p in pieces if p[3] == t), key=lambda p: (p[4], p[5]))
        if not mine:
            continue
        spans = speech_spans([(p[4], p[5]) for p in mine], speech, step)
        # neighbours meet halfway between their speech: the turn bridges its pauses, and so do its pieces
        meet = [min(max((b + a) / 2, t_start), t_end) for (_, b), (a, _) in zip(spans, spans[1:], strict=False)]
        cuts = [t_start, *meet, t_end]
        for j, p in enumerate(mine):
            start = max(cuts[: j + 1])
            out.append(Part(p[0], p[1], p[2], voice, round(start, 3), round(max(start, cuts[j + 1]), 3)))
    return sorted(out, key=lambda p: (p.segment, p.first, p.start))


def _joined(segments: Sequence[Sequence[tuple[float, float]]], extents: Sequence[tuple[float, float]],
            turns: Sequence[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Two turns of one voice (apart by a pause longer than a turn bridges) joined into one where a segment's
    words run from the first into the second: the voice did not change, so the segment is not cut."""
    join: set[int] = set()
    for si, words in enumerate(segments):
        mids = [(a + b) / 2 for a, b in words] or [sum(extents[si]) / 2]
        ks = {_turn_of(m, turns) for m in mids}
        join |= {k for k in ks if k + 1 in ks and turns[k][2] == turns[k + 1][2]}
    out: list[tuple[float, float, int]] = []
    for k, turn in enumerate(turns):
        if k - 1 in join:
            out[-1] = (out[-1][0], turn[1], turn[2])
        else:
            out.append(tuple(turn))  # type: ignore[arg-type]
    return out


def _turn_of(t: float, turns: Sequence[tuple[float, float, int]]) -> int:
    """The turn that holds ``t``, or the nearest one."""
    for k, (a, b, _) in enumerate(turns):
        if a <= t < b:
            return k
    return min(range(len(turns)), key=lambda k: min(abs(t - turns[k][0]), abs(t - turns[k][1])))
