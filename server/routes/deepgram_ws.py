"""``WS /v1/listen``: Deepgram's live transcription. What a session does is described in
server.transports.deepgram; the query parameters are read in protocol.deepgram."""

from __future__ import annotations

import contextlib
from importlib import metadata
from pathlib import Path

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from protocol import ErrorCode
from protocol.close import CLOSE_FORBIDDEN, CLOSE_POLICY, CLOSE_TRY_AGAIN
from protocol.deepgram import DgError, ParamError, model_info, parse_listen_params, wire
from server.http.auth import can_publish, principal
from server.http.openapi import Param, document
from server.routes.common import services
from server.routes.parts import NodeParts
from server.transports.deepgram import DeepgramSession
from server.transports.deepgram_inbound import protocol_refusal

TAG = "deepgram-compatible"
TOKEN_PROTOCOL = "token"
"""Browsers cannot set headers: Deepgram's clients offer the subprotocols ``token`` and the key."""


def served_model(svc: NodeParts):
    """(ModelInfo, model uuid) of the model this server transcribes with."""
    try:
        version = metadata.version("voxlane")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        version = "0.0.0"
    return model_info(Path(svc.settings.model).name, version)


def _refusal(ws: WebSocket, svc: NodeParts) -> tuple[int, DgError] | None:
    """Why this connection is not served (checked before a transcript is made for it)."""
    if not can_publish(ws):
        return CLOSE_FORBIDDEN, DgError(variant=ErrorCode.INSUFFICIENT_SCOPE.value, description=(
            "a live transcription sends audio: it needs a token with the 'transcripts:write' scope"))
    refusal = svc.admission.check_live() if svc.admission is not None else None
    if refusal is not None:
        svc.admission.count(refusal)  # type: ignore[union-attr]
        return CLOSE_TRY_AGAIN, protocol_refusal(refusal.protocol_error())
    return None


async def _refuse(ws: WebSocket, code: int, error: DgError) -> None:
    with contextlib.suppress(Exception):
        await ws.send_text(wire(error))
        await ws.close(code=code, reason=error.description[:120])


async def listen_websocket(ws: WebSocket) -> None:
    """Deepgram live transcription (WebSocket)."""
    svc = services(ws)
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol=TOKEN_PROTOCOL if TOKEN_PROTOCOL in offered else None)  # never echo the key
    try:
        params = parse_listen_params(ws.query_params.multi_items(), live=True)
    except ParamError as exc:
        await _refuse(ws, CLOSE_POLICY, DgError(variant="INVALID_PARAMS", description=str(exc)))
        return
    refusal = _refusal(ws, svc)
    if refusal is not None:
        await _refuse(ws, *refusal)
        return
    row = await svc.store.create_transcript(name="Deepgram live transcription", owner=principal(ws).user,
                                            source_language=params.language)
    info, uuid = served_model(svc)
    try:
        await DeepgramSession(ws, svc, row["id"], params, info, uuid).run()
    except WebSocketDisconnect:
        pass


routes = [WebSocketRoute("/v1/listen", listen_websocket)]

LIVE_QUERY = [
    Param("encoding", "linear16, mulaw, alaw, opus, flac; left out: a container (WAV, Ogg, WebM, MP3, FLAC, ...)"),
    Param("sample_rate", "Hz of raw audio (8000-48000); required with linear16, mulaw and alaw", "integer",
          minimum=8000, maximum=48000),
    Param("channels", "channels of raw audio (1-8)", "integer", minimum=1, maximum=8),
    Param("multichannel", "true: each channel transcribed on its own (channel_index says which)", "boolean"),
    Param("interim_results", "true: the words not yet final come as is_final=false Results", "boolean"),
    Param("punctuate", "true: transcript and punctuated_word keep case and punctuation", "boolean"),
    Param("smart_format", "as punctuate (numbers are written as the model writes them)", "boolean"),
    Param("diarize", "true: speaker labels (integers) on the words of a mixed stream", "boolean"),
    Param("vad_events", "true: SpeechStarted messages", "boolean"),
    Param("utterance_end_ms", "1000-5000: an UtteranceEnd after each utterance (voxlane's VAD decides the pause)",
          "integer", minimum=1000, maximum=5000),
    Param("endpointing", "accepted (false or 0-10000 ms); voxlane's VAD ends utterances"),
    Param("language", "BCP-47 tag (en, en-US, ...; multi: detect); its primary subtag goes to the model"),
    Param("model", "accepted and reported back; the server's model transcribes"),
    Param("keyterm", "a key term (repeat for more; at most 100 of 50 characters)"),
    Param("keywords", "as keyterm (a :boost suffix is dropped)"),
    Param("token", "a voxlane token (or Authorization: Token|Bearer <token>)"),
]

document("WEBSOCKET", "/v1/listen", "Deepgram live transcription (WebSocket)", TAG,
         description="Deepgram's live API: point a Deepgram client (deepgram-sdk, LiveKit's or Pipecat's Deepgram"
                     " STT) at this server's base URL. Binary messages are audio; text messages KeepAlive, Finalize,"
                     " CloseStream. Server messages: Results, SpeechStarted, UtteranceEnd, Metadata, Error."
                     " metadata.request_id is the voxlane transcript that records the stream. Sending audio needs"
                     " `transcripts:write` (closed with 4403 without it); a bad parameter is an Error, then close"
                     " 1008.", query=LIVE_QUERY)
