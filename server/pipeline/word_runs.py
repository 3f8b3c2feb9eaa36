"""A final's words by voice: which runs of them are turns of their own, and whose voice the final is."""

from __future__ import annotations

from protocol.messages import Word

MIN_RUN_WORDS = 2  # a speaker change inside a segment needs this many words (or MIN_RUN_S) to split it
MIN_RUN_S = 0.8


def majority(runs: list[tuple[int, list[Word]]]) -> int:
    """The speaker of most of the speech in these runs (by word duration)."""
    tally: dict[int, float] = {}
    for s, ws in runs:
        tally[s] = tally.get(s, 0.0) + sum(max(0.05, w.end - w.start) for w in ws)
    return max(tally, key=lambda s: tally[s])


def word_runs(words: list[Word], who: list[int], keep=lambda s: True) -> list[tuple[int, list[Word]]]:
    """Consecutive words by speaker; a run too short to be a turn, or of a voice not to split for
    (``keep`` false), joins its neighbour."""
    runs: list[list] = []
    for w, s in zip(words, who, strict=True):
        if runs and runs[-1][0] == s:
            runs[-1][1].append(w)
        else:
            runs.append([s, [w]])
    changed = True
    while changed and len(runs) > 1:
        changed = False
        for i, (s, ws) in enumerate(runs):
            if (len(ws) < MIN_RUN_WORDS and ws[-1].end - ws[0].start < MIN_RUN_S) or not keep(s):
                j = i - 1 if i > 0 else i + 1
                if j < i:
                    runs[j][1].extend(ws)
                else:
                    runs[j][1][:0] = ws
                del runs[i]
                changed = True
                break
    merged: list[list] = []
    for s, ws in runs:
        if merged and merged[-1][0] == s:
            merged[-1][1].extend(ws)
        else:
            merged.append([s, ws])
    return [(s, ws) for s, ws in merged]
