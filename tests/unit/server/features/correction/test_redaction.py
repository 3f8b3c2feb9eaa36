"""PII redaction on text and on timed words: spoken forms, the placeholders' spans, the settings, the allow-list.

One redactor for the module: loading Presidio and the spaCy model takes a few seconds; each call a few ms.
"""

from __future__ import annotations

import threading

import pytest

from asr.events import WordEvent
from protocol import Word
from server.features.correction.entities import entity_types
from server.features.correction.redaction import Redactor
from server.features.correction.spoken_forms import written_form
from server.settings import Settings, SettingsError


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    r = Redactor()
    r.load()
    return r


def timed(text: str) -> list[WordEvent]:
    return [WordEvent(t, round(i * 0.4, 3), round(i * 0.4 + 0.3, 3), 0.9 - i / 100, True)
            for i, t in enumerate(text.split())]


@pytest.mark.parametrize(("said", "written"), [
    ("john dot smith at example dot com", "john.smith@example.com"),
    ("five five five, one two three four.", "5551234"),
    ("555-1234", "5551234"),
    ("double five five dash one two three four", "5551234"),
    ("one nine two dot one six eight dot one dot ten", "192.168.1.10"),
    ("one hundred twelve", "112"),
    ("born in 1985. 2000 people came", "born in 1985 2000 people came"),
    ("look at the dot com bubble", "look at the.com bubble"),  # no mailbox: "at" stays a word
    ("oh well", "oh well"),
])
def test_spoken_forms_are_written_out(said: str, written: str) -> None:
    assert written_form(said.split()).text == written


@pytest.mark.parametrize(("text", "redacted"), [
    ("My email is john dot smith at example dot com.", "My email is [EMAIL]."),
    ("Call me at five five five, one two three four.", "Call me at [PHONE]."),
    ("Call me at 555-1234 tomorrow", "Call me at [PHONE] tomorrow"),
    ("My card number is 4111 1111 1111 1111.", "My card number is [CREDIT_CARD]."),
    ("My account number is one two three four five six seven eight.", "My account number is [ACCOUNT]."),
    ("The server is 10.0.0.5, the backup one nine two dot one six eight dot one dot ten.",
     "The server is [IP_ADDRESS], the backup [IP_ADDRESS]."),
    ("I spoke with David Miller yesterday.", "I spoke with [PERSON] yesterday."),
    ("We booked the flights late, two or three weeks ago.", "We booked the flights late, two or three weeks ago."),
])
def test_text(redactor: Redactor, text: str, redacted: str) -> None:
    assert redactor.redact_text(text) == redacted


def test_text_keeps_its_spacing(redactor: Redactor) -> None:
    assert redactor.redact_text("mail  (jane@example.org)\nthanks") == "mail  ([EMAIL])\nthanks"


def test_the_words_of_one_entity_become_one_placeholder_spanning_them(redactor: Redactor) -> None:
    words = timed("Write to john dot smith at example dot com, or call five five five, one two three four.")
    out = redactor.redact_words(words)
    assert [w.text for w in out] == ["Write", "to", "[EMAIL],", "or", "call", "[PHONE]."]
    email, phone = out[2], out[5]
    assert (email.start, email.end) == (words[2].start, words[8].end)
    assert (phone.start, phone.end) == (words[11].start, words[17].end)
    assert email.probability == min(w.probability for w in words[2:9]) and email.final


def test_words_of_every_shape(redactor: Redactor) -> None:
    wire = [Word(text=w.text, start=w.start, end=w.end, probability=w.probability, final=w.final)
            for w in timed("Call 555-1234 now")]
    assert [w.text for w in redactor.redact_words(wire)] == ["Call", "[PHONE]", "now"]
    assert isinstance(redactor.redact_words(wire)[1], Word)
    stored = [w.model_dump() for w in wire]
    out = redactor.redact_words(stored)
    assert out[1] == {"text": "[PHONE]", "start": 0.4, "end": 0.7, "probability": 0.89, "final": True}


def test_a_stored_segment(redactor: Redactor) -> None:
    words = [w.model_dump() for w in (Word(text=e.text, start=e.start, end=e.end, probability=e.probability,
                                           final=e.final) for e in timed("Hi, I am David Miller."))]
    row = {"id": "s1", "text": "Hi, I am David Miller.", "start": 0.0, "end": 2.0, "words": words}
    out = redactor.redact_segment(row)
    assert out["text"] == "Hi, I am [PERSON]." and len(out["words"]) == 4 and row["words"] == words
    assert redactor.redact_segment({"text": "mail bob at acme dot io", "words": []})["text"] == "mail [EMAIL]"
    assert redactor.redact_segment(row, allow=["David Miller"]) is row


def test_a_partly_final_entity_is_not_final(redactor: Redactor) -> None:
    words = [*timed("call five five five one two"), WordEvent("three", 2, 2.2, 0.9, False),
             WordEvent("four", 2.3, 2.5, 0.9, False)]
    out = redactor.redact_words(words)
    assert [w.text for w in out] == ["call", "[PHONE]"] and not out[1].final


def test_key_terms_are_never_redacted(redactor: Redactor) -> None:
    text = "Hester Prynne met David Miller."
    assert redactor.redact_text(text) == "[PERSON] met [PERSON]."
    assert redactor.redact_text(text, allow=["hester prynne"]) == "Hester Prynne met [PERSON]."


def test_known_names_are_found_whatever_the_model_says(redactor: Redactor) -> None:
    assert redactor.redact_text("thanks zorblat, see you", names=["Zorblat"]) == "thanks [PERSON], see you"


def test_redacting_twice_changes_nothing_more(redactor: Redactor) -> None:
    once = redactor.redact_text("Mail peter at jackson dot net or call five five five one two three four")
    assert redactor.redact_text(once) == once


def test_only_the_types_asked_for() -> None:
    only_email = Redactor(entities=["EMAIL"])
    assert only_email.redact_text("John Smith: john at example dot com, 555-1234") == "John Smith: [EMAIL], 555-1234"


def test_disabled() -> None:
    off = Redactor.from_settings(Settings.from_sources({}, {"VOXLANE_DISABLE_REDACTION": "on"}))
    assert not off.enabled and off.redact_text("call 555-1234") == "call 555-1234"
    words = timed("call 555-1234")
    assert off.redact_words(words) == words
    assert Redactor.from_settings(Settings.from_sources({}, {})).enabled  # on by default


def test_entity_settings() -> None:
    assert entity_types("email, phone") == ("EMAIL", "PHONE")
    settings = Settings.from_sources({}, {"VOXLANE_REDACTION_ENTITIES": "EMAIL,PERSON"})
    assert Redactor.from_settings(settings).entities == ("EMAIL", "PERSON")
    with pytest.raises(SettingsError, match="VOXLANE_REDACTION_ENTITIES: unknown entity type 'SSN'"):
        Settings.from_sources({}, {"VOXLANE_REDACTION_ENTITIES": "EMAIL,SSN"})
    with pytest.raises(SettingsError, match="VOXLANE_KEEP_UNREDACTED"):
        Settings.from_sources({}, {"VOXLANE_KEEP_UNREDACTED": "maybe"})


def test_threads_share_one_redactor(redactor: Redactor) -> None:
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(redactor.redact_text("call 555-1234 now")))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["call [PHONE] now"] * 4
