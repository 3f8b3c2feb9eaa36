"""WebRTC signalling: ``POST /v1/transcripts_webrtc/{id}/offer`` and ``POST /v1/transcripts_webrtc/{id}/answer``.

The handshakes and what a connection does are described in server.transports.webrtc.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from media.ice import SdpError
from server.http.admission import api_error
from server.http.auth import WRITE, can_publish, principal, require
from server.http.errors import ApiError
from server.http.visibility import visible_transcript
from server.routes.common import json_body, services
from server.transports.webrtc import MAX_SESSIONS, WebRtcRegistry, WebRtcSession

T = TypeVar("T")
MAX_BODY_BYTES = 256 * 1024


# ---------------------------------------------------------------- HTTP


class OfferBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["offer", "request"] = "request"
    sdp: str | None = Field(default=None, max_length=MAX_BODY_BYTES)

    @model_validator(mode="after")
    def _sdp_for_offers(self) -> OfferBody:
        if self.type == "offer" and not (self.sdp or "").strip():
            raise ValueError("an offer needs its sdp")
        return self


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    session_id: str = Field(min_length=1, max_length=100)
    type: Literal["answer"] = "answer"
    sdp: str = Field(min_length=1, max_length=MAX_BODY_BYTES)


def registry(request: Request) -> WebRtcRegistry:
    return request.app.state.webrtc


async def _checked(request: Request, model: type[Any]) -> tuple[str, Any]:
    transcript_id = request.path_params["transcript_id"]
    require(request, WRITE)  # a connection publishes audio (the auth middleware checks this first)
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise ApiError(413, f"session descriptions are limited to {MAX_BODY_BYTES} bytes")
    await visible_transcript(request, transcript_id)
    return transcript_id, await json_body(request, model)


async def _handshake(session: WebRtcSession, step: Awaitable[T], what: str) -> T:
    """One signalling step: a bad description closes the session and answers 400; anything else
    closes it too, so no half-open peer connection is left behind."""
    try:
        return await step
    except SdpError as exc:
        await session.close(f"invalid {what}")
        raise ApiError(400, str(exc), "INVALID_SDP") from None
    except BaseException:
        session.close("handshake failed")
        raise


async def offer(request: Request) -> Response:
    transcript_id, body = await _checked(request, OfferBody)
    reg = registry(request)
    if len(reg) >= MAX_SESSIONS:
        raise ApiError(503, "too many WebRTC connections; try again later", "OVERLOADED")
    admission = services(request).admission
    if admission is None:
        return await _offer(reg, request, transcript_id, body)
    refusal = admission.check_live() if can_publish(request) else None  # before building a peer connection
    refusal = refusal or admission.check_pending_offers(reg.pending_callers())
    if refusal is not None:
        raise api_error(admission.count(refusal))  # 503 OVERLOADED or 429 RATE_LIMITED, with Retry-After
    with admission.offer_slot():
        return await _offer(reg, request, transcript_id, body)


async def _offer(reg: WebRtcRegistry, request: Request, transcript_id: str, body: OfferBody) -> Response:
    grant = principal(request).meeting
    session = WebRtcSession(reg, transcript_id, may_publish=can_publish(request),
                            participant=grant.participant if grant is not None else None)
    reg.add(session)
    step = session.accept_offer(body.sdp) if body.type == "offer" else session.create_offer()
    desc = await _handshake(session, step, "offer")
    return JSONResponse({"type": desc.type, "sdp": desc.sdp, "session_id": session.id})


async def answer(request: Request) -> Response:
    transcript_id, body = await _checked(request, AnswerBody)
    reg = registry(request)
    session = reg.get(body.session_id)
    holder = reg.holder(body.session_id)
    if session is None and holder is not None and holder != reg.tag:
        raise ApiError(421, "this WebRTC session was offered by another node of this deployment, which holds its peer"
                       " connection: the load balancer must send a transcript's offer and answer to one node (route"
                       " /v1/transcripts_webrtc/{transcript_id}/ by transcript id; see docs/deployment.md)",
                       "WEBRTC_SESSION_ELSEWHERE", {"session_id": body.session_id, "node": holder})
    if session is None or session.transcript_id != transcript_id or session.closing:
        raise ApiError(404, "no WebRTC session with this id is waiting for an answer (it expired, closed, or was"
                       " never offered for this transcript)", "WEBRTC_SESSION_NOT_FOUND",
                       {"session_id": body.session_id})
    if session.pc.signalingState != "have-local-offer":
        raise ApiError(409, "this session's offer was already answered", details={"session_id": session.id})
    await _handshake(session, session.accept_answer(body.sdp), "answer")
    return JSONResponse({"session_id": session.id, "connection_state": session.connection_state})


routes = [
    Route("/v1/transcripts_webrtc/{transcript_id}/offer", offer, methods=["POST"]),
    Route("/v1/transcripts_webrtc/{transcript_id}/answer", answer, methods=["POST"]),
]
