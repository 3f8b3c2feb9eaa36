"""The correction pass and its key-term step: near-misses written as the term, every other word untouched, word
timings kept, and a live partial's committed words never changed by its final."""

from __future__ import annotations

import json

import pytest

from asr.events import SegmentEvent, WordEvent
from server.features.correction import CorrectionPass, correction_pass, replace_span
from server.features.correction.key_terms import KeyTermStep, checked_key_terms

TERMS = ["Hester Prynne", "Pearl", "Chillingworth", "Dimmesdale", "Strasburg", "Maintz"]


def words(text: str, final: int | None = None) -> list[WordEvent]:
    """One word every 0.5 s, 0.4 s long; the first ``final`` flagged final (all of them by default)."""
    out = text.split()
    n = len(out) if final is None else final
    return [WordEvent(t, round(i * 0.5, 3), round(i * 0.5 + 0.4, 3), 0.9, i < n) for i, t in enumerate(out)]


def text_of(ws: list[WordEvent]) -> str:
    return " ".join(w.text for w in ws)


@pytest.mark.parametrize(("heard", "written"), [
    ("And Hester Prin was there.", "And Hester Prynne was there."),
    ("said hester prin's child", "said Hester Prynne's child"),
    ("Mr. Dims dale spoke", "Mr. Dimmesdale spoke"),
    ("old Roger Chilling worth, the physician", "old Roger Chillingworth, the physician"),
    ("to little pearl.", "to little Pearl."),
    ("printers in Strassburg, at Mainz", "printers in Strasburg, at Maintz"),  # the word before stays its own
])
def test_a_near_miss_is_written_as_the_term(heard: str, written: str) -> None:
    assert text_of(KeyTermStep(TERMS)(words(heard))) == written


@pytest.mark.parametrize("heard", [
    "the pear and the prince of wales",
    "Her sister present in the press",
    "Hester, Prin",  # a run never crosses punctuation
    "a an of it",
])
def test_words_not_near_a_term_are_untouched(heard: str) -> None:
    before = words(heard)
    assert KeyTermStep(TERMS)(before) == before


def test_timestamps_are_kept_and_a_merged_run_spans_its_words() -> None:
    heard = words("then Hester Prin spoke")
    out = KeyTermStep(TERMS)(heard)
    assert [(w.start, w.end) for w in out] == [(w.start, w.end) for w in heard], "word for word: same timings"
    merged = KeyTermStep(TERMS)(words("then Hes ter Prin spoke"))
    assert text_of(merged) == "then Hester Prynne spoke"
    assert (merged[1].start, merged[1].end) == (0.5, 1.9), "one word over the three it replaces"
    span = replace_span(heard[1:3], "X")
    assert (span.start, span.end, span.final) == (0.5, 1.4, True)


def test_a_live_partial_holds_back_the_committed_words_a_term_could_still_join() -> None:
    cp = correction_pass(["Hester Prynne"])
    sentence = "And Hester Prin was there now"
    final = cp.event(SegmentEvent("s", sentence, 0.0, 3.0, True, 0.9, tuple(words(sentence))))
    assert final.text == "And Hester Prynne was there now"
    shown: list[tuple[str, float, float]] = []
    for committed in range(7):
        partial = cp.event(SegmentEvent("s", sentence, 0.0, 3.0, False, 0.9, tuple(words(sentence, committed))))
        now = [(w.text, w.start, w.end) for w in partial.words if w.final]
        assert now[:len(shown)] == shown, "a committed word never changes"
        assert len(now) <= max(0, committed - cp.lookahead)
        shown = now
    assert [(w.text, w.start, w.end) for w in final.words][:len(shown)] == shown
    assert ("Prynne", 1.0, 1.4) in shown


def test_an_empty_pass_hands_events_on_untouched() -> None:
    event = SegmentEvent("s", "Hester Prin", 0.0, 1.0, False, 0.9, tuple(words("Hester Prin", 1)))
    assert CorrectionPass().event(event) is event and correction_pass([]).event(event) is event


def test_key_terms_are_bounded() -> None:
    assert checked_key_terms("Hester Prynne, Pearl") == ["Hester Prynne", "Pearl"]
    assert checked_key_terms('["Smith, Jones & Co"]') == ["Smith, Jones & Co"]
    assert checked_key_terms(None) == []
    for bad, says in [(["x"] * 101, "at most 100"), (["x" * 51], "at most 50"), (["bell\x07"], "control"),
                      (["  "], "blank"), ("[1, 2]", "valid string"), ("[oops", "JSON array"), (7, "valid list")]:
        with pytest.raises(ValueError, match=says):
            checked_key_terms(bad)


def test_a_stream_start_with_out_of_bounds_key_terms_is_refused() -> None:
    from protocol import ProtocolError
    from protocol.messages import parse_client_message

    ok = parse_client_message('{"action": "start", "params": {"key_terms": ["Hester Prynne"]}}')
    assert ok.params.key_terms == ["Hester Prynne"]  # type: ignore[attr-defined]
    for terms in (["x\x00y"], ["x" * 51], ["t"] * 101):
        with pytest.raises(ProtocolError) as info:
            parse_client_message(json.dumps({"action": "start", "params": {"key_terms": terms}}))
        assert info.value.code.value == "INVALID_PARAMS"
