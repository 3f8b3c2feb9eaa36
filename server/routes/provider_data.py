"""``GET /v1/transcripts/{id}/download/transcript_provider_data``: the meeting-bot schemas' provider data.

The body is the schema's ``{"parts": [...]}`` and nothing else, so paging travels in the query (``page``,
``size``) and in headers: ``X-Total-Count`` and an RFC 8288 ``Link`` to the next page while there is one. The
export scope reads it, as every meeting download (see :data:`server.http.scopes._EXPORT_PATH`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.features.exports.provider_data import provider_data_parts
from server.http.openapi import Param, document
from server.routes.common import paging, public_base, services
from server.routes.exports_api import TAG, MeetingParticipant, meeting_of

PATH = "/v1/transcripts/{transcript_id}/download/transcript_provider_data"
PAGE_SIZE = 200
MAX_PAGE_SIZE = 1000
"""A part carries a final's words: a thousand of them is a few megabytes at most."""


class SourceAudio(BaseModel):
    type: Literal["mixed", "separate"]
    offset: float
    participant: MeetingParticipant | None


class ProviderPart(BaseModel):
    id: str
    created_at: str
    source_audio: SourceAudio
    type: Literal["webhook", "http_response", "websocket_message"]
    data: dict[str, Any]


class ProviderData(BaseModel):
    parts: list[ProviderPart]


async def download_provider_data(request: Request) -> Response:
    """One page of the parts, oldest first."""
    page, size = paging(request, PAGE_SIZE, MAX_PAGE_SIZE)
    row, segments, roster = await meeting_of(request)
    svc = services(request)
    recorded = bool(await svc.store.list_chunks(transcript_id=row["id"], limit=1))
    base = public_base(request)
    chosen = segments[(page - 1) * size:page * size]
    body = {"parts": provider_data_parts(row, chosen, roster, live=not recorded, base_url=base)}
    headers = {"X-Total-Count": str(len(segments))}
    if page * size < len(segments):
        headers["Link"] = f'<{request.url.include_query_params(page=page + 1, size=size)}>; rel="next"'
    return JSONResponse(body, headers=headers)


routes = [Route(PATH, download_provider_data, methods=["GET"])]

document("GET", PATH, "Meeting download: transcript provider data", TAG,
         description="Each final transcription message, as it went out: a live stream's on its WebSocket"
                     " (`websocket_message`), a recorded file's over HTTP (`http_response`); `separate` source"
                     " audio names its participant. Paged: `X-Total-Count`, and a `Link` header with rel=\"next\""
                     " while more parts follow.",
         responses={200: (ProviderData, "one page of parts")},
         query=[Param("page", "page number, from 1", "integer", minimum=1, maximum=1_000_000),
                Param("size", f"parts per page (default {PAGE_SIZE})", "integer", minimum=1, maximum=MAX_PAGE_SIZE)])
