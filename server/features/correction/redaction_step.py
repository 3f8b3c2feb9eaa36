"""PII redaction as a step of the correction pass: what a live stream's partials may tell final, and when the
analyzer need not run at all.

A redacted entity is several words ("five five five one two three four", "john dot smith at example dot com"),
and the analyzer decides on them together, so a partial must not tell a word final while a later word could still
make it part of an entity. A fixed lookahead long enough for a card number read digit by digit would hold every
committed word back by sixteen words on every stream; instead the step holds only where PII could be under way:
the last run of words that could belong to an entity (a digit or number word, "at", "dot", an address, a
capitalised word inside a sentence) while it is still open, and the word before it (the "john" of "john dot
smith"). Plain speech is told final as soon as the model commits it; a run is released once plain words follow
it. Whatever the analyzer then makes of
more context, the pass keeps told words as told (see :meth:`server.features.correction.CorrectionPass._final`).

Words with none of those marks cannot hold an entity the recognizers find (their patterns need digits, an "@" or
a spelled-out "at"/"dot", and names are capitalised by the model), so such readings skip the analyzer: most of a
conversation's partials cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from asr.events import WordEvent
from server.features.correction.redaction import Redactor
from server.features.correction.spoken_forms import DIGITS, REPEATS, TEENS, TENS, split_edges

WINDOW = 24
"""How far back the last run of marked words is looked for (a card number read digit by digit is 16 words)."""
GAP = 1
"""Plain words a run of marks may have inside it ("smith" in "john dot smith at") or after it and still go on."""
_JOINERS = frozenset({"at", "dot", "underscore", "dash", "hyphen", "plus", "point", "hundred", "thousand"})
_NUMBER_WORDS = frozenset(DIGITS) | frozenset(TEENS) | frozenset(TENS) | frozenset(REPEATS) | _JOINERS
_PRONOUN_I = frozenset({"i", "i'm", "i'll", "i've", "i'd"})
_SENTENCE_END = (".", "?", "!")


def _spelled(text: str) -> bool:
    """A word of a number or an address as it is read out: digits, "@", number words, at/dot."""
    core = split_edges(text.strip())[1]
    return bool(core) and (any(c.isdigit() for c in core) or "@" in core or core.casefold() in _NUMBER_WORDS)


def _mark(words: Sequence[WordEvent], i: int, *, sentence_start_counts: bool) -> bool:
    """Whether word ``i`` could be part of an entity."""
    text = words[i].text.strip()
    core = split_edges(text)[1]
    if not core:
        return False
    if _spelled(text):
        return True
    if core[0].isupper() and core.casefold() not in _PRONOUN_I:
        opens = i == 0 or words[i - 1].text.rstrip().endswith(_SENTENCE_END)
        return sentence_start_counts or not opens
    return False


class RedactionStep:
    """The correction pass's redaction step (see the module's note)."""

    heavy = True  # the analyzer is CPU work: the pass runs in a worker thread
    lookahead = None  # a partial's reach depends on its words: see held()

    def __init__(self, redactor: Redactor, *, allow: Iterable[str] = (), names: Iterable[str] = ()) -> None:
        self.redactor = redactor
        self.allow = tuple(allow)
        self.names = tuple(n for n in names if n)

    def __call__(self, words: Sequence[WordEvent]) -> list[WordEvent]:
        if not any(_mark(words, i, sentence_start_counts=True) for i in range(len(words))):
            return list(words)
        return self.redactor.redact_words(words, allow=self.allow, names=self.names)

    def held(self, words: Sequence[WordEvent], committed: int) -> int:
        """How many of the ``committed`` first words a later word could still join into an entity: the last run
        of marked words (marks at most :data:`GAP` plain words apart: "smith" in "dot smith at"), tentative words
        included, while it is still open. A spelled run (digits, at/dot, an address) stays open through ``GAP``
        plain committed words after its last mark and holds the word before it too ("john" of "john dot"); a run
        of capitalised words (a name) ends at the first plain word after it."""
        n = committed
        marks = [i for i in range(max(0, n - WINDOW), len(words)) if _mark(words, i, sentence_start_counts=False)]
        if not marks:
            return 0
        run = [marks[-1]]
        for i in reversed(marks[:-1]):
            if run[0] - i - 1 > GAP:
                break
            run.insert(0, i)
        spelled = any(_spelled(words[i].text) for i in run)
        if n - 1 - run[-1] > (GAP if spelled else 0):
            return 0  # plain words followed: whatever entity there was has ended
        return max(0, min(n, n - run[0] + (1 if spelled else 0)))
