"""``GET /v1/transcripts/{id}/unredacted``: the text as spoken of a redacted transcript, for its owner alone.

The auth middleware already demands the ``transcripts:unredacted`` scope (granted only by name: never to an
anonymous caller, nor to a JWT that names no scope) and answers 404 for a transcript that is not the caller's.
An anonymous caller in public mode owns nothing here: transcripts without an owner have no unredacted reader.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.http.auth import principal
from server.http.errors import ApiError
from server.http.openapi import Param, document
from server.http.visibility import visible_transcript
from server.routes.common import page_of, paging, services

PATH = "/v1/transcripts/{transcript_id}/unredacted"


async def unredacted(request: Request) -> Response:
    row = await visible_transcript(request)
    if principal(request).user is None or row.get("owner") != principal(request).user:
        raise ApiError(404, "transcript not found", "TRANSCRIPT_NOT_FOUND", {"transcript_id": row["id"]})
    page, size = paging(request, 200, 1000)
    items, total = await services(request).store.get_unredacted(row["id"], page=page, size=size)
    body = page_of(items, total, page, size)
    body["kept"] = services(request).settings.keep_unredacted == "on"
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


routes = [Route(PATH, unredacted, methods=["GET"])]
document("GET", PATH, "The text as spoken of a redacted transcript", "transcripts",
         description="Each segment the correction pass redacted, as it was spoken (id, start, end, text, words), in"
                     " time order. Kept only while VOXLANE_KEEP_UNREDACTED is on (``kept`` says whether it is now);"
                     " readable only by the transcript's owner with the ``transcripts:unredacted`` scope: anyone"
                     " else gets 404, a token without the scope 403.",
         query=[Param("page", "page number", "integer", minimum=1, maximum=1_000_000),
                Param("size", "segments per page", "integer", minimum=1, maximum=1000)])
