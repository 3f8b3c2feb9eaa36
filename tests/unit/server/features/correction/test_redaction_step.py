"""Redaction in the correction pass: what a live partial tells final, and that no told word moves in the final."""

from __future__ import annotations

import pytest

from asr.events import SegmentEvent, WordEvent
from server.features.correction import correction_pass
from server.features.correction.redaction import Redactor
from server.features.correction.redaction_step import RedactionStep

SAID = "my number is five five five one two three four and my mail is john dot smith at example dot com thanks".split()


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    r = Redactor()
    r.load()
    return r


def words(texts: list[str], final: int) -> list[WordEvent]:
    return [WordEvent(text=t, start=i * 0.4, end=i * 0.4 + 0.3, probability=0.9, final=i < final)
            for i, t in enumerate(texts)]


def event(texts: list[str], final: int, is_final: bool = False) -> SegmentEvent:
    ws = words(texts, len(texts) if is_final else final)
    return SegmentEvent(text=" ".join(texts), speaker=None, confidence=0.9, segment_id="s1", is_final=is_final,
                        start=0.0, end=ws[-1].end, words=tuple(ws))


def test_plain_speech_is_told_final_at_once_and_costs_no_analysis(redactor: Redactor):
    step = RedactionStep(redactor)
    plain = words("so we went to the market and bought some bread".split(), 10)
    assert step.held(plain, 10) == 0
    assert step(plain) == plain
    sentence_start = words("yesterday. Then we left".split(), 4)
    assert step.held(sentence_start, 4) == 0, "a capital that opens a sentence holds nothing back"


def test_a_run_of_digits_is_held_until_plain_words_follow_it(redactor: Redactor):
    step = RedactionStep(redactor)
    def held(n: int, shown: int | None = None) -> int:  # n committed words, ``shown`` in all
        return step.held(words(SAID[:shown or n], n), n)

    assert held(6) == 4, "'is' and the digits so far"
    assert held(9) == 7
    assert held(10) == 8
    assert held(11) == 9, "one plain word after the run: it may go on"
    assert held(12) == 0, "two plain words: the number has ended"
    assert held(16) == 2, "'john dot': an address may be under way"
    assert held(15, shown=16) == 1, "a tentative 'dot' after 'john' holds 'john' back"


def test_a_name_is_held_until_the_next_plain_word(redactor: Redactor):
    step = RedactionStep(redactor)
    said = "then we met Linda Green yesterday at noon".split()
    assert step.held(words(said[:5], 5), 5) == 2, "'Linda Green' may go on"
    assert step.held(words(said[:6], 6), 6) == 0, "a plain word after a name ends it"


def test_partials_never_tell_pii_and_no_told_word_moves(redactor: Redactor):
    pass_ = correction_pass(redactor=redactor)
    assert pass_.heavy
    told: list[tuple[str, float, float]] = []
    for n in range(1, len(SAID) + 1):  # one more committed word each reading, one tentative after
        shown = pass_.event(event(SAID[:n + 1], n))
        final_words = [(w.text, w.start, w.end) for w in shown.words if w.final]
        assert final_words[:len(told)] == told, "a word told final stays as it was told"
        told = final_words
        assert not any(w[0] in ("five", "john", "smith", "example") for w in told), told
    final = pass_.event(event(SAID, 0, is_final=True))
    got = [(w.text, w.start, w.end) for w in final.words]
    assert got[:len(told)] == told
    assert final.text == "my number is [PHONE] and my mail is [EMAIL] thanks"
    assert [w.text for w in final.words].count("[PHONE]") == 1
    phone = next(w for w in final.words if w.text == "[PHONE]")
    assert (phone.start, phone.end) == (3 * 0.4, 9 * 0.4 + 0.3), "the placeholder spans the words it replaces"


def test_key_terms_and_participant_names(redactor: Redactor):
    said = "then Hester Prynne spoke with Linda Green about it".split()
    pass_ = correction_pass(["Hester Prynne"], redactor, names=["Linda Green"])
    final = pass_.event(event(said, 0, is_final=True))
    assert final.text == "then Hester Prynne spoke with [PERSON] about it"


def test_disabled_redaction_adds_no_step():
    assert not correction_pass(redactor=Redactor(enabled=False))
