"""JSON Schemas of the meeting-bot download shapes, written from the download schemas reference
(shared/reference/meeting-bot-download-schemas.md): exactly its keys, no others."""

from __future__ import annotations

ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"

PARTICIPANT = {
    "type": "object",
    "required": ["id", "name", "is_host", "platform", "extra_data"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": ["string", "null"]},
        "is_host": {"type": ["boolean", "null"]},
        "platform": {"type": ["string", "null"]},
        "extra_data": {},  # json | null
    },
}
STAMP = {
    "type": "object",
    "required": ["absolute", "relative"],
    "additionalProperties": False,
    "properties": {"absolute": {"type": "string", "pattern": ISO}, "relative": {"type": "number", "minimum": 0}},
}
RELATIVE = {
    "type": "object",
    "required": ["relative"],
    "additionalProperties": False,
    "properties": {"relative": {"type": "number", "minimum": 0}},
}
ACTIONS = ["join", "leave", "update", "speech_on", "speech_off", "webcam_on", "webcam_off", "screenshare_on",
           "screenshare_off", "chat_message"]

PARTICIPANTS = {"type": "array", "items": PARTICIPANT}

PARTICIPANT_EVENTS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id", "action", "participant", "timestamp", "data"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "action": {"enum": ACTIONS},
            "participant": PARTICIPANT,
            "timestamp": STAMP,
            "data": {
                "oneOf": [
                    {"type": "null"},
                    {"type": "object", "required": ["text", "to"], "additionalProperties": False,
                     "properties": {"text": {"type": "string"}, "to": {"enum": ["everyone", "only_bot"]}}},
                ],
            },
        },
        # data is populated if (and only if) the action is a chat_message
        "if": {"properties": {"action": {"const": "chat_message"}}},
        "then": {"properties": {"data": {"type": "object"}}},
        "else": {"properties": {"data": {"type": "null"}}},
    },
}

SPEAKER_TIMELINE = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["participant", "start_timestamp", "end_timestamp"],
        "additionalProperties": False,
        "properties": {"participant": PARTICIPANT, "start_timestamp": STAMP, "end_timestamp": STAMP},
    },
}

TRANSCRIPT = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["participant", "words"],
        "additionalProperties": False,
        "properties": {
            "participant": {
                "type": "object",
                "required": ["id", "name"],
                "additionalProperties": False,
                "properties": {"id": {"type": "number"}, "name": {"type": ["string", "null"]}},
            },
            "words": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["text", "start_timestamp", "end_timestamp"],
                    "additionalProperties": False,
                    "properties": {"text": {"type": "string"}, "start_timestamp": RELATIVE, "end_timestamp": RELATIVE},
                },
            },
        },
    },
}

AUDIO_PARTS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id", "participant", "start_timestamp", "duration", "download_url"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "participant": PARTICIPANT,
            "start_timestamp": STAMP,
            "duration": {"type": "number", "minimum": 0},
            "download_url": {"type": "string", "pattern": "^https?://"},
        },
    },
}

_DATA = {  # the reference's one shape per part type
    "webhook": {"required": ["payload"], "properties": {"payload": {"type": "object"}}},
    "http_response": {"required": ["url", "status_code", "body"],
                      "properties": {"url": {"type": "string"}, "status_code": {"type": "integer"},
                                     "body": {"type": "object"}}},
    "websocket_message": {"required": ["url", "event", "payload"],
                          "properties": {"url": {"type": "string"}, "event": {"type": "string"},
                                         "payload": {"type": "object"}}},
}
PROVIDER_DATA = {
    "type": "object",
    "required": ["parts"],
    "additionalProperties": False,
    "properties": {"parts": {"type": "array", "items": {
        "type": "object",
        "required": ["id", "created_at", "source_audio", "type", "data"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "created_at": {"type": "string", "pattern": ISO},
            "source_audio": {
                "type": "object",
                "required": ["type", "offset", "participant"],
                "additionalProperties": False,
                "properties": {"type": {"enum": ["mixed", "separate"]}, "offset": {"type": "number", "minimum": 0},
                               "participant": {"oneOf": [PARTICIPANT, {"type": "null"}]}},
            },
            "type": {"enum": list(_DATA)},
            "data": {"type": "object"},
        },
        "allOf": [{"if": {"properties": {"type": {"const": kind}}},
                   "then": {"properties": {"data": {**shape, "type": "object", "additionalProperties": False}}}}
                  for kind, shape in _DATA.items()],
    }}},
}

DOWNLOADS = {"participants": PARTICIPANTS, "participant_events": PARTICIPANT_EVENTS,
             "speaker_timeline": SPEAKER_TIMELINE, "transcript": TRANSCRIPT, "audio_parts": AUDIO_PARTS,
             "transcript_provider_data": PROVIDER_DATA}
