"""Key terms as the model's hotwords: the text a window's prompt starts with, and its token budget.

Whisper has no vocabulary boosting; text before the window is what steers its spelling. faster-whisper's own
``hotwords`` puts such text after ``<|startofprev|>`` and before the recent transcript; the windowed decode does
the same with its tokens, so a name the speaker says once an hour is still spelled as given after the transcript
has pushed it out of the recent text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

HOTWORD_TOKENS = 96
"""Most prompt tokens the key terms take (of the 223 a prompt may hold): the first terms are kept and the recent
text has the rest. 96 tokens hold some 30 two-word names."""


def hotwords_text(terms: Sequence[str]) -> str:
    """The key terms as prompt text, in the order given (the first ones are kept when they run long)."""
    return ", ".join(t.strip() for t in terms if t.strip())


def hotword_tokens(tok: Any, hotwords: str) -> list[int]:
    """The key terms' tokens, cut after a whole term where they run past ``HOTWORD_TOKENS``."""
    text = hotwords.strip()
    if not text:
        return []
    tokens = tok.encode(" " + text)
    while len(tokens) > HOTWORD_TOKENS and "," in text:
        text = text.rsplit(",", 1)[0]
        tokens = tok.encode(" " + text)
    return tokens[:HOTWORD_TOKENS]
