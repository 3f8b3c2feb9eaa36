"""The word a correction step puts in place of the words it replaces (a term's spoken pieces, a spoken phone
number): apart from the pass that runs the steps, so that a step uses it without importing the pass that imports
the step."""

from __future__ import annotations

from collections.abc import Sequence

from asr.events import WordEvent

__all__ = ["replace_span"]


def replace_span(words: Sequence[WordEvent], text: str) -> WordEvent:
    """One word standing for ``words`` (consecutive, in order): their span, their least probability, final only
    if all of them were."""
    return WordEvent(text=text, start=words[0].start, end=words[-1].end,
                     probability=min(w.probability for w in words), final=all(w.final for w in words))
