"""Deepgram's listen API (``/v1/listen``, live and pre-recorded), as voxlane speaks it.

The query parameters are read and bounded here (:func:`parse_listen_params`), the live client's control
messages too (:func:`parse_control`), and the messages sent back are the models below, whose shapes follow the
``deepgram-sdk`` 7.x types (``ListenV1Results``, ``ListenV1Metadata``, ...; tests/api/test_deepgram_api.py parses
every one of them with the SDK). Parameters Deepgram defines that voxlane does not act on are accepted and
ignored (:data:`IGNORED`); an unknown parameter is ignored too, as Deepgram ignores it, within the bounds on the
whole query (:data:`MAX_QUERY_PARAMS`, :data:`MAX_VALUE_CHARS`).
"""

from __future__ import annotations

import re
import string
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from protocol.json_depth import MAX_JSON_DEPTH, json_depth
from protocol.json_depth import loads as json_loads
from protocol.messages import KeyTerms

MAX_CONTROL_CHARS = 16 * 1024
"""The largest text (control) message; Deepgram's are a few dozen bytes."""
MAX_QUERY_PARAMS = 300
MAX_VALUE_CHARS = 2000
MAX_MODEL_CHARS = 200
ENCODINGS = {"linear16": "pcm_s16le", "mulaw": "mulaw", "alaw": "alaw", "opus": "ogg", "ogg-opus": "ogg",
             "flac": "flac"}
"""Deepgram's ``encoding`` -> what voxlane decodes (G.711 is expanded to 16-bit PCM before the publisher)."""
CONTAINER = "webm"
"""No ``encoding``: a container, whose first bytes say which (the decoder recognises every one it takes)."""
IGNORED = ("callback_method", "detect_entities", "detect_language", "dictation", "extra", "filler_words",
           "language_hint", "measurements", "mip_opt_out", "no_delay", "numerals", "paragraphs",
           "profanity_filter", "redact", "replace", "search", "tag", "tier", "utt_split", "version",
           "alternatives", "diarize_version", "summarize", "topics", "intents", "sentiment", "custom_topic",
           "custom_topic_mode", "custom_intent", "custom_intent_mode")
"""Deepgram parameters voxlane accepts and does not act on (formatting it does not do, billing tags, ...)."""
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3}$")
_BOOLS = {"true": True, "false": False, "1": True, "0": False}
_PUNCTUATION = string.punctuation.replace("'", "") + "\u201c\u201d\u2018\u2019\u2026\u00bf\u00a1"
_key_terms = TypeAdapter(KeyTerms)


class ParamError(ValueError):
    """A request parameter voxlane refuses: the live route closes with it, the pre-recorded one answers 400."""


class ListenParams(BaseModel):
    """What a ``/v1/listen`` request asks for, in voxlane's terms."""

    encoding: str | None = None  # a Deepgram encoding name; None: a container
    sample_rate: int | None = None
    channels: int = 1
    multichannel: bool = False
    interim_results: bool = False
    punctuate: bool = False
    smart_format: bool = False
    diarize: bool = False
    vad_events: bool = False
    utterance_end_ms: int | None = None
    endpointing: int | None = 10  # ms, or None when turned off
    language: str | None = None  # the primary subtag voxlane's model takes; None: the server's setting
    model: str | None = None
    key_terms: list[str] = Field(default_factory=list)
    utterances: bool = False
    url_callback: str | None = None

    @property
    def formatted(self) -> bool:
        """Whether the transcript keeps case and punctuation (Deepgram: punctuate or smart_format)."""
        return self.punctuate or self.smart_format

    @property
    def voxlane_format(self) -> str:
        return ENCODINGS[self.encoding] if self.encoding else CONTAINER


def _bool(name: str, value: str) -> bool:
    found = _BOOLS.get(value.strip().lower())
    if found is None:
        raise ParamError(f"{name} must be true or false, not {value[:40]!r}")
    return found


def _int(name: str, value: str, lo: int, hi: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ParamError(f"{name} must be an integer, not {value[:40]!r}") from None
    if not lo <= number <= hi:
        raise ParamError(f"{name} must be between {lo} and {hi}, not {number}")
    return number


def _language(value: str) -> str | None:
    value = value.strip()
    if value.lower() == "multi":
        return None  # detect it
    if not _LANGUAGE.match(value):
        raise ParamError(f"language must be a BCP-47 tag such as en or en-US, not {value[:40]!r}")
    return value.split("-", 1)[0].lower()


def _term(raw: str) -> str:
    """A ``keywords`` entry is ``word:boost``; the boost means nothing to voxlane's key terms."""
    term, _, boost = raw.rpartition(":")
    if term and re.fullmatch(r"-?\d+(?:\.\d+)?", boost.strip()):
        return term.strip()
    return raw.strip()


def parse_listen_params(pairs: list[tuple[str, str]], *, live: bool) -> ListenParams:
    """The request's query (``token`` already removed) as :class:`ListenParams`, or :class:`ParamError`."""
    if len(pairs) > MAX_QUERY_PARAMS:
        raise ParamError(f"{len(pairs)} query parameters: at most {MAX_QUERY_PARAMS} are read")
    out = ListenParams()
    terms: list[str] = []
    for name, value in pairs:
        if len(value) > MAX_VALUE_CHARS:
            raise ParamError(f"the value of {name[:40]!r} is longer than {MAX_VALUE_CHARS} characters")
        if name == "encoding":
            if value.strip().lower() not in ENCODINGS:
                raise ParamError(f"encoding must be one of {', '.join(ENCODINGS)} (or left out for a container"
                                 f" such as WAV, Ogg, WebM, MP3, FLAC), not {value[:40]!r}")
            out.encoding = value.strip().lower()
        elif name == "sample_rate":
            out.sample_rate = _int(name, value, 8000, 48000)
        elif name == "channels":
            out.channels = _int(name, value, 1, 8)
        elif name in ("multichannel", "interim_results", "punctuate", "smart_format", "diarize", "vad_events",
                      "utterances"):
            setattr(out, name, _bool(name, value))
        elif name == "diarize_model":
            out.diarize = True
        elif name == "utterance_end_ms":
            out.utterance_end_ms = _int(name, value, 1000, 5000)
        elif name == "endpointing":
            low = value.strip().lower()
            out.endpointing = None if low == "false" else 10 if low == "true" else _int(name, value, 0, 10000)
        elif name == "language":
            out.language = _language(value)
        elif name == "model":
            if not value.strip() or len(value) > MAX_MODEL_CHARS:
                raise ParamError(f"model must have 1-{MAX_MODEL_CHARS} characters")
            out.model = value.strip()
        elif name in ("keyterm", "keywords"):
            terms.append(_term(value) if name == "keywords" else value.strip())
        elif name == "callback":
            out.url_callback = value
    if out.encoding in ("linear16", "mulaw", "alaw") and out.sample_rate is None:
        raise ParamError(f"encoding={out.encoding} needs sample_rate (raw audio says nothing of its rate)")
    if out.multichannel and out.diarize:
        raise ParamError("diarize labels the speakers of one mixed channel; multichannel keeps the channels apart"
                         " (each channel is its own speaker): send one of them")
    if live and out.url_callback is not None:
        raise ParamError("callback is not served: the results come over this WebSocket")
    try:
        out.key_terms = _key_terms.validate_python(list(dict.fromkeys(t for t in terms if t)))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ParamError(f"keyterm/keywords: {first['msg']} (at most 100 terms of 50 characters)") from None
    return out


# ---------------------------------------------------------------- control messages (client -> server)

CONTROL_TYPES = ("KeepAlive", "Finalize", "CloseStream", "Configure")


def parse_control(raw: str) -> dict[str, Any]:
    """One text message as ``{"type": ..., ...}``; :class:`ParamError` says what is wrong with it."""
    if len(raw) > MAX_CONTROL_CHARS:
        raise ParamError(f"a text message of {len(raw)} characters is over this server's limit of"
                         f" {MAX_CONTROL_CHARS}: it was dropped (audio goes in binary messages)")
    try:
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise ParamError(f"the message nests deeper than {MAX_JSON_DEPTH} levels")
        obj = json_loads(raw)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, ParamError):
            raise
        raise ParamError("a text message must be JSON: {\"type\": \"KeepAlive\" | \"Finalize\" | \"CloseStream\"}"
                         " (audio goes in binary messages)") from None
    if not isinstance(obj, dict) or obj.get("type") not in CONTROL_TYPES:
        kind = obj.get("type") if isinstance(obj, dict) else None
        raise ParamError(f"unknown message type {str(kind)[:40]!r}: expected one of {', '.join(CONTROL_TYPES)}")
    return obj


# ---------------------------------------------------------------- server -> client


class DgWord(BaseModel):
    word: str
    start: float
    end: float
    confidence: float
    punctuated_word: str | None = None
    speaker: int | None = None


class Alternative(BaseModel):
    transcript: str
    confidence: float
    words: list[DgWord]


class ResultsChannel(BaseModel):
    alternatives: list[Alternative]


class ModelInfo(BaseModel):
    name: str
    version: str
    arch: str


class ResultsMetadata(BaseModel):
    request_id: str = Field(description="the voxlane transcript that records the stream")
    model_info: ModelInfo
    model_uuid: str


class Results(BaseModel):
    type: Literal["Results"] = "Results"
    channel_index: list[int]
    duration: float
    start: float
    is_final: bool
    speech_final: bool
    from_finalize: bool = False
    channel: ResultsChannel
    metadata: ResultsMetadata


class SpeechStarted(BaseModel):
    type: Literal["SpeechStarted"] = "SpeechStarted"
    channel: list[int]
    timestamp: float


class UtteranceEnd(BaseModel):
    type: Literal["UtteranceEnd"] = "UtteranceEnd"
    channel: list[int]
    last_word_end: float


class Metadata(BaseModel):
    type: Literal["Metadata"] = "Metadata"
    transaction_key: str = "deprecated"
    request_id: str
    sha256: str
    created: str
    duration: float
    channels: int
    models: list[str] = Field(default_factory=list)
    model_info: dict[str, ModelInfo] = Field(default_factory=dict)


class DgError(BaseModel):
    type: Literal["Error"] = "Error"
    variant: str = Field(description="voxlane's error code")
    description: str
    message: str | None = Field(default=None, description="the client message that could not be parsed")


class ConfigureFailure(BaseModel):
    type: Literal["ConfigureFailure"] = "ConfigureFailure"
    request_id: str
    code: str
    description: str


def plain_word(text: str) -> str:
    """Deepgram's ``word``: lower case, without the punctuation around it (``punctuated_word`` keeps it)."""
    return text.strip().strip(_PUNCTUATION).lower() or text.strip().lower()


def dg_word(word: dict[str, Any], speaker: int | None) -> DgWord:
    """A voxlane word (``text``, ``start``, ``end``, ``probability``) in Deepgram's shape."""
    text = str(word.get("text") or "").strip()
    return DgWord(word=plain_word(text), start=round(float(word["start"]), 3), end=round(float(word["end"]), 3),
                  confidence=round(float(word.get("probability") or 0.0), 4), punctuated_word=text, speaker=speaker)


def transcript_of(words: list[DgWord], formatted: bool) -> str:
    """The alternative's text: the punctuated words (``punctuate``/``smart_format``) or the plain ones."""
    return " ".join((w.punctuated_word or w.word) if formatted else w.word for w in words if w.word)


def alternative(words: list[DgWord], formatted: bool) -> Alternative:
    confidence = sum(w.confidence for w in words) / len(words) if words else 0.0
    return Alternative(transcript=transcript_of(words, formatted), confidence=round(confidence, 4), words=words)


def model_info(name: str, version: str) -> tuple[ModelInfo, str]:
    """The served model as Deepgram describes one, and its stable uuid (derived from its name)."""
    return ModelInfo(name=name, version=version, arch="voxlane"), str(uuid.uuid5(uuid.NAMESPACE_URL, f"voxlane:{name}"))


def wire(model: BaseModel) -> str:
    return model.model_dump_json(exclude_none=True)
