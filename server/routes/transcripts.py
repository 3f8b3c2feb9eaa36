"""``/v1/transcripts``: create, list, read (with final segments), rename, delete."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol.messages import MAX_SAFE_ID
from server.features import exports
from server.features.speakers import named_segments
from server.http.auth import principal, require
from server.http.errors import ApiError
from server.http.visibility import visible_transcript
from server.routes.common import json_body, page_of, paging, patch_body, services
from server.storage.base import TRANSCRIPT_STATUSES

PUBLIC_FIELDS = ("id", "name", "status", "source_language", "created_at", "updated_at", "duration",
                 "participants", "summary")


class TranscriptCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=500)
    source_language: str | None = Field(default=None, max_length=16)


def _no_null_defaults(schema: dict[str, Any]) -> None:
    """Drop ``"default": null`` where null is not allowed: the description must not suggest sending it."""
    for prop in schema.get("properties", {}).values():
        if prop.get("default", 0) is None and "anyOf" not in prop:
            del prop["default"]


class TranscriptUpdate(BaseModel):
    """Only the fields sent change. ``null`` clears the language or the summary; name, status and participants
    cannot be null (leave them out to keep them), so the schema shows them without it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_null_defaults)
    name: Annotated[str, Field(min_length=1, max_length=500)] | SkipJsonSchema[None] = None
    source_language: str | None = Field(default=None, max_length=16)
    language: str | None = Field(default=None, max_length=16, description="alias of source_language")
    status: Literal[TRANSCRIPT_STATUSES] | SkipJsonSchema[None] = None  # type: ignore[valid-type]
    participants: list[dict[str, Any]] | SkipJsonSchema[None] = None
    summary: dict[str, Any] | str | None = None

    @field_validator("name", "status", "participants")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        """An explicit null for a field the store keeps NOT NULL is the client's mistake: a 422, not a 500."""
        if value is None:
            raise ValueError("may not be null (leave the field out to keep its value)")
        return value

    @field_validator("participants")
    @classmethod
    def _participant_ids(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        """An ``id`` names its participant in every export, kept as sent: text of at most 256 characters, or an
        integer JavaScript reads exactly (as a live stream's; not true/false, which Python counts as integers)."""
        for i, p in enumerate(value or []):
            pid = p.get("id")
            if pid is not None and (isinstance(pid, bool) or not isinstance(pid, str | int)
                                    or not 0 < len(str(pid)) <= exports.MAX_PARTICIPANT_ID
                                    or isinstance(pid, int) and not -MAX_SAFE_ID <= pid <= MAX_SAFE_ID):
                raise ValueError(f"participants[{i}].id must be text of 1-{exports.MAX_PARTICIPANT_ID} characters"
                                 f" or an integer within +-{MAX_SAFE_ID}")
        return value


def public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row.get(k) for k in PUBLIC_FIELDS}
    out["error"] = (row.get("meta") or {}).get("error")
    return out


async def load(request: Request) -> dict[str, Any]:
    return await visible_transcript(request)


async def create_transcript(request: Request) -> Response:
    body = await json_body(request, TranscriptCreate)
    row = await services(request).store.create_transcript(name=body.name, source_language=body.source_language,
                                                          owner=principal(request).user)
    return JSONResponse(public(row), status_code=201)


async def list_transcripts(request: Request) -> Response:
    page, size = paging(request)
    status = request.query_params.get("status")
    if status is not None and status not in TRANSCRIPT_STATUSES:
        raise ApiError(422, f"status must be one of {', '.join(TRANSCRIPT_STATUSES)}")
    items, total = await services(request).store.list_transcripts(
        page=page, size=size, status=status, search=request.query_params.get("search") or None,
        owner=principal(request).owner_filter)
    return JSONResponse(page_of([public(r) for r in items], total, page, size))


async def get_transcript(request: Request) -> Response:
    row = await load(request)
    out = public(row)
    segments = await named_segments(services(request).store, row)  # renamed speakers shown
    fmt = request.query_params.get("transcript_format")
    if fmt is None:
        out["segments"] = segments
        return JSONResponse(out)
    if fmt not in exports.FORMATS:
        raise ApiError(422, f"transcript_format must be one of {', '.join(exports.FORMATS)}")
    require(request, "export")
    body = exports.render(fmt, out if fmt == "json" else row, segments)  # json: public fields only
    if isinstance(body, dict):
        return JSONResponse(body)
    disposition = f'inline; filename="transcript-{row["id"]}.{exports.EXTENSIONS[fmt]}"'
    return Response(body, media_type=exports.FORMATS[fmt], headers={"Content-Disposition": disposition})


async def update_transcript(request: Request) -> Response:
    row = await load(request)
    fields = await patch_body(request, TranscriptUpdate)
    if "language" in fields:
        fields["source_language"] = fields.pop("language")
    if isinstance(fields.get("summary"), str):
        fields["summary"] = {"summary": fields["summary"]}
    updated = await services(request).store.update_transcript(row["id"], **fields)
    assert updated is not None
    return JSONResponse(public(updated))


async def delete_transcript(request: Request) -> Response:
    row = await load(request)
    svc = services(request)
    if svc.live.streams(row["id"]) or row["status"] == "live":  # on this node, or on another one
        raise ApiError(409, "transcript is being streamed; stop its publishers first", "TRANSCRIPT_LIVE")
    if svc.runner is not None:
        await svc.runner.cancel(row["id"])  # stop an upload/job/chunk being transcribed here (other nodes notice)
    await svc.store.delete_transcript(row["id"])
    await svc.audio.delete_prefix(row["id"])  # every audio file of it, in the bucket too
    svc.hub.forget(row["id"])
    return Response(status_code=204)


routes = [
    Route("/v1/transcripts/", list_transcripts, methods=["GET"]),
    Route("/v1/transcripts/", create_transcript, methods=["POST"]),
    Route("/v1/transcripts", list_transcripts, methods=["GET"]),
    Route("/v1/transcripts", create_transcript, methods=["POST"]),
    Route("/v1/transcripts/{transcript_id}", get_transcript, methods=["GET"]),
    Route("/v1/transcripts/{transcript_id}", update_transcript, methods=["PATCH"]),
    Route("/v1/transcripts/{transcript_id}", delete_transcript, methods=["DELETE"]),
]
