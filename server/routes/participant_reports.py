"""The participant report endpoints: a participant reads their own conversation's report, and leaves notifications.

The portal's finish and report screens read these without an account, as the rest of the participant API: the
project id and the conversation id together are the capability, and a conversation is only found under its own
project (any other pair gives the same 404, so no endpoint tells whether another participant's conversation
exists). A project offers reports only when its portal says so (``portal.participant_report``).

The unsubscribe link is signed for its one conversation and does not expire: it is sent in mail, read whenever.
It is a POST (a mail scanner that fetches every link must not unsubscribe anyone); the portal's page posts it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.features.reports import conversation_pdf
from server.features.speakers import named_segments
from server.http.errors import ApiError
from server.http.openapi import Param, document
from server.routes.common import public_base, rest_of, services
from server.routes.participant import per_address
from server.routes.participant_schemas import TAG
from server.storage.base import utcnow

UNSUBSCRIBE = "unsubscribe"
P = "/api/participant"
REPORT = P + "/projects/{project_id}/conversations/{conversation_id}/report"


class ReportSegment(BaseModel):
    start: float
    end: float
    speaker: str | None
    text: str


class Artifact(BaseModel):
    type: str = Field(description="pdf")
    media_type: str
    url: str


class Notifications(BaseModel):
    subscribed: bool = Field(description="False once the participant unsubscribed")
    unsubscribe_url: str = Field(description="POST here to stop notifications (signed for this conversation)")


class ParticipantReport(BaseModel):
    conversation_id: str
    project_id: str
    name: str | None
    status: str = Field(description="pending (still transcribing or summarising) | ready | failed")
    created_at: str
    duration: float | None
    summary: dict[str, Any] | None = Field(description="The conversation's summary: summary, key points, topics,"
                                                       " action items")
    transcript: list[ReportSegment]
    artifacts: list[Artifact] = Field(description="Downloads of the report, once it is ready")
    notifications: Notifications


class Unsubscribed(BaseModel):
    conversation_id: str
    subscribed: bool


async def _reported(request: Request) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(project, conversation, transcript) of the path, or 404."""
    store = services(request).store
    pid, cid = request.path_params["project_id"], request.path_params["conversation_id"]
    project = await store.get_project(pid)
    conv = await store.get_conversation(cid)
    if project is None or conv is None or conv["project_id"] != project["id"]:
        raise ApiError(404, "conversation not found", "CONVERSATION_NOT_FOUND")
    if not (project.get("portal") or {}).get("participant_report"):
        raise ApiError(404, "this project offers no participant reports", "REPORT_NOT_ENABLED")
    return project, conv, await store.get_transcript(cid)


def unsubscribe_url(request: Request, conversation_id: str) -> str:
    sig = rest_of(request).signer.sign_link(UNSUBSCRIBE, conversation_id)
    return f"{public_base(request)}{P}/conversations/{conversation_id}/unsubscribe?signature={sig}"


def _status(transcript: dict[str, Any] | None) -> str:
    if transcript is None or transcript["status"] == "failed":
        return "failed"
    return "ready" if transcript["status"] == "completed" and transcript.get("summary") else "pending"


async def _report(request: Request) -> ParticipantReport:
    project, conv, transcript = await _reported(request)
    segments = await named_segments(services(request).store, transcript) if transcript else []
    status = _status(transcript)
    path = REPORT.format(project_id=project["id"], conversation_id=conv["id"])
    artifacts = [Artifact(type="pdf", media_type="application/pdf", url=f"{public_base(request)}{path}.pdf")] \
        if status == "ready" else []
    meta = (transcript or {}).get("meta") or {}
    out = ParticipantReport(
        conversation_id=conv["id"], project_id=project["id"], name=conv.get("name"), status=status,
        created_at=conv["created_at"], duration=(transcript or {}).get("duration"),
        summary=(transcript or {}).get("summary"),
        transcript=[ReportSegment(start=s["start"], end=s["end"], speaker=s.get("speaker"), text=s["text"])
                    for s in segments],
        artifacts=artifacts,
        notifications=Notifications(subscribed=not (meta.get("notifications") or {}).get("unsubscribed_at"),
                                    unsubscribe_url=unsubscribe_url(request, conv["id"])))
    return out


async def get_report(request: Request) -> Response:
    """The participant's own conversation report: summary, transcript, artifacts, notification state."""
    return JSONResponse((await _report(request)).model_dump())


async def get_report_pdf(request: Request) -> Response:
    """The report as a PDF, once it is ready (409 before)."""
    report = await _report(request)
    if report.status != "ready":
        raise ApiError(409, f"the report is {report.status}, not ready", "REPORT_NOT_READY", {"status": report.status})
    body = await asyncio.to_thread(conversation_pdf, report.model_dump())
    name = f"conversation-{report.conversation_id}.pdf"
    return Response(body, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def unsubscribe(request: Request) -> Response:
    """Stop this conversation's notifications to its participant (idempotent)."""
    cid = request.path_params["conversation_id"]
    if not rest_of(request).signer.verify_link(UNSUBSCRIBE, cid, request.query_params.get("signature", "")):
        raise ApiError(403, "this unsubscribe link is not valid", "BAD_SIGNATURE")
    store = services(request).store
    if await store.get_conversation(cid) is None:
        raise ApiError(404, "conversation not found", "CONVERSATION_NOT_FOUND")

    def unsubscribed(meta: dict[str, Any]) -> dict[str, Any]:
        notes = dict(meta.get("notifications") or {})
        notes.setdefault("unsubscribed_at", utcnow())
        return {**meta, "notifications": notes}

    await store.edit_transcript_meta(cid, unsubscribed)
    return JSONResponse(Unsubscribed(conversation_id=cid, subscribed=False).model_dump())


routes = [
    Route(REPORT, per_address(get_report), methods=["GET"]),
    Route(REPORT + ".pdf", per_address(get_report_pdf), methods=["GET"]),
    Route(P + "/conversations/{conversation_id}/unsubscribe", per_address(unsubscribe), methods=["POST"]),
]

document("GET", REPORT, "A participant's conversation report", TAG,
         description="Only where the project's portal enables `participant_report` (404 otherwise). `status` is"
                     " `pending` until the conversation is transcribed and summarised; then `artifacts` lists the"
                     " PDF. `notifications.unsubscribe_url` is the participant's signed unsubscribe link.",
         responses={200: (ParticipantReport, "the report")})
document("GET", REPORT + ".pdf", "A participant's conversation report (PDF)", TAG,
         description="409 `REPORT_NOT_READY` until the report's `status` is `ready`.",
         responses={200: (None, "the PDF")}, content_type="application/pdf")
document("POST", P + "/conversations/{conversation_id}/unsubscribe", "Unsubscribe from notifications", TAG,
         description="The signed link of the report's `notifications.unsubscribe_url`; 403 when the signature"
                     " does not match. Idempotent.",
         responses={200: (Unsubscribed, "notifications stopped")},
         query=[Param("signature", "the link's signature", required=True)])
