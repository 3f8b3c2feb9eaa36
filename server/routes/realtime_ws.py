"""``WS /v1/realtime?intent=transcription``: the OpenAI Realtime API's transcription sessions.

What a session does, event by event, is described in server.transports.realtime.
"""


from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from protocol import ErrorCode, ProtocolError
from protocol.close import CLOSE_FORBIDDEN, CLOSE_POLICY, CLOSE_TRY_AGAIN
from protocol.realtime import (
    error_event,
)
from server.features.openai_models import ModelMap, ModelNotServed
from server.http.auth import can_publish, principal
from server.http.openapi import Param, document
from server.routes.common import services
from server.routes.parts import NodeParts
from server.transports.realtime import (
    MAX_MODEL_CHARS,
    MODEL_NOT_AVAILABLE,
    CloseWith,
    RealtimeSession,
    refusal_error,
)

log = logging.getLogger("voxlane.realtime")


# ---------------------------------------------------------------- the route


def _refusal(ws: WebSocket, svc: NodeParts, model: str | None) -> CloseWith | None:
    """Why this connection is not served (checked before a transcript is made for it)."""
    query = ws.query_params
    if query.get("intent") != "transcription" or query.get("call_id") is not None:
        return CloseWith(CLOSE_POLICY, error_event(
            "UNSUPPORTED_SESSION", "voxlane serves Realtime transcription sessions only: connect with"
            " ?intent=transcription (conversations, responses and calls are not served)"), "transcription only")
    if model is not None and len(model) > MAX_MODEL_CHARS:
        return CloseWith(CLOSE_POLICY, error_event("INVALID_PARAMS", f"model is longer than {MAX_MODEL_CHARS}"
                                                " characters"), "invalid model")
    if model is not None:
        try:
            ModelMap.of(svc.settings).resolve(model)
        except ModelNotServed as exc:
            return CloseWith(CLOSE_POLICY, error_event(MODEL_NOT_AVAILABLE, str(exc)), "model not available")
    if not can_publish(ws):
        return CloseWith(CLOSE_FORBIDDEN, error_event(
            ErrorCode.INSUFFICIENT_SCOPE.value, "a transcription session sends audio: it needs a token with the"
            " 'transcripts:write' scope"), "insufficient scope")
    refusal = svc.admission.check_live() if svc.admission is not None else None
    if refusal is not None:
        svc.admission.count(refusal)  # type: ignore[union-attr]
        return CloseWith(CLOSE_TRY_AGAIN, refusal_error(refusal.protocol_error()).event(), refusal.code.value)
    return None


async def realtime_websocket(ws: WebSocket) -> None:
    """OpenAI Realtime transcription session (WebSocket)."""
    svc = services(ws)
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol="realtime" if "realtime" in offered else None)  # browsers offer it; never the key
    model = ws.query_params.get("model")
    refusal = _refusal(ws, svc, model)
    if refusal is not None:
        with contextlib.suppress(Exception):
            await ws.send_text(refusal.event.wire())
            await ws.close(code=refusal.code, reason=refusal.reason)
        return
    row = await svc.store.create_transcript(name="Realtime transcription", owner=principal(ws).user)
    held = contextlib.ExitStack()
    try:
        if svc.admission is not None:  # the session holds one of its token's and address's stream slots until it ends
            held.enter_context(svc.admission.open_session(row["id"]))
    except ProtocolError as exc:
        await svc.store.delete_transcript(row["id"])
        with contextlib.suppress(Exception):
            await ws.send_text(refusal_error(exc).event().wire())
            await ws.close(code=CLOSE_TRY_AGAIN, reason=exc.code.value)
        return
    session = RealtimeSession(ws, svc, row["id"], model or Path(svc.settings.model).name)
    with held, contextlib.suppress(WebSocketDisconnect):
        await session.run()


routes = [WebSocketRoute("/v1/realtime", realtime_websocket)]

document("WEBSOCKET", "/v1/realtime", "OpenAI Realtime transcription session (WebSocket)", "openai-compatible",
         description="The OpenAI Realtime API's transcription sessions: point an OpenAI client's base URL at /v1 and"
                     " connect with ?intent=transcription. Client events: session.update (session.type"
                     " `transcription`; audio/pcm 24 kHz, audio/pcmu, audio/pcma), input_audio_buffer.append, .commit,"
                     " .clear. Server events: session.created/updated, input_audio_buffer.speech_started/stopped,"
                     " .committed, .cleared, conversation.item.added/done,"
                     " conversation.item.input_audio_transcription.delta/completed, error. session.id is the voxlane"
                     " transcript that records the session. Sending audio needs `transcripts:write` (a token without"
                     " it is closed with 4403).",
         query=[Param("intent", "must be `transcription`", required=True, enum=("transcription",)),
                Param("model", "an OpenAI transcription id or another id of GET /v1/models (VOXLANE_OPENAI_MODELS),"
                               " echoed as the session's transcription model; any other name is refused with"
                               " MODEL_NOT_AVAILABLE"),
                Param("token", "bearer token (or the Authorization header)")])
