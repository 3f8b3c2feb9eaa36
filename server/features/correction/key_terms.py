"""Key terms: near-misses of a name or word the caller gave, written with its spelling.

The model is steered towards the key terms (their text leads every window's prompt, ``asr.backends.hotwords``),
but a small model still writes what it hears: tiny.en reads "Hester Prynne" as "Hester Prin". This step finds
runs of one to a term's length plus one consecutive words that read like a term and writes the term instead:

- *like* is a spelling similarity (rapidfuzz's normalized Indel ratio of the letters, spaces and punctuation
  left out, so "Chilling worth" and "Chillingworth" compare equal) of at least ``MIN_SIMILARITY`` (0.9 for a term
  of five letters or fewer: "pear" is not "Pearl"), or the same Metaphone key (jellyfish) with a similarity of at
  least ``MIN_SOUND_SIMILARITY``: "Prin" sounds as "Prynne" does (PRN) though only 60 % of its letters match.
- Words that are not near a term are never touched, and a run never crosses a sentence's or a clause's
  punctuation. At each word the best-matching run wins (the term's own length on a tie), then the scan goes on
  after it.
- A run of as many words as the term has keeps each word's timing (word for word); a run of another length
  becomes one word with the term's text and the span of the words it replaces. Punctuation before and after the
  run, and a possessive "'s", stay.

The decision at a word reads at most the ``lookahead`` words after it (the longest term's word count), which is
what :class:`~server.features.correction.CorrectionPass` holds back in a live partial.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import jellyfish
from pydantic import TypeAdapter, ValidationError
from rapidfuzz.distance import Indel

from asr.events import WordEvent
from protocol.messages import KeyTerms
from server.features.correction.spans import replace_span

MIN_SIMILARITY = 0.8
MIN_SHORT_SIMILARITY = 0.9  # terms of SHORT_TERM letters or fewer
SHORT_TERM = 5
MIN_SOUND_SIMILARITY = 0.6  # with the same Metaphone key
MIN_LETTERS = 3  # a run with fewer letters is never a near-miss ("a", "of")

_SPLIT = re.compile(r"^(\W*)(.*?)((?:['’]s)?\W*)$", re.S)
_BREAKS = set(".,;:!?…")


_TERMS = TypeAdapter(KeyTerms)


def checked_key_terms(value: object) -> list[str]:
    """``value`` as key terms within their bounds (``protocol.messages.KeyTerms``), else ``ValueError`` with a
    message a 422 can carry. A string is a form field: a JSON array, or terms separated by commas."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError("key_terms: not a JSON array of strings") from None
        else:
            value = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return _TERMS.validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("key_terms", *first["loc"]))
        msg = "a term is blank or holds a control character" if first["type"] == "string_pattern_mismatch" \
            else first["msg"]
        raise ValueError(f"{where}: {msg}") from None


@dataclass(frozen=True, slots=True)
class _Term:
    text: str
    words: tuple[str, ...]
    letters: str  # lower case, letters and digits only
    sound: str


@dataclass(frozen=True, slots=True)
class _Piece:
    lead: str
    core: str
    trail: str
    letters: str


def _piece(text: str) -> _Piece:
    m = _SPLIT.match(text)
    lead, core, trail = (m.group(1), m.group(2), m.group(3)) if m else ("", text, "")
    return _Piece(lead, core, trail, _letters(core))


def _letters(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _sound(cores: Sequence[str]) -> str:
    return "".join(jellyfish.metaphone(c) for c in cores if _letters(c))


class KeyTermStep:
    """The key-term step of the correction pass, for one stream's or file's terms."""

    def __init__(self, terms: Sequence[str]) -> None:
        seen: dict[str, _Term] = {}
        for t in terms:
            text = " ".join(t.split())
            letters = _letters(text)
            if letters and letters not in seen:
                words = tuple(text.split(" "))
                seen[letters] = _Term(text, words, letters, _sound(words))
        self.terms = tuple(seen.values())
        self.lookahead = max((len(t.words) for t in self.terms), default=0)

    def __call__(self, words: Sequence[WordEvent]) -> list[WordEvent]:
        if not self.terms:
            return list(words)
        pieces = [_piece(w.text) for w in words]
        out: list[WordEvent] = []
        i = 0
        while i < len(words):
            found = self._best_at(pieces, i)
            if found is None:
                out.append(words[i])
                i += 1
                continue
            term, n = found
            out += _rewrite(words[i:i + n], pieces[i:i + n], term)
            i += n
        return out

    def _best_at(self, pieces: Sequence[_Piece], i: int) -> tuple[_Term, int] | None:
        best: tuple[float, int, _Term, int] | None = None
        for n in range(1, self.lookahead + 2):
            run = pieces[i:i + n]
            if len(run) < n or not run[-1].letters:
                break
            if n > 1 and (_breaks(run[-2].trail) or run[-1].lead):
                break
            letters = "".join(p.letters for p in run)
            if len(letters) < MIN_LETTERS:
                continue
            for term in self.terms:
                if abs(len(term.words) - n) > 1:
                    continue
                score = self._score(run, letters, term)
                if score is None or (n > 1 and self._score(run[1:], None, term) is not None):
                    continue  # no match, or the run's first word is one the term does without ("in Strasburg")
                rank = (score, -abs(len(term.words) - n), term, n)
                if best is None or rank[:2] > best[:2]:
                    best = rank
        return None if best is None else (best[2], best[3])

    @staticmethod
    def _score(run: Sequence[_Piece], letters: str | None, term: _Term) -> float | None:
        """How like ``term`` the run reads, or None where it is not a near-miss of it."""
        letters = "".join(p.letters for p in run) if letters is None else letters
        if len(letters) < MIN_LETTERS:
            return None
        score = Indel.normalized_similarity(letters, term.letters)
        if score >= (MIN_SHORT_SIMILARITY if len(term.letters) <= SHORT_TERM else MIN_SIMILARITY):
            return score
        if score < MIN_SOUND_SIMILARITY:
            return None
        sound = _sound([p.core for p in run])
        if not sound or sound != term.sound:
            return None
        return min(score + 0.2, MIN_SIMILARITY)  # a sound-alike ranks below any spelling match


def _breaks(trail: str) -> bool:
    return any(ch in _BREAKS for ch in trail)


def _rewrite(words: Sequence[WordEvent], pieces: Sequence[_Piece], term: _Term) -> list[WordEvent]:
    """The run written as ``term``: word for word when the counts agree, else one word over the run's span."""
    if len(words) == len(term.words):
        return [w if p.core == t else replace(w, text=f"{p.lead}{t}{p.trail}")
                for w, p, t in zip(words, pieces, term.words, strict=True)]
    return [replace_span(words, f"{pieces[0].lead}{term.text}{pieces[-1].trail}")]
