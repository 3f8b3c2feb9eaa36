"""The correction pass: an ordered chain of text steps applied to a segment's words after the model.

Each step (:class:`CorrectionStep`) takes a segment's words and returns them corrected; the chain runs the steps in
order and the segment's text is joined again from the words it ends with. Key terms (:mod:`.key_terms`) are the
first step; a redaction step is another. A step that rewrites several words as one (a two-word near-miss of one
name, a spoken phone number) gives the new word the span of those it replaces (:func:`replace_span`), so word
timestamps stay on the timeline they came from.

The pass runs where a session's events become wire messages (``server.pipeline.convert.wire_emit``): live streams,
recorded files and the replay bench all store and broadcast corrected words, partials included.

**No committed word moves.** A partial's words flagged ``final`` must come back, same text and times, at the head
of the segment's final. A step whose decision on a word depends on the words after it (key terms: "Hester Prin"
is corrected as two words) could change a committed word once more words commit. So a partial's committed words
are corrected from the committed words alone, the same deterministic way the final is, and the last
``lookahead`` of them (the words a later word could still join) are sent as not yet final until the words after
them commit: a word's correction then depends only on committed words, and it reads the same in the final. The
words after them are corrected in full context for display and stay tentative. With no steps nothing is held.
A step whose reach depends on the words (redaction: a run of digits, a spelled-out address) says so through
``held(words, committed)`` instead of a fixed lookahead. Whatever a step makes of more context later, words once
told final stay as told, in later partials and in the final (only the words after them are corrected anew).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from asr.events import SegmentEvent, WordEvent
from asr.policy import join_words
from server.features.correction.spans import replace_span

if TYPE_CHECKING:
    from server.features.correction.redaction import Redactor

__all__ = ["CorrectionPass", "CorrectionStep", "correction_pass", "replace_span"]


class CorrectionStep(Protocol):
    """One text step of the pass.

    ``lookahead``: how many words after a word its correction may depend on (0: the word and those before it;
    ``None``: any, so that a live partial's committed words are all held until the final). A step must be
    deterministic and local within that reach: the same words in give the same words out, and a word's
    correction does not change when words are added beyond its lookahead."""

    @property
    def lookahead(self) -> int | None: ...

    def __call__(self, words: Sequence[WordEvent]) -> list[WordEvent]: ...


def _held(step: CorrectionStep, words: Sequence[WordEvent], committed: int) -> int | None:
    """How many of the first ``committed`` of ``words`` (a partial's, committed first) ``step`` may still change:
    its ``held(words, committed)`` where it has one (a step whose reach depends on what the words are: redaction
    holds a run of digits or a spelled-out address, not plain speech), else its fixed ``lookahead``."""
    held = getattr(step, "held", None)
    return held(words, committed) if held is not None else step.lookahead


class CorrectionPass:
    """The steps, in order; empty, it hands every event on untouched."""

    def __init__(self, steps: Iterable[CorrectionStep] = ()) -> None:
        self.steps: tuple[CorrectionStep, ...] = tuple(steps)
        self._told: dict[str, list[WordEvent]] = {}  # per open segment: the corrected words told final so far

    def __bool__(self) -> bool:
        return bool(self.steps)

    @property
    def heavy(self) -> bool:
        """A step is CPU work (redaction's analyzer): run the pass in a worker thread, never on the event loop."""
        return any(getattr(s, "heavy", False) for s in self.steps)

    @property
    def lookahead(self) -> int | None:
        reach = [s.lookahead for s in self.steps]
        return None if None in reach else sum(r for r in reach if r is not None)

    def reach(self, words: Sequence[WordEvent], committed: int) -> int | None:
        """How many of the first ``committed`` of ``words`` a step may still change (None: any)."""
        held = [_held(s, words, committed) for s in self.steps]
        return None if None in held else sum(h for h in held if h is not None)

    def words(self, words: Sequence[WordEvent]) -> list[WordEvent]:
        out = list(words)
        for step in self.steps:
            out = step(out)
        return out

    def event(self, event: SegmentEvent) -> SegmentEvent:
        """The event with its words corrected (a partial's committed words as the module says) and its text
        joined again from them."""
        if not self.steps or not event.words:
            if event.is_final:
                self._told.pop(event.segment_id, None)
            return event
        if event.is_final:
            words = self._final(event.segment_id, list(event.words))
        else:
            words = self._partial(list(event.words), self._told.get(event.segment_id, []))
            told = [w for w in words if w.final]
            if told:
                self._told[event.segment_id] = told
                while len(self._told) > _MAX_OPEN:  # a segment that never got its final (a stream cut short)
                    self._told.pop(next(iter(self._told)))
        return replace(event, words=tuple(words), text=join_words(w.text for w in words))

    def _final(self, segment_id: str, words: list[WordEvent]) -> list[WordEvent]:
        """The final's words corrected in full context, but the words its partials told final exactly as they were
        told: a step that read them otherwise with the words after them in view (a name the analyzer only knows
        as one with the next word) cannot move a committed word. Only the words after them are corrected anew."""
        out = self.words(words)
        told = self._told.pop(segment_id, None)
        if not told:
            return out
        key = [(w.text, w.start, w.end) for w in told]
        if [(w.text, w.start, w.end) for w in out[:len(told)]] == key:
            return out
        edge = told[-1].end
        rest = self.words([w for w in words if w.start >= edge - 1e-6])
        return [replace(w, final=True) for w in told] + rest

    def _partial(self, words: list[WordEvent], told: list[WordEvent]) -> list[WordEvent]:
        """A partial's words: those told final before stay told (a later reading that holds more back must not
        take a word's final flag away again), then the committed words no step may still change, told final,
        then the rest, shown corrected but not final."""
        out = self._stable_then_rest(words)
        n = sum(1 for w in out if w.final)
        if len(told) <= n:
            return out
        edge = told[-1].end
        return [replace(w, final=True) for w in told] + [
            replace(w, final=False) if w.final else w for w in self.words([w for w in words if w.start >= edge - 1e-6])]

    def _stable_then_rest(self, words: list[WordEvent]) -> list[WordEvent]:
        committed = 0
        while committed < len(words) and words[committed].final:
            committed += 1
        reach = self.reach(words, committed)
        stable_from = 0 if reach is None else max(0, committed - reach)
        # every word a decision at or after ``stable_from`` gives starts no earlier than that word: the words
        # that end before it come from decisions on committed words alone
        before = words[stable_from].start if stable_from < committed else float("inf")
        stable = []
        for w in self.words(words[:committed]) if stable_from > 0 else []:
            if w.end >= before:
                break
            stable.append(replace(w, final=True))
        shown = self.words(words)
        n = len(stable)
        if [(w.text, w.start, w.end) for w in shown[:n]] == [(w.text, w.start, w.end) for w in stable]:
            rest = shown[n:]
        else:  # a step that broke its lookahead: keep the committed words, show the rest as read
            rest = [w for w in shown if not stable or w.start >= stable[-1].end]
        return stable + [replace(w, final=False) if w.final else w for w in rest]


_MAX_OPEN = 64
"""Open segments whose told words a pass remembers: a stream has one or two, a file's channels one each."""


def correction_pass(key_terms: Sequence[str] | None = None, redactor: Redactor | None = None,
                    names: Sequence[str] = ()) -> CorrectionPass:
    """The pass a stream or file runs: key terms first (when it has any), then PII redaction (when ``redactor``
    is on), which never redacts a key term and always takes ``names`` (the stream's participants) for names."""
    from server.features.correction.key_terms import KeyTermStep
    from server.features.correction.redaction_step import RedactionStep

    steps: list[CorrectionStep] = []
    if key_terms:
        steps.append(KeyTermStep(key_terms))
    if redactor is not None and redactor.enabled and redactor.entities:
        steps.append(RedactionStep(redactor, allow=key_terms or (), names=names))
    return CorrectionPass(steps)
