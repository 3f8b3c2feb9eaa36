"""A transcript's speakers and diarized turns, as stored after the stream's offline pass."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.features.speakers import speaker_names
from server.http.openapi import document
from server.routes.exports_api import _visible_transcript


async def speakers(request: Request) -> Response:
    row = await _visible_transcript(request, request.path_params["transcript_id"])
    names = speaker_names(row)
    stored = (row.get("meta") or {}).get("diarization") or {}
    turns = [{**t, "name": names.get(t["speaker"], t["speaker"])} for t in stored.get("turns") or []]
    labels = sorted({t["speaker"] for t in turns}, key=lambda s: (len(s), s))
    return JSONResponse({
        "speakers": [{"label": lb, "name": names.get(lb, lb), "seconds": round(sum(
            t["end"] - t["start"] for t in turns if t["speaker"] == lb), 3)} for lb in labels],
        "turns": turns, "pass": stored.get("pass")})


PATH = "/v1/transcripts/{transcript_id}/speakers"
routes = [Route(PATH, speakers, methods=["GET"])]
document("GET", PATH, "Diarized speakers and their turns", "transcripts",
         description="Speaker labels (renamed through the transcript's `participants`), seconds spoken, and the"
                     " speaker turns of a mixed stream after its end-of-stream re-clustering. Empty for"
                     " participant streams, which need no diarization.")
