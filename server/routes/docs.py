"""``GET /v1/openapi.json`` and the interactive docs page at ``/docs`` (self-contained: no CDN, no assets)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from protocol import Word
from server.features.exports import FORMATS
from server.http.docs_page import DOCS_HTML
from server.http.errors import ApiError
from server.http.openapi import Page, Param, document, page_params
from server.routes.common import services
from server.routes.transcripts import TranscriptCreate, TranscriptUpdate
from server.storage.base import TRANSCRIPT_STATUSES


def docs_enabled(request: Request) -> bool:
    settings = services(request).settings
    return settings.api_docs == "on" or (settings.api_docs == "auto" and settings.auth_mode == "public")


async def openapi_json(request: Request) -> Response:
    """The OpenAPI 3.1 description of every route."""
    from server.http.openapi import build_spec

    spec = build_spec(request.app, services(request).settings.auth_mode)
    return JSONResponse(spec)


async def docs_page(request: Request) -> Response:
    """Interactive API docs (VOXLANE_API_DOCS; on by default in public mode)."""
    if not docs_enabled(request):
        raise ApiError(404, "the API docs are turned off on this server (VOXLANE_API_DOCS)", "NOT_FOUND")
    return HTMLResponse(DOCS_HTML, headers={"Cache-Control": "no-cache", "Content-Security-Policy":
                                            "default-src 'self'; style-src 'unsafe-inline'; script-src"
                                            " 'unsafe-inline'; connect-src 'self'"})


routes = [
    Route("/v1/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs_page, methods=["GET"]),
]

document("GET", "/v1/openapi.json", "This API description (OpenAPI 3.1)", "meta",
         responses={200: (None, "the OpenAPI document")})
document("GET", "/docs", "Interactive API docs", "meta", description="HTML; served when VOXLANE_API_DOCS allows.",
         responses={200: (None, "an HTML page")}, content_type="text/html")

# ------------------------------------------------------------ the core routes (documented here, served elsewhere)


class Health(BaseModel):
    status: str
    timestamp: float
    # with ?verbose=1 on a node that takes live streams: streams now, the measured capacity within
    # VOXLANE_LATENCY_TARGET_S, and how many more it admits (null: not known)
    live_streams: int | None = None
    live_capacity: int | None = None
    live_headroom: int | None = None


class Segment(BaseModel):
    id: str
    text: str
    speaker: str | None = Field(description="as shown: renamed through the transcript's `participants`")
    speaker_label: str | None = Field(default=None, description="the label the segment was stored with")
    participant_id: str | int | None = Field(description="the participant's id as it was sent (JSON type kept)")
    start: float
    end: float
    confidence: float | None
    words: list[Word]


class Transcript(BaseModel):
    id: str
    name: str
    status: str
    source_language: str | None
    created_at: str
    updated_at: str
    duration: float | None
    participants: list[dict[str, Any]] | None
    summary: dict[str, Any] | None
    error: str | None = None


class TranscriptDetail(Transcript):
    segments: list[Segment]


class TranscriptPage(Page[Transcript]):
    pass


V = "/v1/transcripts"
document("GET", "/health", "Health check", "meta", responses={200: (Health, "the server is up")})
document("GET", "/v1/protocol.json", "JSON Schema of the live WebSocket/data-channel messages", "meta",
         responses={200: (None, "JSON Schema")})
document("GET", V + "/", "List transcripts", "transcripts", responses={200: (TranscriptPage, "a page, newest first")},
         description="Only the caller's own transcripts (anonymous callers: those made anonymously).",
         query=[*page_params(),
                Param("status", "only this status", enum=TRANSCRIPT_STATUSES),
                Param("search", "words in the name or the final text")])
document("POST", V + "/", "Create a transcript", "transcripts", body=TranscriptCreate,
         responses={201: (Transcript, "created; stream to it, or upload a file")})
document("GET", V + "/{transcript_id}", "Read a transcript with its final segments", "transcripts",
         description="With `transcript_format`, the transcript rendered instead (needs the `export` scope in private"
                     " mode): text, text-timestamped, srt, webvtt-named (speaker voice tags), json (segments,"
                     " speakers, words, speaker timeline) or markdown.",
         responses={200: (TranscriptDetail, "the transcript")},
         query=[Param("transcript_format", "render as this format", enum=tuple(FORMATS))])
document("PATCH", V + "/{transcript_id}", "Update name, language, participants, summary, status", "transcripts",
         description="`participants` replaces the list. An entry `{\"id\", \"name\"}` whose id is a participant id"
                     " or a stored speaker label (`speaker_label`, e.g. `Speaker 1`) renames that speaker in every"
                     " read and export; stored segments keep their label.",
         body=TranscriptUpdate, responses={200: (Transcript, "the updated transcript")})
document("DELETE", V + "/{transcript_id}", "Delete a transcript, its segments and audio", "transcripts",
         responses={204: (None, "deleted"), 409: (None, "being streamed live")})
document("WEBSOCKET", "/v1/transcripts_websocket/{transcript_id}", "Live transcription (WebSocket)", "transcripts",
         description="Subscribe to a transcript's messages and optionally publish audio: send {\"action\":"
                     " \"start\", \"params\": {...}} then binary audio frames. Message shapes: /v1/protocol.json."
                     " Token as ?token= or the Authorization header; 4401/4404 close codes.",
         query=[Param("token", "bearer token (or the Authorization header)")])
