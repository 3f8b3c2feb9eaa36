"""PII redaction, the correction pass's last step: what a transcript says about people becomes typed placeholders
(``[EMAIL]``, ``[PHONE]``, ``[CREDIT_CARD]``, ``[ACCOUNT]``, ``[IP_ADDRESS]``, ``[PERSON]``) before it is stored,
broadcast, exported, summarised or reported.

It works on a segment's timed words: the words that say one entity ("john", "dot", "smith", "at", ...) become one
placeholder word spanning them (the first one's start, the last one's end), so a redacted final keeps its timing
and the text rebuilt from its words matches its ``text``. Spoken forms are found through
:mod:`server.features.correction.spoken_forms`; the recognizers are in :mod:`server.features.correction.pii_engine`.

Presidio is CPU work (a few milliseconds a segment, a second or more to load): callers run it in a thread, never on
the event loop. A :class:`Redactor` loads its engine once, on first use, and is safe to share between threads.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from server.features.correction.entities import ENTITY_TYPES, PLACEHOLDERS, checked, entity_types, presidio_entities
from server.features.correction.spoken_forms import split_edges, written_form

W = TypeVar("W")
ENGINE_LOCK = threading.Lock()
"""One analyzer per process (spaCy's pipeline is not documented as safe to call from several threads at once)."""
_TOKEN = re.compile(r"\S+")
REMEMBERED = 4096
"""Texts whose findings the redactor keeps (see :meth:`Redactor._analyzed`): a few hundred bytes each."""
_PLACEHOLDER = re.compile(r"^\W*\[[A-Z_]+\]\W*$")


@dataclass(frozen=True, slots=True)
class Span:
    """One entity: transcript words ``first``..``last`` (inclusive) are replaced by ``[kind]``."""

    kind: str
    first: int
    last: int
    score: float


def _clean(text: str) -> str:
    return " ".join(t.strip(".") for t in re.sub(r"[^\w\s@.]", " ", text.casefold()).split() if t.strip("."))


class Redactor:
    """Finds PII in transcript words and replaces it. ``entities``: the placeholder types to look for."""

    def __init__(self, *, enabled: bool = True, entities: Iterable[str] | None = None) -> None:
        self.enabled = enabled
        self.entities = checked(entities) if entities is not None else ENTITY_TYPES
        self._lock = ENGINE_LOCK
        self._engine: Any = None
        self._anonymizer: Any = None
        self.finds_names = False  # whether the loaded engine finds names beyond the conversation's known ones
        self._remembered: OrderedDict[tuple[str, tuple[str, ...]], list[Any]] = OrderedDict()
        self._remembered_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> Redactor:
        """``VOXLANE_DISABLE_REDACTION`` and ``VOXLANE_REDACTION_ENTITIES``."""
        return cls(enabled=settings.disable_redaction != "on", entities=entity_types(settings.redaction_entities))

    def load(self) -> None:
        """Load the engine now (it otherwise loads on first use); a worker may call it at start, in a thread."""
        if self._engine is not None:
            return
        with self._lock:
            if self._engine is None:
                from presidio_anonymizer import AnonymizerEngine

                from server.features.correction.pii_engine import build_analyzer

                engine, self.finds_names = build_analyzer()
                self._anonymizer = AnonymizerEngine()
                self._engine = engine

    # ------------------------------------------------------------ finding

    def find(self, words: Sequence[str], *, allow: Iterable[str] = (), names: Iterable[str] = ()) -> list[Span]:
        """The entities in a sequence of word texts, as word ranges, none overlapping, in order."""
        if not self.enabled or not self.entities or not words:
            return []
        self.load()
        written = written_form(words)
        found = self._analyzed(written.text, tuple(names))
        allowed = [a for a in (_clean(t) for t in allow) if a]
        spans: list[Span] = []
        for f in sorted(found, key=lambda f: (-f.score, -(f.end - f.start), f.start)):
            where = written.words_of(f.start, f.end)
            if where is None or any(s.first <= where[1] and where[0] <= s.last for s in spans):
                continue  # a better-scored entity already covers these words
            said = _clean(" ".join(words[where[0]:where[1] + 1]))
            if any(said == a or f" {said} " in f" {a} " for a in allowed):
                continue  # a key term of the conversation is never redacted
            if all(_PLACEHOLDER.match(w) for w in words[where[0]:where[1] + 1]):
                continue  # already redacted
            spans.append(Span(PLACEHOLDERS[f.entity_type], where[0], where[1], f.score))
        return sorted(spans, key=lambda s: s.first)

    def _analyzed(self, text: str, names: tuple[str, ...]) -> list[Any]:
        """The analyzer's findings in ``text`` with ``names`` known. A live stream's partials read their committed
        words again with every refresh, and the same text gives the same findings: they are kept (the last
        :data:`REMEMBERED` texts), so spaCy reads each text once, not once per partial of every stream behind one
        lock."""
        key = (text, names)
        with self._remembered_lock:
            found = self._remembered.get(key)
            if found is not None:
                self._remembered.move_to_end(key)
                return found
        from server.features.correction.pii_engine import names_recognizer

        known = _recognizer(names_recognizer, names) if "PERSON" in self.entities else None
        with self._lock:  # spaCy's pipeline is not documented as safe to call from several threads at once
            found = self._engine.analyze(text, language="en", entities=presidio_entities(self.entities),
                                         ad_hoc_recognizers=[known] if known else None)
        with self._remembered_lock:
            self._remembered[key] = found
            while len(self._remembered) > REMEMBERED:
                self._remembered.popitem(last=False)
        return found

    # ------------------------------------------------------------ replacing

    def redact_words(self, words: Sequence[W], *, allow: Iterable[str] = (), names: Iterable[str] = ()) -> list[W]:
        """The words with each entity's words collapsed into one placeholder word spanning them.

        A word is an ``asr.events.WordEvent``, a ``protocol.Word`` or a stored word dict (``text``, ``start``,
        ``end``, ``probability``, ``final``); the result has the same type. The placeholder keeps the first word's
        leading and the last word's trailing punctuation ("[EMAIL]."), the lowest probability of its words, and
        is final when they all are."""
        texts = [_get(w, "text") for w in words]
        spans = self.find(texts, allow=allow, names=names)
        if not spans:
            return list(words)
        out: list[W] = []
        i = 0
        for span in spans:
            out.extend(words[i:span.first])
            group = words[span.first:span.last + 1]
            text = placeholder(texts[span.first], texts[span.last], span.kind)
            out.append(_with(group[0], text=text, end=_get(group[-1], "end"),
                             probability=min(_get(w, "probability") for w in group),
                             final=all(_get(w, "final") for w in group)))
            i = span.last + 1
        out.extend(words[i:])
        return out

    def redact_segment(self, segment: dict[str, Any], *, allow: Iterable[str] = (), names: Iterable[str] = ()
                       ) -> dict[str, Any]:
        """A segment row or message dict (``text``, ``words``) redacted: its words, and its text rebuilt from them
        as the session writes it; a segment without words has its text redacted."""
        from asr.policy import join_words

        if not segment.get("words"):
            return {**segment, "text": self.redact_text(segment.get("text") or "", allow=allow, names=names)}
        words = self.redact_words(segment["words"], allow=allow, names=names)
        if len(words) == len(segment["words"]):
            return segment
        return {**segment, "words": words, "text": join_words(_get(w, "text") for w in words)}

    def redact_text(self, text: str, *, allow: Iterable[str] = (), names: Iterable[str] = ()) -> str:
        """The text with each entity replaced by its placeholder; everything else, spacing included, as it was.

        The spans are found on the text's words (as for :meth:`redact_words`) and handed to Presidio's anonymizer
        as character spans of the original text, so the spoken words themselves are what gets replaced."""
        tokens = list(_TOKEN.finditer(text))
        spans = self.find([t.group() for t in tokens], allow=allow, names=names)
        if not spans:
            return text
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        results, operators = [], {}
        for s in spans:
            lead = len(split_edges(tokens[s.first].group())[0])
            trail = len(split_edges(tokens[s.last].group())[2])
            start, end = tokens[s.first].start() + lead, tokens[s.last].end() - trail
            if end <= start:  # a word of punctuation only: replace it whole
                start, end = tokens[s.first].start(), tokens[s.last].end()
            results.append(RecognizerResult(s.kind, start, end, s.score))
            operators[s.kind] = OperatorConfig("replace", {"new_value": f"[{s.kind}]"})
        return self._anonymizer.anonymize(text=text, analyzer_results=results, operators=operators).text


def placeholder(first: str, last: str, kind: str) -> str:
    """``[KIND]`` with the first word's leading and the last word's trailing punctuation."""
    lead, core, _ = split_edges(first)
    return f"{lead if core else ''}[{kind}]{split_edges(last)[2]}"


def _get(word: Any, name: str) -> Any:
    return word[name] if isinstance(word, dict) else getattr(word, name)


def _with(word: W, **changes: Any) -> W:
    if isinstance(word, dict):
        return {**word, **changes}  # type: ignore[return-value]
    if hasattr(word, "model_copy"):  # protocol.Word (pydantic)
        return word.model_copy(update=changes)
    return replace(word, **changes)  # type: ignore[type-var]


@functools.lru_cache(maxsize=256)
def _recognizer(make: Any, names: tuple[str, ...]) -> Any:
    """The known-names recognizer of a stream's names, built once (its deny list compiles to a pattern)."""
    return make(list(names))
