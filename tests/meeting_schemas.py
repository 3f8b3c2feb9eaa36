"""JSON Schemas of the meeting-bot download shapes, written from the download schemas reference
(shared/reference/meeting-bot-download-schemas.md): exactly its keys, no others."""

from __future__ import annotations

from typing import Any

ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"


def exact(properties: dict[str, Any], **more: Any) -> dict[str, Any]:
    """An object with these keys, each required, and no other: every shape of the reference is one."""
    return {"type": "object", "required": list(properties), "additionalProperties": False,
            "properties": properties, **more}


def array_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


PARTICIPANT = exact({
    "id": {"type": "integer"},
    "name": {"type": ["string", "null"]},
    "is_host": {"type": ["boolean", "null"]},
    "platform": {"type": ["string", "null"]},
    "extra_data": {},  # json | null
})
STAMP = exact({"absolute": {"type": "string", "pattern": ISO}, "relative": {"type": "number", "minimum": 0}})
RELATIVE = exact({"relative": {"type": "number", "minimum": 0}})
ACTIONS = ["join", "leave", "update", "speech_on", "speech_off", "webcam_on", "webcam_off", "screenshare_on",
           "screenshare_off", "chat_message"]

PARTICIPANTS = array_of(PARTICIPANT)

PARTICIPANT_EVENTS = array_of(exact(
    {
        "id": {"type": "string"},
        "action": {"enum": ACTIONS},
        "participant": PARTICIPANT,
        "timestamp": STAMP,
        "data": {"oneOf": [{"type": "null"},
                           exact({"text": {"type": "string"}, "to": {"enum": ["everyone", "only_bot"]}})]},
    },
    # data is populated if (and only if) the action is a chat_message
    **{"if": {"properties": {"action": {"const": "chat_message"}}},
       "then": {"properties": {"data": {"type": "object"}}},
       "else": {"properties": {"data": {"type": "null"}}}},
))

SPEAKER_TIMELINE = array_of(exact({"participant": PARTICIPANT, "start_timestamp": STAMP, "end_timestamp": STAMP}))

TRANSCRIPT = array_of(exact({
    "participant": exact({"id": {"type": "number"}, "name": {"type": ["string", "null"]}}),
    "words": array_of(exact({"text": {"type": "string"}, "start_timestamp": RELATIVE, "end_timestamp": RELATIVE})),
}))

AUDIO_PARTS = array_of(exact({
    "id": {"type": "string"},
    "participant": PARTICIPANT,
    "start_timestamp": STAMP,
    "duration": {"type": "number", "minimum": 0},
    "download_url": {"type": "string", "pattern": "^https?://"},
}))

_DATA = {  # the reference's one shape per part type
    "webhook": {"payload": {"type": "object"}},
    "http_response": {"url": {"type": "string"}, "status_code": {"type": "integer"}, "body": {"type": "object"}},
    "websocket_message": {"url": {"type": "string"}, "event": {"type": "string"}, "payload": {"type": "object"}},
}
PROVIDER_DATA = exact({"parts": array_of(exact(
    {
        "id": {"type": "string"},
        "created_at": {"type": "string", "pattern": ISO},
        "source_audio": exact({"type": {"enum": ["mixed", "separate"]}, "offset": {"type": "number", "minimum": 0},
                               "participant": {"oneOf": [PARTICIPANT, {"type": "null"}]}}),
        "type": {"enum": list(_DATA)},
        "data": {"type": "object"},
    },
    allOf=[{"if": {"properties": {"type": {"const": kind}}}, "then": {"properties": {"data": exact(shape)}}}
           for kind, shape in _DATA.items()],
))})

DOWNLOADS = {"participants": PARTICIPANTS, "participant_events": PARTICIPANT_EVENTS,
             "speaker_timeline": SPEAKER_TIMELINE, "transcript": TRANSCRIPT, "audio_parts": AUDIO_PARTS,
             "transcript_provider_data": PROVIDER_DATA}
