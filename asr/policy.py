"""Streaming commit policy in the spirit of whisper-streaming's LocalAgreement.

A word becomes final when two consecutive hypotheses agree on it (longest common
prefix), or when the speaker has paused long enough that the model has heard the
whole word and the silence after it. Final words are never changed or removed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

_PUNCT = re.compile(r"[^\w']+", re.UNICODE)
_SENTENCE_END = (".", "?", "!")
# titles that Whisper writes with a full stop inside a sentence ("And Mr. John Dashwood"): no sentence ends there
_TITLES = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "prof.", "mt.", "vs."})
# how far from its committed time a window's opening word may be stamped and still be taken for it
_OPENING_DRIFT_S = 3.0
# this many words stamped within the known word a window opens at are new speech, not a misreading of it
_SKIPPED_WORDS = 3
# a reading's first word stamped this long from its window's opening to past the known words is new speech
_STRETCHED_S = 0.8
# ...and a reading whose first word is stamped this long after its window's opening skipped the known words there
_SKIPPED_OPENING_S = 0.5


def ends_sentence(text: str) -> bool:
    """Whether a (stripped) word closes its sentence: a full stop, question or exclamation mark, not a title's
    full stop (closing a segment at "Mr." split "And Mr." from "John Dashwood had then leisure...")."""
    return text.endswith(_SENTENCE_END) and text.lower() not in _TITLES


@dataclass(slots=True)
class TimedWord:
    text: str  # stripped
    start: float  # stream seconds
    end: float
    probability: float
    # a later reading ended a sentence here, where the reading this word was committed from went on without
    # a full stop (see Hypotheses._note_stops); the word's text stays as it was told
    stop_after: bool = False

    @property
    def closes_sentence(self) -> bool:
        return self.stop_after or ends_sentence(self.text)


def norm(text: str) -> str:
    return _PUNCT.sub("", text.lower())


def trim_repetition(words: list[TimedWord], max_repeats: int = 6, max_n: int = 4) -> list[TimedWord]:
    """Cut a decoding loop ("the the the the ...", "I know. I know. I know. ...") after its first turn."""
    keys = [norm(w.text) for w in words]
    for i in range(len(keys)):
        for n in range(1, max_n + 1):
            gram = keys[i:i + n]
            if len(gram) < n or not any(gram):
                break
            reps = 1
            while keys[i + reps * n:i + (reps + 1) * n] == gram:
                reps += 1
            if reps > max_repeats:
                return words[:i + n]
    return words


class Hypotheses:
    """Committed words of one segment plus the previous hypothesis' uncommitted tail.

    ``anchor`` holds words committed before this segment that its window still starts with (a segment
    split for length begins at the last final word of the one before): new hypotheses are lined up
    against them but they are never committed again.
    """

    def __init__(self, anchor: list[TimedWord] | None = None) -> None:
        self.anchor: list[TimedWord] = list(anchor or [])
        self.committed: list[TimedWord] = []
        self.tentative: list[TimedWord] = []
        self.earlier: list[TimedWord] = []  # the reading's tail before the latest: settle_before weighs it

    @property
    def committed_end(self) -> float:
        return self.committed[-1].end if self.committed else float("-inf")

    def _fresh(self, words: list[TimedWord], start: float | None = None) -> list[TimedWord]:
        """The part of a new hypothesis that lies after what is already committed.

        The window usually still holds the last committed words. They are found by text near the
        boundary (timestamps drift between decodes by a word's length); only when the text does not
        line up does the time cut decide.

        A window that opens at the last known word (``start``: a trimmed window, a split segment's or a
        lent anchor) is read from that word on, and Whisper stamps the first words of such a reading
        worst: "posterity" at 27.9 s where it was said at 26.5, or the anchor "husbandry" left out and
        "or who is he" stamped over its 21.8-22.8 s. A reading that opens with the known words is lined
        up by them whatever their stamps. One that opens with other words either misread the known word
        ("antecedents" as "sentence", "purpose" as "or bits": one or two words stamped within its time, cut
        off by time) or skipped it, stamping ``_SKIPPED_WORDS`` or more new words there: those are all new
        (but a first word that is a misreading of the known one).
        """
        known = self.anchor[-5:] + self.committed[-5:]  # the tail is all that is lined up
        if not known:
            return list(words)
        last = known[-1].end
        near = [w for w in words if w.end > last - 1.5]
        keys = [norm(w.text) for w in near]
        tail = [norm(w.text) for w in known[-5:]]
        for n in range(len(tail), 0, -1):
            for i in range(min(6, len(keys) - n + 1)):
                if keys[i:i + n] != tail[-n:]:
                    continue
                # either edge of the last matched word may drift: its end when more audio follows it, its
                # start when the window begins at it
                w, k = near[i + n - 1], known[-1]
                drift = min(abs(w.end - k.end), abs(w.start - k.start))
                opening = start is not None and near[i] is words[0] and start >= known[-n].start - 0.05
                if drift < (1.0 if n > 1 else 0.35) or (opening and drift < _OPENING_DRIFT_S):
                    _note_stops(known[-n:], near[i:i + n + 1])
                    return near[i + n:]
        inside = [w for w in words if w.start <= last - 0.1]
        if start is not None and len(inside) >= _SKIPPED_WORDS and start >= known[-1].start - 0.05:
            return words[_read_as(inside, known[-1]):]
        after = [w for w in words if w.start > last - 0.1]
        first = words[0] if words else None
        if start is not None and first is not None and _new_over_skipped(first, known, start):
            return [first] + [w for w in after if w is not first]
        return after

    def agree(self, words: list[TimedWord], horizon: float = float("inf"),
              settled: float = float("-inf"), unsure: float = 0.0, unsure_wait: float = 0.0,
              start: float | None = None) -> list[TimedWord]:
        """LocalAgreement-2: commit the prefix this hypothesis shares with the previous one.

        Only words ending before ``horizon`` qualify: a word the model has heard with little audio after
        it is still likely to change when the next word arrives. Words ending before ``settled`` are
        committed as this hypothesis has them even if the previous one read them differently: the model
        has heard plenty after them and still wavers, and waiting longer would only hold the text back
        (a hard word would otherwise stay open until the segment's final decode).

        A word that either hypothesis gives less than ``unsure`` probability needs ``unsure_wait`` seconds
        more audio after it for both rules. Two readings half a second apart share most of their audio and
        agree by habit on a word the model hardly knows ("shall be seaged" for "shall besiege"); more right
        context is what changes the reading, and sure words, most of them, are not held back.
        ``start`` is where the reading's window opens (see :meth:`_fresh`).
        """
        new = self._fresh(words, start)
        k = 0

        def wait(i: int) -> float:
            p = new[i].probability
            if i < len(self.tentative):
                p = min(p, self.tentative[i].probability)
            return unsure_wait if p < unsure else 0.0

        while (k < len(new) and k < len(self.tentative) and new[k].end <= horizon - wait(k)
               and norm(new[k].text) == norm(self.tentative[k].text)):
            new[k] = _agreed(new[k], self.tentative[k])
            k += 1
        while k < len(new) and new[k].end <= settled - wait(k):
            k += 1
        return self._commit_prefix(new, k)

    def commit_before(self, words: list[TimedWord], t: float, confident: float = 0.0,
                      settled: float = float("-inf"), start: float | None = None) -> list[TimedWord]:
        """Commit the words that start before ``t`` (the model has heard them and the pause after them).

        A word below ``confident`` probability that no earlier hypothesis agreed on stops the commit
        (unless it ended before ``settled``, as in :meth:`agree`): it waits for the next hypothesis or
        the segment's final decode rather than being frozen on one unsure reading.
        """
        new = self._fresh(words, start)
        k = 0
        while k < len(new) and new[k].start < t:
            agreed = k < len(self.tentative) and norm(new[k].text) == norm(self.tentative[k].text)
            if not agreed and new[k].probability < confident and new[k].end > settled:
                break
            k += 1
        return self._commit_prefix(new, k)

    def commit_all(self, words: list[TimedWord], start: float | None = None) -> list[TimedWord]:
        return self.commit_before(words, float("inf"), start=start)

    def settle_before(self, t: float) -> list[TimedWord]:
        """Commit the tentative words that start before ``t`` as the latest hypothesis has them."""
        k = 0
        while k < len(self.tentative) and self.tentative[k].start < t:
            k += 1
        return self._commit_prefix(self.tentative, k, self.earlier)

    def _commit_prefix(self, words: list[TimedWord], k: int,
                       earlier: list[TimedWord] | None = None) -> list[TimedWord]:
        """The first ``k`` words become committed; the rest are the tentative tail the next reading is held to.

        Where the reading before (``earlier``, by default the tentative tail this reading replaces) had other
        words for a short stretch, the surer of the two is committed (see :func:`surer_reading`)."""
        if earlier is None:
            earlier, self.earlier = self.tentative, self.tentative
        done = surer_reading(words[:k], earlier)
        self.committed.extend(done)
        self.tentative = words[k:]
        return done

    def sentence_boundary(self, not_after: float) -> float | None:
        """End time of the last committed word that ends a sentence, no later than ``not_after``."""
        for w in reversed(self.committed):
            if w.end <= not_after and w.closes_sentence:
                return w.end
        return None


# a word the model wrote on to the one before it: "-disposed" after "ill", ".e." after "i", ",000" after "1"
_CONTINUES = ("-", ".", ",")


# a stretch two readings disagree on is weighed only when this short and stamped this close on both
_WEIGHED_WORDS = 3
_WEIGHED_DRIFT_S = 0.5
_SURER_BY = 0.2  # ...and the earlier reading is taken only when this much surer of it (two guesses are a toss-up)


def surer_reading(words: list[TimedWord], earlier: list[TimedWord]) -> list[TimedWord]:
    """``words`` with each short stretch that the earlier reading had otherwise taken from the surer reading.

    A word committed without two readings agreeing (at a pause, settled by right context, in a final) takes
    the latest reading as it stands, and two readings of one window a few hundred milliseconds apart can
    flip on a hard word: "ill-disposed" read at 0.9, then "old-sposed" at 0.41 once the pause's pad came in,
    and the pause committed the second. Whisper's own word probability says which reading it was surer of;
    the stretch must cover the same time in both (within ``_WEIGHED_DRIFT_S`` at either edge), so a reading
    that heard more speech is never cut back.
    """
    if not words or not earlier:
        return words
    a, b = [norm(w.text) for w in earlier], [norm(w.text) for w in words]
    out: list[TimedWord] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        mine = words[j1:j2]
        if op == "replace" and i2 - i1 <= _WEIGHED_WORDS and j2 - j1 <= _WEIGHED_WORDS:
            theirs = earlier[i1:i2]
            if (abs(theirs[0].start - mine[0].start) < _WEIGHED_DRIFT_S
                    and abs(theirs[-1].end - mine[-1].end) < _WEIGHED_DRIFT_S
                    and min(w.probability for w in theirs) >= min(w.probability for w in mine) + _SURER_BY):
                mine = theirs  # committed as they are, as settle_before commits a tentative tail
        out.extend(mine)
    return out


def _note_stops(known: list[TimedWord], read: list[TimedWord]) -> None:
    """Mark the known words after which this reading (``read``, lined up with them word for word, and the word
    it goes on with) ends a sentence that the known word's own reading ran on from: the next word written
    with a capital after a full stop, question or exclamation mark.

    A word is committed from the readings that agree on it, and a reading that hears the speaker go on
    without a pause often drops the full stop it wrote while the word was the last one heard: "difference."
    read alone, then "difference at least", committed so; only a later reading, with the next sentence's
    words in full, wrote "difference. At least" again. The open segment can then close there (see
    ``StreamSession._sentence_end``) instead of running on to the speaker's next pause: on a phone call, "Well,
    there isn't that much difference." came final 6.5 s after it was said, with the next sentence."""
    for k, w, nxt in zip(known, read, read[1:], strict=False):
        if ends_sentence(w.text) and not ends_sentence(k.text) and nxt.text[:1].isupper():
            k.stop_after = True


def _new_over_skipped(first: TimedWord, known: list[TimedWord], start: float) -> bool:
    """Whether a reading's first word, stamped within the known words its window opens at (``start``), is new
    speech: the reading left those words out. Two shapes, neither a misreading of a known word:

    - stretched from the window's opening to past the known words ("It's right here." left out, "This" at
      39.23-40.37 s);
    - starting inside the last known word, when that word ends a sentence: Whisper stamps a sentence's last
      word into the pause after it ("though." to 21.86 s, said to 21.48), and the next sentence's first word
      ("Well," 21.32-21.96 s) falls within that late end.
    """
    last = known[-1]
    stretched = (first.start <= start + 0.1 and first.end >= last.end + 0.3 and first.end - first.start >= _STRETCHED_S
                 and not any(_misread(first.text, k.text) for k in known))
    after_late_end = (ends_sentence(last.text) and first.start >= max(last.start + 0.05, start + _SKIPPED_OPENING_S)
                      and first.end > last.end + 0.05 and not _misread(first.text, last.text))
    return stretched or after_late_end


def _read_as(inside: list[TimedWord], known: TimedWord) -> int:
    """How many of a reading's first words (``inside``: stamped within the known word it opens at) are that
    word read another way: one ("husband" for "husbandry") or a few run together ("a bit less" for
    "thriftless", which as new words made the segment "thriftless a bit less praise"); 0 when they are none."""
    for n in range(1, len(inside) + 1):
        if _misread("".join(w.text for w in inside[:n]), known.text):
            return n
    return 0


def _misread(text: str, known: str) -> bool:
    """Whether a reading's first word is the known word it opens at, read another way ("husband" for
    "husbandry", "whose" for "who's")."""
    a, b = norm(text), norm(known)
    if not a or not b:
        return False
    return a.startswith(b) or b.startswith(a) or difflib.SequenceMatcher(None, a, b).ratio() >= 0.6


def _agreed(new: TimedWord, old: TimedWord) -> TimedWord:
    """A word two readings agree on, ending where the earlier of them ends it.

    A reading the model stops short (it skips the rest of its window) stretches its last word over the audio it
    skipped: "of" read as 37.6-39.8 s where the word before had it end at 37.9. Committed with that end, the
    word would hide the words spoken after it: the next reading's are lined up against the committed end, and
    "age shall see despite" (38.1-39.7 s) fell before it and was dropped from the segment."""
    if old.end >= new.end:
        return new
    return TimedWord(new.text, min(new.start, old.end), old.end, new.probability)


def join_words(texts: Iterable[str]) -> str:
    """A segment's text from its words, spelled as the model wrote them ("ill-disposed", not "ill -disposed").

    Words keep their own timings, so a word the model continued without a space stays a word of its
    own; only the text joins it back.
    """
    out = ""
    for t in texts:
        out += t if out and t.startswith(_CONTINUES) else f" {t}" if out else t
    return out


def attach_punctuation(words: list[TimedWord]) -> list[TimedWord]:
    """Fold punctuation-only tokens ("." "...") into the word before them, or drop them."""
    out: list[TimedWord] = []
    for w in words:
        if norm(w.text):
            out.append(w)
        elif out and len(out[-1].text) < 64 and not out[-1].text.endswith((".", ",", "?", "!", ":", ";")):
            out[-1].text += w.text.strip()
    return out


# What Whisper says over silence or noise; real speech that ends this way is kept when the model
# is confident about it.
_HALLUCINATED_TAILS = (("thank", "you"), ("thanks", "for", "watching"), ("thank", "you", "for", "watching"),
                       ("you",), ("bye",), ("so",), ("um",), ("okay",))


def drop_trailing_hallucination(words: list[TimedWord], min_probability: float = 0.6) -> list[TimedWord]:
    keys = [norm(w.text) for w in words]
    for tail in sorted(_HALLUCINATED_TAILS, key=len, reverse=True):
        n = len(tail)
        if len(keys) >= n and tuple(keys[-n:]) == tail:
            mean = sum(w.probability for w in words[-n:]) / n
            if mean < min_probability:
                return words[:-n]
    return words


def in_time_order(words: list[TimedWord]) -> list[TimedWord]:
    """A reading whose words end no later than the next one starts.

    Whisper's alignment now and then stamps a word far from where it was said: "of 37.6-39.9, thy 39.9-39.9,
    see 38.8-39.4", with the next words back in place. Lined up against the committed words by time, such a
    word no longer matches its own committed copy; taken as new, it was committed a second time (one "thy" at
    37.9 s and one at 39.9 s) and every word spoken before its late stamp was then dropped as already read.
    Each word is pulled back to the start of the word after it; words already in order are untouched."""
    for i in range(len(words) - 2, -1, -1):
        nxt, w = words[i + 1], words[i]
        if w.end > nxt.start:
            w.end = max(nxt.start, 0.0)
            w.start = min(w.start, w.end)
    return words


def stop_at_stacked_words(words: list[TimedWord], run: int = 4, span: float = 0.05) -> list[TimedWord]:
    """A reading up to where its timestamps stop advancing.

    When Whisper writes text it does not hear in the audio (a loop back over its prompt or over words
    at the start of its window), the alignment stacks those words on one instant: "Montreal forced a
    liner. I hardly know her." all stamped 49.97 s, repeating words read a second earlier. No one says
    ``run`` words within ``span`` seconds; the words from the second of them on are dropped (a later
    decode reads that audio again). Stamps that jump back are not a stack: "of 37.7, mine 46.5, shall 46.5,
    some 38.5, my 39.1" is one word stamped late with the reading on in place after it, which
    :func:`in_time_order` repairs; taken for a stack, the 8 s after "of" were lost from a recorded file.
    """
    for i in range(len(words) - run + 1):
        if 0.0 <= words[i + run - 1].start - words[i].start <= span:
            return words[:i + 1]
    return words


def copies_prompt(words: list[TimedWord], prompt: str, min_words: int = 3) -> bool:
    """Whisper, given little audio it can read (whispers, noise), may just repeat its prompt."""
    keys = [norm(w.text) for w in words]
    keys = [k for k in keys if k]
    if len(keys) < min_words:
        return False
    tail = [k for k in (norm(t) for t in prompt.split()) if k]
    n = len(keys)
    return any(tail[i:i + n] == keys for i in range(max(0, len(tail) - 3 * n), len(tail) - n + 1))
