"""The wire contract: every message voxlane sends or accepts, in one place.

Nothing outside this package shapes JSON for the live channel; the JSON Schema
published at ``/v1/protocol.json`` is generated from the same definitions.
"""

from protocol.messages import (
    AUDIO_FORMATS,
    ENCODED_FORMATS,
    PCM_FORMATS,
    ClientMessage,
    Diarization,
    Error,
    ErrorCode,
    Participant,
    ParticipantEventParams,
    Ping,
    ProtocolError,
    Speech,
    StartParams,
    Status,
    Summary,
    Transcription,
    Word,
    encode,
    envelope,
    parse_client_message,
)
from protocol.schema import protocol_schema

__all__ = [
    "AUDIO_FORMATS",
    "ENCODED_FORMATS",
    "PCM_FORMATS",
    "ClientMessage",
    "Diarization",
    "Error",
    "ErrorCode",
    "Participant",
    "ParticipantEventParams",
    "Ping",
    "ProtocolError",
    "Speech",
    "StartParams",
    "Status",
    "Summary",
    "Transcription",
    "Word",
    "encode",
    "envelope",
    "parse_client_message",
    "protocol_schema",
]
