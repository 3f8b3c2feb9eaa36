"""Spoken PII written out, so that recognizers built for written text can find it in a transcript.

People read an address or a number aloud ("john dot smith at example dot com", "five five five, one two three
four") and the model writes what it heard, in words or in digits ("555-1234"), often with commas between the
groups. :func:`written_form` rewrites such runs into their written shape ("john.smith@example.com", "5551234")
and keeps, for every character of the result, the transcript words it came from: a recognizer's span on the
written text maps back to whole words, and those words (not the rewritten ones) are what gets replaced.

Everything else is copied word for word, capitals and punctuation kept: the name recognizer reads it as written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

DIGITS = {"zero": "0", "oh": "0", "o": "0", "nought": "0", "one": "1", "two": "2", "three": "3", "four": "4",
          "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}
TEENS = {"ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14", "fifteen": "15",
         "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19"}
TENS = {"twenty": "2", "thirty": "3", "forty": "4", "fifty": "5", "sixty": "6", "seventy": "7", "eighty": "8",
        "ninety": "9"}
REPEATS = {"double": 2, "triple": 3}
_ZERO_ALONE = ("oh", "o")  # a digit only beside other digits: "oh" alone is an interjection
_RUN_JOINERS = ("dash", "hyphen")  # "five five five dash one two three four"
_GLUES = {"dot": ".", "underscore": "_"}
_NOT_A_MAILBOX = frozenset("""a an the this that these those it its me you him her us them we they i he she
look looking looked be is are was were am here there home work school least last first once all meet meeting
see arrive arrived stay stayed stop stopped""".split())
_NUMERIC = re.compile(r"^[(+]?\d[\d()\-,]*$")  # "555-1234", "(555)", "4111,": a run's piece; "1.5" is not
_EDGE = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)


@dataclass(frozen=True, slots=True)
class Piece:
    """A stretch of the written text and the transcript words ``first``..``last`` (inclusive) it stands for."""

    text: str
    first: int
    last: int
    glued: bool = False  # written without a space before it


@dataclass(frozen=True, slots=True)
class Written:
    text: str
    pieces: tuple[Piece, ...]
    starts: tuple[int, ...]  # character offset of each piece in ``text``

    def words_of(self, start: int, end: int) -> tuple[int, int] | None:
        """The transcript words (first, last) the written characters ``start``..``end`` come from."""
        hit = [p for p, at in zip(self.pieces, self.starts, strict=True) if at < end and at + len(p.text) > start]
        return (min(p.first for p in hit), max(p.last for p in hit)) if hit else None


def split_edges(word: str) -> tuple[str, str, str]:
    """(leading punctuation, the word, trailing punctuation): '"five,' -> ('"', 'five', ',')."""
    m = _EDGE.match(word)
    assert m is not None
    return m.group(1), m.group(2), m.group(3)


def _core(word: str) -> str:
    return split_edges(word)[1].lower()


def _continues(word: str) -> bool:
    """A word the model wrote on from the one before with a dot: "john", ".smith"; "192", ".168"."""
    return len(word) > 1 and word[0] == "." and word[1].isalnum()


def _number_kind(words: Sequence[str], i: int) -> str | None:
    if _continues(words[i]):
        return None
    core = _core(words[i])
    if core in DIGITS or core in TEENS or core in TENS or _NUMERIC.match(core):
        return "n"
    if core in REPEATS and i + 1 < len(words) and _core(words[i + 1]) in DIGITS:
        return "r"
    return None


def _read_run(words: Sequence[str], i: int) -> tuple[str, int]:
    """The digits of the number run starting at word ``i`` and the index after it. Digit words, teens, tens
    ("forty two"), "hundred", "double five" and numbers in digits ("555-1234") join into one digit string."""
    out: list[str] = []
    j = i
    while j < len(words):
        core = _core(words[j])
        if j > i and _continues(words[j]):
            break
        if core in REPEATS and j + 1 < len(words) and _core(words[j + 1]) in DIGITS:
            out.append(DIGITS[_core(words[j + 1])] * REPEATS[core])
            j += 2
        elif core in DIGITS:
            if core in _ZERO_ALONE and not out and not (j + 1 < len(words) and _number_kind(words, j + 1)):
                break
            out.append(DIGITS[core])
            j += 1
        elif core in TEENS:
            out.append(TEENS[core])
            j += 1
        elif core in TENS:
            unit = _core(words[j + 1]) if j + 1 < len(words) else ""
            if unit in DIGITS and unit not in ("zero", *_ZERO_ALONE):
                out.append(TENS[core] + DIGITS[unit])
                j += 2
            else:
                out.append(TENS[core] + "0")
                j += 1
        elif core == "hundred" and out and len(out[-1]) == 1:
            j += 1  # "one hundred" -> 100, "one hundred twelve" -> 112, "one hundred ninety two" -> 192
            rest = _core(words[j]) if j < len(words) else ""
            unit = _core(words[j + 1]) if j + 1 < len(words) else ""
            if rest in TEENS:
                out.append(TEENS[rest])
                j += 1
            elif rest in TENS:
                both = unit in DIGITS and unit not in ("zero", *_ZERO_ALONE)
                out.append(TENS[rest] + (DIGITS[unit] if both else "0"))
                j += 2 if both else 1
            elif rest in DIGITS and rest not in _ZERO_ALONE:
                out.append("0" + DIGITS[rest])
                j += 1
            else:
                out.append("00")
        elif _NUMERIC.match(core):
            out.append(re.sub(r"\D", "", core))
            j += 1
        elif core in _RUN_JOINERS and out and j + 1 < len(words) and _number_kind(words, j + 1):
            j += 1  # a spoken dash between groups belongs to the number
            continue
        else:
            break
        if split_edges(words[j - 1])[2][:1] in (".", "?", "!", ";") and j < len(words):
            break  # a sentence ends: "born in 1985. 2000 people came" is two numbers
    return "".join(out), j


def _domain_follows(words: Sequence[str], i: int) -> bool:
    """Whether the words from ``i`` read as a domain: "example dot com", "example.com"."""
    if i >= len(words):
        return False
    core = split_edges(words[i])[1]
    if re.fullmatch(r"[\w-]+(\.[\w-]+)*\.[A-Za-z]{2,}", core):
        return True
    if not re.fullmatch(r"[\w-]+", core) or i + 1 >= len(words):
        return False
    if _continues(words[i + 1]):
        return True
    return i + 2 < len(words) and _core(words[i + 1]) == "dot" \
        and bool(re.fullmatch(r"[A-Za-z]{2,}", split_edges(words[i + 2])[1]))


def written_form(words: Sequence[str]) -> Written:
    """The written text of a transcript's words (see the module's docstring)."""
    pieces: list[Piece] = []
    glue_next = False

    def add(text: str, first: int, last: int, glued: bool = False) -> None:
        nonlocal glue_next
        pieces.append(Piece(text, first, last, glued or glue_next))
        glue_next = False

    def glue(symbol: str, at: int) -> None:
        nonlocal glue_next
        prev = pieces[-1]
        pieces[-1] = Piece(prev.text.rstrip(".,;:!?\"')"), prev.first, prev.last, prev.glued)
        add(symbol, at, at, glued=True)
        glue_next = True

    i = 0
    while i < len(words):
        core = _core(words[i])
        if _number_kind(words, i):
            digits, j = _read_run(words, i)
            if digits:
                add(digits, i, j - 1)
                i = j
                continue
        if _continues(words[i]) and pieces and pieces[-1].text.rstrip(".,;:!?\"')"):
            glue(".", i)
            add(words[i][1:], i, i)
            i += 1
            continue
        nxt_ok = pieces and i + 1 < len(words) and split_edges(words[i + 1])[1] != ""
        if core in _GLUES and nxt_ok and pieces[-1].text.rstrip(".,;:!?\"')"):
            glue(_GLUES[core], i)
        elif core == "at" and nxt_ok and _domain_follows(words, i + 1) \
                and _core(pieces[-1].text) not in _NOT_A_MAILBOX and not re.fullmatch(r"\d+", pieces[-1].text):
            glue("@", i)
        elif glue_next:
            add(split_edges(words[i])[1] + split_edges(words[i])[2], i, i)
        else:
            add(words[i], i, i)
        i += 1
    text, starts = "", []
    for p in pieces:
        if text and not p.glued:
            text += " "
        starts.append(len(text))
        text += p.text
    return Written(text, tuple(pieces), tuple(starts))
