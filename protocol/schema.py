"""JSON Schema of the live protocol, generated from :mod:`protocol.messages`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, create_model

from protocol.messages import CLIENT_ACTIONS, SERVER_BODIES


def _server_envelopes() -> list[type[BaseModel]]:
    models = []
    for body in SERVER_BODIES:
        models.append(create_model(  # one envelope model per message type
            f"{body.__name__}Message",
            type=(Literal[body.TYPE], ...),
            data=(body, ...),
        ))
    return models


def protocol_schema() -> dict[str, Any]:
    """One document: ``server_messages`` (oneOf by ``type``) and ``client_messages`` (by ``action``)."""
    defs: dict[str, Any] = {}

    def add(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
        return {"$ref": f"#/$defs/{model.__name__}"}

    server = [add(m) for m in _server_envelopes()]
    client = [add(m) for m in CLIENT_ACTIONS.values()]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "voxlane live protocol",
        "description": "Server -> client: {type, data}. Client -> server text frames: {action, params}; "
                       "binary frames after 'start' carry audio in the declared format.",
        "oneOf": [{"$ref": "#/$defs/ServerMessage"}, {"$ref": "#/$defs/ClientMessage"}],
        "$defs": {
            **defs,
            "ServerMessage": {"oneOf": server},
            "ClientMessage": {"oneOf": client},
        },
    }
