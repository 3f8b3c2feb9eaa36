"""Message definitions for the live channel (WebSocket and WebRTC data channel).

Server -> client messages are ``{"type": T, "data": {...}}``; client -> server
text messages are ``{"action": A, "params": {...}}``. Each model here is the
``data``/``params`` body; :func:`envelope` adds the ``type`` wrapper so callers
never build the outer shape by hand.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, overload

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from protocol.json_depth import MAX_JSON_DEPTH, json_depth
from protocol.json_depth import loads as json_loads

PCM_FORMATS = ("pcm_s16le", "pcm_f32le")
ENCODED_FORMATS = ("webm", "ogg", "mp3", "wav", "flac", "m4a", "mp4", "aac", "opus")
AUDIO_FORMATS = PCM_FORMATS + ENCODED_FORMATS

StatusValue = Literal["initializing", "processing", "paused", "completed", "failed"]

MAX_SAFE_ID = 2**53 - 1
"""Largest integer participant id (JavaScript's ``Number.MAX_SAFE_INTEGER``): a browser or Node client reads
every id up to it exactly, and ``2**53 + 1`` would come back to it as ``2**53``."""
MAX_ID_LENGTH = 200

MAX_KEY_TERMS = 100
MAX_KEY_TERM_CHARS = 50
_NO_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
KeyTerm = Annotated[str, Field(min_length=1, max_length=MAX_KEY_TERM_CHARS,
                               pattern=rf"^[^{_NO_CONTROL}]*[^\s{_NO_CONTROL}][^{_NO_CONTROL}]*$",
                               description="a name, jargon or product word as it is to be spelled")]
KeyTerms = Annotated[list[KeyTerm], Field(max_length=MAX_KEY_TERMS, description=(
    f"Names, jargon and product words (at most {MAX_KEY_TERMS}, {MAX_KEY_TERM_CHARS} characters each, no control"
    " characters): the model is steered towards them and near-misses are written with their spelling"))]
"""Key terms as every request takes them: the one place their bounds are set (stream start, uploads, projects)."""

ParticipantId = (Annotated[StrictInt, Field(ge=-MAX_SAFE_ID, le=MAX_SAFE_ID)]
                 | Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_LENGTH)])
"""A participant id as a client declares it: an opaque text, or an integer (meeting bots number their
participants). Strict on purpose: ``true`` is an ``int`` to Python and must not become participant 1, and a
float (``1.0``, ``1.5``) is refused rather than guessed at, since no JSON reader promises to give ``1.0`` back
as sent. The value is kept with its JSON type and returned as sent; :func:`participant_key` is its text form."""

SentId = StrictInt | StrictStr
"""A participant id on its way out (messages): whatever the client declared, with its JSON type. Not bounded
again: a late subscriber's history replays stored segments, and a message must never refuse what was stored."""


@overload
def participant_key(participant_id: None) -> None: ...


@overload
def participant_key(participant_id: str | int) -> str: ...


def participant_key(participant_id: str | int | None) -> str | None:
    """The text form of a participant id, where one key is needed (file names, dict keys, the segments column).

    ``1`` and ``"1"`` share the key ``"1"``: they name the same participant (a bot that once sent the number and
    once the text means one person), so they cannot stream to one transcript at once and share one recording.
    The value as sent is kept beside the key wherever it is stored."""
    if participant_id is None:
        return None
    return participant_id if isinstance(participant_id, str) else str(participant_id)


class ErrorCode(StrEnum):
    """Stable machine-readable codes; clients branch on these, never on text."""

    INVALID_JSON = "INVALID_JSON"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    UNKNOWN_ACTION = "UNKNOWN_ACTION"
    INVALID_PARAMS = "INVALID_PARAMS"
    NOT_STARTED = "NOT_STARTED"
    ALREADY_STARTED = "ALREADY_STARTED"
    AUDIO_FORMAT_ERROR = "AUDIO_FORMAT_ERROR"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    TRANSCRIPT_CLOSED = "TRANSCRIPT_CLOSED"
    TRANSCRIPT_MOVED = "TRANSCRIPT_MOVED"  # another node serves the transcript now: reconnect to go on streaming
    OVERLOADED = "OVERLOADED"  # the server is at capacity: details.retry_after_s says when to try again
    INSUFFICIENT_SCOPE = "INSUFFICIENT_SCOPE"  # the caller's token lacks the scope this action needs
    STORAGE_FULL = "STORAGE_FULL"  # the server's disk is full: the stream ends, what was acknowledged is kept
    AUDIO_TOO_LONG = "AUDIO_TOO_LONG"  # recorded audio decodes past the route's limit: details.limit_seconds
    RATE_LIMITED = "RATE_LIMITED"  # too many requests or streams from this caller: details.retry_after_s
    TRANSCRIPTION_FAILED = "TRANSCRIPTION_FAILED"  # the model failed on a stream's audio (the audio is stored)
    TOO_MANY_ERRORS = "TOO_MANY_ERRORS"  # a session sent VOXLANE_WS_MAX_BAD_MESSAGES invalid messages: it is closed
    INTERNAL_ERROR = "INTERNAL_ERROR"


class ProtocolError(Exception):
    """A client message that cannot be acted on; becomes an ``error`` message."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None,
                 recoverable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.recoverable = recoverable

    def to_message(self) -> Error:
        return Error(code=self.code.value, message=self.message, details=self.details,
                     recoverable=self.recoverable)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    TYPE: ClassVar[str] = ""


# ---------------------------------------------------------------- server -> client


class Word(_Body):
    text: str
    start: float = Field(description="Seconds from the start of the transcript's audio.")
    end: float
    probability: float = Field(ge=0.0, le=1.0)
    final: bool = Field(description="A final word never changes or disappears later in its segment.")


class Transcription(_Body):
    TYPE: ClassVar[str] = "transcription"
    text: str
    speaker: str | None = None
    timestamp: float = Field(default_factory=time.time, description="Server clock at emission (epoch s).")
    confidence: float = Field(ge=0.0, le=1.0)
    segment_id: str
    is_final: bool
    start: float
    end: float
    words: list[Word] = Field(default_factory=list)
    participant_id: SentId | None = Field(default=None, description="The participant's id as it was declared"
                                          " (text or integer, its JSON type kept).")


class Diarization(_Body):
    TYPE: ClassVar[str] = "diarization"
    speaker: str
    speaker_id: str
    start_time: float
    end_time: float
    confidence: float = Field(ge=0.0, le=1.0)
    correction: bool = Field(default=False, description=(
        "True when this relabels a range (or segments) already reported: later evidence changed the speaker"))
    segment_ids: list[str] = Field(default_factory=list, description=(
        "Final segments whose stored `speaker` is now this speaker (set on corrections)"))


class Status(_Body):
    TYPE: ClassVar[str] = "status"
    status: StatusValue
    stage: str | None = None
    progress: float | None = Field(default=None, ge=0.0, le=100.0)
    message: str = ""
    lag_seconds: float | None = Field(
        default=None, description="How far transcription is behind the received audio.")
    participant_id: SentId | None = Field(default=None, description="The participant's id as it was declared"
                                          " (text or integer, its JSON type kept).")
    shedding: list[str] | None = Field(default=None, description="Work the server sheds while it is past its"
                                       " capacity, in the order it is shed (hurried readings, slower partials,"
                                       " fewer speaker windows); null when it sheds nothing.")


class Summary(_Body):
    TYPE: ClassVar[str] = "summary"
    summary: str
    topics: list[str] = Field(default_factory=list)
    action_items: list[str] = Field(default_factory=list)
    key_points: list[str] = Field(default_factory=list)


class Error(_Body):
    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    recoverable: bool = True


class Speech(_Body):
    TYPE: ClassVar[str] = "speech"
    event: Literal["started", "stopped"] = Field(description=(
        "`started`: the VAD heard speech begin; `stopped`: the speech ended (told once the silence after it reached"
        " VOXLANE_VAD_MIN_SILENCE_MS, or at pause/stop)"))
    time: float = Field(description="Seconds from the start of the transcript's audio: the onset, or the end of the"
                                    " last speech")
    participant_id: SentId | None = Field(default=None, description="The participant's id as it was declared"
                                          " (text or integer, its JSON type kept).")


class Ping(_Body):
    TYPE: ClassVar[str] = "ping"
    timestamp: float = Field(default_factory=time.time)


ServerBody = Transcription | Diarization | Status | Summary | Error | Speech | Ping
SERVER_BODIES: tuple[type[_Body], ...] = (Transcription, Diarization, Status, Summary, Error, Speech, Ping)


def envelope(body: _Body) -> dict[str, Any]:
    """The outer ``{"type", "data"}`` shape of a server message."""
    return {"type": body.TYPE, "data": body.model_dump(mode="json")}


def encode(body: _Body) -> str:
    return json.dumps(envelope(body), separators=(",", ":"))


# ---------------------------------------------------------------- client -> server


class Participant(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: ParticipantId = Field(description="Text (1-200 characters) or an integer within +-(2^53 - 1); returned"
                                          " as sent, its JSON type kept. 1 and \"1\" are the same participant.")
    name: str | None = Field(default=None, max_length=200)
    is_host: bool | None = None
    platform: str | None = None
    extra_data: dict[str, Any] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, v: Any) -> Any:
        """One clear message per kind of wrong id (the union alone names both of its branches for each)."""
        if isinstance(v, bool):
            raise ValueError("a participant id is text or an integer, not true/false")
        if isinstance(v, float):
            raise ValueError("a participant id is text or an integer, not a float (send 1, not 1.0)")
        if isinstance(v, int) and not -MAX_SAFE_ID <= v <= MAX_SAFE_ID:
            raise ValueError(f"an integer participant id must be within +-{MAX_SAFE_ID} (2^53 - 1), which"
                             " JavaScript reads exactly")
        if isinstance(v, str) and not 1 <= len(v) <= MAX_ID_LENGTH:
            raise ValueError(f"a participant id text has 1-{MAX_ID_LENGTH} characters")
        if not isinstance(v, str | int):
            raise ValueError("a participant id is text or an integer")
        return v


class StartParams(BaseModel):
    """Declares the audio that follows as binary frames.

    For encoded containers the sample rate and channel count are read from the
    stream itself; for raw PCM they must be right, since nothing else says them.
    """

    model_config = ConfigDict(extra="forbid")
    format: Literal[AUDIO_FORMATS] = "pcm_s16le"  # type: ignore[valid-type]
    sample_rate: int = Field(default=16000, ge=8000, le=48000)
    channels: int = Field(default=1, ge=1, le=8)
    participant: Participant | None = None
    split_channels: bool = Field(default=False, description=(
        "Keep the channels apart: each of the `channels` channels is its own participant (`channel-1`, ...),"
        " transcribed and recorded on its own."))
    channel_names: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=8, description="With split_channels: participant names, in channel order"
                                                " (default `Channel 1`, ...).")
    language: str | None = Field(default=None, max_length=16)
    diarization: bool | None = Field(default=None, description=(
        "Label the speakers of this (mixed, undeclared-participant) stream; default: the server's setting"))
    key_terms: KeyTerms | None = None
    vad_events: bool = Field(default=False, description=(
        "Send `speech` messages when the VAD hears speech start and stop (voice agents: barge-in, end of turn)"))

    @field_validator("format", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _channels(self) -> StartParams:
        if self.channel_names is not None and not self.split_channels:
            raise ValueError("channel_names needs split_channels")
        if self.split_channels and self.participant is not None:
            raise ValueError("split_channels makes one participant per channel; name them with channel_names")
        if self.channel_names is not None and len(self.channel_names) > self.channels:
            raise ValueError(f"{len(self.channel_names)} channel_names for {self.channels} channel(s)")
        return self


class EmptyParams(BaseModel):
    model_config = ConfigDict(extra="allow")


class ParticipantEventParams(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = Field(min_length=1, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)


class StartAction(BaseModel):
    action: Literal["start"]
    params: StartParams | None = None


class PauseAction(BaseModel):
    action: Literal["pause"]
    params: EmptyParams = Field(default_factory=EmptyParams)


class GetStatusAction(BaseModel):
    action: Literal["get_status"]
    params: EmptyParams = Field(default_factory=EmptyParams)


class StopAction(BaseModel):
    action: Literal["stop"]
    params: EmptyParams = Field(default_factory=EmptyParams)


class ParticipantEventAction(BaseModel):
    action: Literal["participant_event"]
    params: ParticipantEventParams


ClientMessage = Annotated[
    StartAction | PauseAction | GetStatusAction | StopAction | ParticipantEventAction,
    Field(discriminator="action"),
]
CLIENT_ACTIONS: dict[str, type[BaseModel]] = {
    "start": StartAction,
    "pause": PauseAction,
    "get_status": GetStatusAction,
    "stop": StopAction,
    "participant_event": ParticipantEventAction,
}
MAX_TEXT_MESSAGE = 64 * 1024


def parse_client_message(raw: str | bytes) -> BaseModel:
    """Validate one client text message, raising :class:`ProtocolError` with a precise code."""
    if len(raw) > MAX_TEXT_MESSAGE:
        raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE,
                            f"control messages are limited to {MAX_TEXT_MESSAGE} bytes")
    try:
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise ProtocolError(ErrorCode.INVALID_JSON, f"message nests deeper than {MAX_JSON_DEPTH} levels",
                                {"max_depth": MAX_JSON_DEPTH})
        obj = json_loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"message is not valid JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("action"), str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            'expected an object {"action": <string>, "params": {...}}')
    action = obj["action"]
    model = CLIENT_ACTIONS.get(action)
    if model is None:
        raise ProtocolError(ErrorCode.UNKNOWN_ACTION, f"unknown action {action!r}",
                            {"action": action, "known": sorted(CLIENT_ACTIONS)})
    if obj.get("params") is None:
        obj = {k: v for k, v in obj.items() if k != "params"}
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        errors = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        raise ProtocolError(ErrorCode.INVALID_PARAMS, f"invalid params for {action!r}: "
                            + "; ".join(f"{e['loc']}: {e['msg']}" for e in errors),
                            {"action": action, "errors": errors}) from None
