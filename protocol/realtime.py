"""The OpenAI Realtime API's transcription sessions, as voxlane speaks them (``WS /v1/realtime``).

Only what a transcription session uses is modelled: the four client events voxlane acts on and the server
events it sends. Client events are validated here and bounded (every string has a maximum; an append carries
at most :data:`MAX_AUDIO_B64` characters of base64, OpenAI's own limit); the server events are built from the
models below, whose shapes follow the ``openai`` SDK's server-event types (the SDK validates every one of them
in tests/api/test_realtime_api.py), so an application written against OpenAI only changes its base URL.

Error codes are voxlane's (``INVALID_JSON``, ``UNKNOWN_EVENT``, ``OVERLOADED``, ...) except where OpenAI's own
code is what clients branch on (``input_audio_buffer_commit_empty``).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocol.json_depth import MAX_JSON_DEPTH, json_depth
from protocol.json_depth import loads as json_loads

MAX_AUDIO_B64 = 15 * 1024 * 1024
"""Most base64 characters one ``input_audio_buffer.append`` carries (OpenAI's limit: 15 MiB)."""
MAX_EVENT_CHARS = MAX_AUDIO_B64 + 64 * 1024
"""The largest client message read at all; a bigger one is refused before it is parsed."""
PCM_RATE: Final = 24000  # Final: its type is Literal[24000], what PcmFormat.rate declares
"""``audio/pcm`` is 16-bit little-endian mono at 24 kHz, the only rate the Realtime API defines."""
G711_RATE = 8000
MIN_COMMIT_MS = 100.0
"""A commit of less audio than this is refused, as OpenAI refuses it (``input_audio_buffer_commit_empty``)."""
LOGPROBS = "item.input_audio_transcription.logprobs"

CLIENT_ERROR = "invalid_request_error"
SERVER_ERROR = "server_error"
COMMIT_EMPTY = "input_audio_buffer_commit_empty"
UNSUPPORTED_EVENTS = frozenset({
    "conversation.item.create", "conversation.item.delete", "conversation.item.retrieve",
    "conversation.item.truncate", "output_audio_buffer.clear", "response.cancel", "response.create",
})
"""Realtime API client events of conversation sessions: a transcription session has no responses or items to
create, so these get a clear ``UNSUPPORTED_EVENT`` rather than ``UNKNOWN_EVENT``."""


class RealtimeError(Exception):
    """A client event that cannot be acted on: answered with an ``error`` event, and the session goes on."""

    def __init__(self, code: str, message: str, *, param: str | None = None, event_id: str | None = None,
                 kind: str = CLIENT_ERROR) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.event_id = event_id
        self.kind = kind

    def event(self) -> ErrorEvent:
        return ErrorEvent(error=ErrorDetail(type=self.kind, code=self.code, message=self.message, param=self.param,
                                            event_id=self.event_id))


# ---------------------------------------------------------------- client -> server


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


Short = Annotated[str, Field(max_length=200)]


class AudioFormatIn(_In):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: int | None = None

    @model_validator(mode="after")
    def _rate(self) -> AudioFormatIn:
        wanted = PCM_RATE if self.type == "audio/pcm" else G711_RATE
        if self.rate is not None and self.rate != wanted:
            raise ValueError(f"{self.type} is {wanted} Hz here, not {self.rate} (voxlane's native WebSocket,"
                             " /v1/transcripts_websocket/{id}, takes PCM at 8-48 kHz)")
        return self

    @property
    def sample_rate(self) -> int:
        return PCM_RATE if self.type == "audio/pcm" else G711_RATE

    @property
    def bytes_per_second(self) -> int:
        return PCM_RATE * 2 if self.type == "audio/pcm" else G711_RATE

    def out(self) -> PcmFormat | G711Format:
        return PcmFormat() if self.type == "audio/pcm" else G711Format(type=self.type)


class NoiseReductionIn(_In):
    type: Literal["near_field", "far_field"] | None = None
    strength: float | None = Field(default=None, ge=0, le=10)


class TranscriptionIn(_In):
    model: Short | None = None
    language: str | None = Field(default=None, max_length=16)
    prompt: str | None = Field(default=None, max_length=4000)
    delay: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None
    keywords: list[Short] | None = Field(default=None, max_length=100)
    languages: list[Annotated[str, Field(max_length=16)]] | None = Field(default=None, max_length=16)


class ServerVadIn(_In):
    type: Literal["server_vad"]
    threshold: float | None = Field(default=None, ge=0, le=1)
    prefix_padding_ms: int | None = Field(default=None, ge=0, le=60000)
    silence_duration_ms: int | None = Field(default=None, ge=0, le=60000)
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: int | None = Field(default=None, ge=0, le=86_400_000)


class SemanticVadIn(_In):
    type: Literal["semantic_vad"]
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


class AudioInputIn(_In):
    format: AudioFormatIn | None = None
    noise_reduction: NoiseReductionIn | None = None
    transcription: TranscriptionIn | None = None
    turn_detection: Annotated[ServerVadIn | SemanticVadIn, Field(discriminator="type")] | None = None


class AudioIn(_In):
    input: AudioInputIn | None = None


class TranscriptionSessionIn(_In):
    """``session`` of a ``session.update``: only the fields present change (null turns a setting off)."""

    type: Literal["transcription"]
    audio: AudioIn | None = None
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = Field(default=None, max_length=4)


class _ClientEvent(_In):
    event_id: str | None = Field(default=None, max_length=512)


class SessionUpdate(_ClientEvent):
    type: Literal["session.update"]
    session: TranscriptionSessionIn


class AudioAppend(_ClientEvent):
    type: Literal["input_audio_buffer.append"]
    audio: str = Field(max_length=MAX_AUDIO_B64)


class AudioCommit(_ClientEvent):
    type: Literal["input_audio_buffer.commit"]


class AudioClear(_ClientEvent):
    type: Literal["input_audio_buffer.clear"]


ClientEvent = SessionUpdate | AudioAppend | AudioCommit | AudioClear
CLIENT_EVENTS: dict[str, type[_ClientEvent]] = {
    "session.update": SessionUpdate,
    "input_audio_buffer.append": AudioAppend,
    "input_audio_buffer.commit": AudioCommit,
    "input_audio_buffer.clear": AudioClear,
}


def parse_client_event(raw: str) -> ClientEvent:
    """One client text message, validated; raises :class:`RealtimeError` saying precisely what is wrong."""
    if len(raw) > MAX_EVENT_CHARS:
        raise RealtimeError("MESSAGE_TOO_LARGE", f"an event of {len(raw)} characters is over this server's limit of"
                            f" {MAX_EVENT_CHARS} (an append carries at most {MAX_AUDIO_B64} characters of base64):"
                            " it was dropped, send smaller appends")
    try:
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise RealtimeError("INVALID_JSON", f"the event nests deeper than {MAX_JSON_DEPTH} levels")
        obj = json_loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RealtimeError("INVALID_JSON", f"the event is not valid JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise RealtimeError("INVALID_EVENT", 'expected a JSON object {"type": <event type>, ...}')
    event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
    event_id = event_id[:512] if event_id is not None else None
    kind: str = obj["type"][:100]
    model = CLIENT_EVENTS.get(kind)
    if model is None:
        if kind in UNSUPPORTED_EVENTS:
            raise RealtimeError("UNSUPPORTED_EVENT", f"{kind!r} belongs to conversation sessions; a transcription"
                                " session takes session.update and input_audio_buffer.append/commit/clear",
                                param="type", event_id=event_id)
        hint = " (the beta API's event: send session.update with session.type 'transcription')" if kind.startswith(
            "transcription_session.") else ""
        raise RealtimeError("UNKNOWN_EVENT", f"unknown event type {kind!r}{hint}; this server takes"
                            f" {', '.join(CLIENT_EVENTS)}", param="type", event_id=event_id)
    if kind == "session.update":
        session = obj.get("session")
        session_type = session.get("type") if isinstance(session, dict) else None
        if session_type != "transcription":
            raise RealtimeError("UNSUPPORTED_SESSION", f"voxlane serves transcription sessions only: session.type"
                                f" must be 'transcription', not {session_type!r}", param="session.type",
                                event_id=event_id)
    try:
        return model.model_validate(obj)  # type: ignore[return-value]
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"] if not str(p).startswith(("function-", "tagged-union")))
        raise RealtimeError("INVALID_PARAMS", f"invalid {kind}: {param or 'event'}: {first['msg']}",
                            param=param or None, event_id=event_id) from None


# ---------------------------------------------------------------- server -> client


def event_id() -> str:
    return f"event_{uuid.uuid4().hex[:22]}"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerEvent(_Out):
    event_id: str = Field(default_factory=event_id)
    type: str  # each event's own Literal (declared here so that it follows event_id on the wire)

    def wire(self) -> str:
        return self.model_dump_json()


class PcmFormat(_Out):
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[24000] = PCM_RATE


class G711Format(_Out):
    type: Literal["audio/pcmu", "audio/pcma"]


class NoiseReduction(_Out):
    type: Literal["near_field", "far_field"] | None = None
    strength: float | None = None


class TranscriptionConfig(_Out):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    delay: str | None = None
    keywords: list[str] | None = None
    languages: list[str] | None = None


class ServerVad(_Out):
    """The turn detection in effect: voxlane's own VAD, tuned by the server's settings (VOXLANE_VAD_*)."""

    type: Literal["server_vad"] = "server_vad"
    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int


class AudioInput(_Out):
    format: PcmFormat | G711Format
    noise_reduction: NoiseReduction | None = None
    transcription: TranscriptionConfig | None = None
    turn_detection: ServerVad | None = None


class Audio(_Out):
    input: AudioInput


class TranscriptionSession(_Out):
    """The effective session. ``id`` is the voxlane transcript the session records (GET /v1/transcripts/{id})."""

    type: Literal["transcription"] = "transcription"
    object: Literal["realtime.transcription_session"] = "realtime.transcription_session"
    id: str
    audio: Audio
    include: list[str] | None = None


class ErrorDetail(_Out):
    type: str
    code: str | None = None
    message: str
    param: str | None = None
    event_id: str | None = None


class ErrorEvent(ServerEvent):
    type: Literal["error"] = "error"
    error: ErrorDetail


class _SessionEvent(ServerEvent):
    """An event that carries the effective session (on connect, and after each ``session.update``)."""

    session: TranscriptionSession


class SessionCreated(_SessionEvent):
    type: Literal["session.created"] = "session.created"


class SessionUpdated(_SessionEvent):
    type: Literal["session.updated"] = "session.updated"


class SpeechStarted(ServerEvent):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class SpeechStopped(ServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class Committed(ServerEvent):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


class Cleared(ServerEvent):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class InputAudioContent(_Out):
    type: Literal["input_audio"] = "input_audio"
    transcript: str | None = None


class UserAudioItem(_Out):
    id: str
    object: Literal["realtime.item"] = "realtime.item"
    type: Literal["message"] = "message"
    role: Literal["user"] = "user"
    status: Literal["in_progress", "completed"]
    content: list[InputAudioContent]


class ItemAdded(ServerEvent):
    type: Literal["conversation.item.added"] = "conversation.item.added"
    previous_item_id: str | None = None
    item: UserAudioItem


class ItemDone(ServerEvent):
    type: Literal["conversation.item.done"] = "conversation.item.done"
    previous_item_id: str | None = None
    item: UserAudioItem


class LogProb(_Out):
    token: str
    bytes: list[int]
    logprob: float


class _TranscriptionEvent(ServerEvent):
    """An event about the transcript of one item's audio content (its delta or its completion)."""

    item_id: str
    content_index: int = 0


class TranscriptionDelta(_TranscriptionEvent):
    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta")
    delta: str
    logprobs: list[LogProb] | None = None


class DurationUsage(_Out):
    type: Literal["duration"] = "duration"
    seconds: float


class TranscriptionCompleted(_TranscriptionEvent):
    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed")
    transcript: str
    usage: DurationUsage
    logprobs: list[LogProb] | None = None


SERVER_EVENTS: tuple[type[ServerEvent], ...] = (
    ErrorEvent, SessionCreated, SessionUpdated, SpeechStarted, SpeechStopped, Committed, Cleared, ItemAdded,
    ItemDone, TranscriptionDelta, TranscriptionCompleted)


def error_event(code: str, message: str, *, kind: str = CLIENT_ERROR) -> ErrorEvent:
    """An ``error`` not tied to one client event (admission, the session's own failures)."""
    return ErrorEvent(error=ErrorDetail(type=kind, code=code, message=message))
