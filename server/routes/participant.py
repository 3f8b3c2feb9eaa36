"""``/api/participant``: kiosks record into a project without an account; the project id is the capability.

A conversation is a transcript. A kiosk records ~30 s chunks; per chunk it asks for an upload URL (a
signed, expiring, single-use URL to this server's own PUT route, rate limited per conversation; with an S3 audio
store, a presigned URL of the bucket: :mod:`server.routes.participant_uploads`), PUTs the bytes (stored before
the answer), then confirms the key, which enqueues the chunk for transcription.
Chunks may arrive and be confirmed in any order and at once; each is transcribed once, on its own, and
merged into the conversation in index order with continuous timestamps (see :mod:`server.jobs.merge`).
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.features.speakers import named_segments
from server.http.addresses import address_key
from server.http.errors import ApiError
from server.http.openapi import AudioBytes, Param, document
from server.http.rate_limit import RateLimiter
from server.http.uploads import receive_for_store
from server.jobs.merge import settle_job
from server.jobs.recorded import transcribe_job
from server.pipeline.recordings import chunk_key
from server.routes.common import json_body, public_base, rest_of, services
from server.routes.participant_schemas import (
    Chunk,
    ChunkCounts,
    ChunkReceived,
    ConfirmUpload,
    Conversation,
    ConversationState,
    Initiate,
    MergedSegment,
    StorageCheck,
    UploadUrl,
    UploadUrlRequest,
)
from server.routes.participant_uploads import check_direct_upload, chunk_extension, storage_check
from server.routes.projects import ProjectPublic, public_project
from server.storage.base import UNCONFIRMED, utcnow

TAG = "participant"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
OPEN_CONVERSATION_IDLE = timedelta(hours=24)
"""An unfinished conversation with no new chunk for this long no longer counts as open (a kiosk that never
called finish must not lock its project out for good)."""


# ------------------------------------------------------------ helpers


async def load_conversation(request: Request) -> dict[str, Any]:
    conv = await services(request).store.get_conversation(request.path_params["conversation_id"])
    if conv is None:
        raise ApiError(404, "conversation not found", "CONVERSATION_NOT_FOUND")
    return conv


def chunk_out(row: dict[str, Any]) -> dict[str, Any]:
    return Chunk(id=row["id"], key=row.get("upload_key"), index=row["index"], status=row["status"],
                 text=row.get("text"), error=row.get("error"), duration=row.get("duration"),
                 offset=row.get("offset"), created_at=row["created_at"], updated_at=row["updated_at"]).model_dump()


async def conversation_state(request: Request, conv: dict[str, Any]) -> dict[str, Any]:
    store = services(request).store
    transcript = await store.get_transcript(conv["id"])
    chunks = await store.list_chunks(transcript_id=conv["id"], kind="chunk")
    counts = {s: sum(1 for c in chunks if c["status"] == s) for s in ("uploaded", "processing", "transcribed",
                                                                    "failed")}
    segments = await named_segments(store, transcript or {"id": conv["id"]})
    return ConversationState(
        id=conv["id"], project_id=conv["project_id"], name=conv.get("name"),
        status=(transcript or {}).get("status", "failed"), finished=conv.get("finished_at") is not None,
        finished_at=conv.get("finished_at"), created_at=conv["created_at"],
        duration=(transcript or {}).get("duration"), chunks=ChunkCounts(total=sum(counts.values()), **counts),
        text=" ".join(s["text"] for s in segments),
        segments=[MergedSegment(id=s["id"], start=s["start"], end=s["end"], text=s["text"], speaker=s.get("speaker"))
                  for s in segments]).model_dump()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def client_address(request: Request) -> str:
    """The ASGI peer address: X-Forwarded-For is only honoured where uvicorn was told to trust the proxy that
    sent it (``--forwarded-allow-ips``), in which case uvicorn has already put the client's address here."""
    if request.client is None:
        return "unknown"
    return address_key(request.client.host, services(request).settings.ipv6_prefix_length)


async def check_rate(limiter: RateLimiter, key: str, what: str) -> None:
    """429 ``RATE_LIMITED`` with ``Retry-After`` once ``key`` used up ``limiter``'s allowance (on every node)."""
    wait = await limiter.hit(key)
    if wait is not None:
        raise ApiError(429, f"at most {limiter.limit} {what} per minute; retry in {wait} s", "RATE_LIMITED",
                       {"retry_after": wait, "limit": limiter.limit}, headers={"Retry-After": str(wait)})


def per_address(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Every participant API route counts against its caller's address (VOXLANE_RATE_PER_ADDRESS): the API
    needs no account, so a new conversation or project id must not buy a fresh allowance."""

    @functools.wraps(endpoint)
    async def limited(request: Request) -> Response:
        await check_rate(rest_of(request).address_rate, client_address(request), "participant API requests per address")
        return await endpoint(request)

    return limited


# ------------------------------------------------------------ routes


async def get_public_project(request: Request) -> Response:
    """Public project metadata for the recorder's start screen."""
    row = await services(request).store.get_project(request.path_params["project_id"])
    if row is None:
        raise ApiError(404, "project not found", "PROJECT_NOT_FOUND")
    return JSONResponse(public_project(row))


async def initiate(request: Request) -> Response:
    """Start a conversation in a project."""
    body = await json_body(request, Initiate)
    svc = services(request)
    store = svc.store
    project = await store.get_project(body.project_id)
    if project is None:
        raise ApiError(404, "project not found", "PROJECT_NOT_FOUND")
    await check_rate(rest_of(request).project_rate, project["id"], "conversation starts and upload URLs per project")
    portal = project.get("portal") or {}
    name = (body.name or "").strip() or None
    email = (body.email or "").strip() or None
    errors = []
    if portal.get("ask_name") and not name:
        errors.append({"loc": "name", "msg": "this project asks for the participant's name"})
    if portal.get("ask_email") and not email:
        errors.append({"loc": "email", "msg": "this project asks for the participant's email"})
    if email and not _EMAIL.match(email):
        errors.append({"loc": "email", "msg": "not an email address"})
    if errors:
        raise ApiError(422, "; ".join(f"{e['loc']}: {e['msg']}" for e in errors), details={"errors": errors})
    limit = svc.settings.max_open_conversations
    # counted and added to under one lock across every node of the database, and the conversation with its
    # transcript in one transaction (a crash leaves neither without the other)
    async with store.transaction():
        await store.lock(f"open-conversations:{project['id']}")
        since = (datetime.now(UTC) - OPEN_CONVERSATION_IDLE).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if await store.count_open_conversations(project["id"], since) >= limit:
            raise ApiError(429, f"the project already has {limit} unfinished conversations: finish some first",
                           "RATE_LIMITED", {"max_open_conversations": limit}, headers={"Retry-After": "60"})
        transcript = await store.create_transcript(
            name=f"{project['title']}: {name or 'conversation'}"[:500], source_language=project.get("language"),
            owner=project.get("owner"))
        conv = await store.create_conversation(transcript_id=transcript["id"], project_id=project["id"], name=name,
                                               email=email, tags=body.tag_id_list, source=body.source)
    out = Conversation(id=conv["id"], project_id=conv["project_id"], name=name, email=email,
                       tag_id_list=conv.get("tags") or [], source=conv.get("source"), status=transcript["status"],
                       created_at=conv["created_at"])
    return JSONResponse(out.model_dump(), status_code=201)


async def get_conversation(request: Request) -> Response:
    """A conversation's public state: status, chunk counts, the merged transcript so far."""
    conv = await load_conversation(request)
    if conv["project_id"] != request.path_params["project_id"]:
        raise ApiError(404, "conversation not found", "CONVERSATION_NOT_FOUND")
    return JSONResponse(await conversation_state(request, conv))


async def list_chunks(request: Request) -> Response:
    """The conversation's confirmed chunks, in recording order, with status and text."""
    conv = await load_conversation(request)
    rows = await services(request).store.list_chunks(
        transcript_id=conv["id"], kind="chunk", statuses=("uploaded", "processing", "transcribed", "failed"))
    return JSONResponse([chunk_out(r) for r in rows])


async def check_storage(request: Request) -> Response:
    """Whether chunk storage is ready to take uploads."""
    await load_conversation(request)
    body = await storage_check(services(request))
    return JSONResponse(body.model_dump(), status_code=200 if body.ok else 503)


async def get_upload_url(request: Request) -> Response:
    """A signed, expiring, single-use URL to PUT one chunk to (rate limited per conversation); with an S3 store, a
    presigned URL of the bucket (see :mod:`server.routes.participant_uploads`)."""
    conv = await load_conversation(request)
    rest, svc = rest_of(request), services(request)
    await check_rate(rest.upload_rate, conv["id"], "upload URLs per conversation")
    await check_rate(rest.project_rate, conv["project_id"], "conversation starts and upload URLs per project")
    if conv.get("finished_at"):
        raise ApiError(409, "the conversation is finished", "CONVERSATION_FINISHED")
    body = await json_body(request, UploadUrlRequest)
    store = svc.store
    now = time.time()
    expires = int(now + svc.settings.upload_url_ttl)
    key = secrets.token_urlsafe(18)
    row, direct = None, None
    for _ in range(5):  # two requests racing for the next index: the loser takes the one after
        last = await store.last_chunk_index(conv["id"], "chunk")
        index = body.index if body.index is not None else (-1 if last is None else last) + 1
        taken = await store.get_chunk_at(conv["id"], "chunk", index)
        if taken is not None:
            if taken["status"] in UNCONFIRMED and (taken.get("expires_at") or 0) < now:
                await store.delete_chunk(taken["id"])  # an abandoned URL: its place is free again
            elif body.index is not None:
                raise ApiError(409, f"chunk {index} already has an upload URL", "CHUNK_INDEX_TAKEN",
                               {"index": index})
            else:
                continue
        object_key = chunk_key(conv["id"], index, key, chunk_extension(body.content_type, body.filename))
        direct = await svc.audio.presigned_put(object_key, svc.settings.upload_url_ttl, body.content_type)
        try:  # a chunk PUT to the bucket has its key from the start; one PUT here gets it with its bytes
            row = await store.create_chunk(transcript_id=conv["id"], kind="chunk", status="issued", index=index,
                                           upload_key=key, expires_at=float(expires),
                                           path=object_key if direct else None,
                                           options={"filename": body.filename, "content_type": body.content_type})
            break
        except ValueError:
            if body.index is not None:
                raise ApiError(409, f"chunk {index} already has an upload URL", "CHUNK_INDEX_TAKEN",
                               {"index": index}) from None
    if row is None:
        raise ApiError(409, "too many concurrent upload URL requests; retry", "CONFLICT")
    base = public_base(request)
    sig = rest.signer.sign(conv["id"], key, expires)
    url = direct or f"{base}/api/participant/conversations/{conv['id']}/chunks/{key}?expires={expires}&signature={sig}"
    out = UploadUrl(url=url, key=key, expires_at=_iso(expires), index=row["index"],
                    headers={"Content-Type": body.content_type} if direct and body.content_type else {})
    return JSONResponse(out.model_dump())


async def put_chunk(request: Request) -> Response:
    """The upload URL: PUT the chunk's audio bytes (any accepted format); acknowledged once on disk."""
    cid = request.path_params["conversation_id"]
    key = request.path_params["key"]
    rest, svc = rest_of(request), services(request)
    try:
        expires = int(request.query_params.get("expires", ""))
    except ValueError:
        raise ApiError(403, "the upload URL is not signed", "INVALID_SIGNATURE") from None
    if not rest.signer.verify(cid, key, expires, request.query_params.get("signature", "")):
        raise ApiError(403, "the upload URL's signature does not match", "INVALID_SIGNATURE")
    if time.time() > expires:
        raise ApiError(410, "the upload URL expired; ask for a new one", "UPLOAD_URL_EXPIRED")
    row = await svc.store.get_chunk_by_key(key)
    if row is None or row["transcript_id"] != cid:
        raise ApiError(404, "unknown upload key", "UNKNOWN_UPLOAD_KEY")
    # claimed before a byte of the body is read, on whichever node: a second PUT of the same URL (to this node or
    # another) is refused at once, instead of streaming a whole body that would then lose; a claim whose node went
    # away is taken over once the body would have timed out there
    stale = time.time() - svc.settings.http_body_timeout - 5
    claim = await svc.store.claim_chunk_upload(row["id"], stale_before=stale)
    if claim is None:
        raise ApiError(409, "this upload URL was already used", "UPLOAD_URL_USED")
    done = None
    try:
        received = await receive_for_store(request, svc.audio, f"{cid}/chunks", limit=svc.settings.max_upload_mb << 20)
        stored = chunk_key(cid, row["index"], key, received.extension)
        await svc.audio.put_file(stored, received.path)
        received.release()
        done = await svc.store.transition_chunk(row["id"], ("receiving",), "received", path=stored,
                                                format=received.format, size=received.size)
    finally:
        if done is None:  # the body did not make it: the URL may be used again
            await svc.store.transition_chunk(row["id"], ("receiving",), "issued")
    return JSONResponse(ChunkReceived(key=key, size=received.size, format=received.format).model_dump())


async def confirm_upload(request: Request) -> Response:
    """Confirm an uploaded chunk: it is queued for transcription (once, however often it is confirmed)."""
    conv = await load_conversation(request)
    body = await json_body(request, ConfirmUpload)
    svc = services(request)
    store = svc.store
    row = await store.get_chunk_by_key(body.key)
    if row is None or row["transcript_id"] != conv["id"] or row["kind"] != "chunk":
        raise ApiError(404, "unknown upload key for this conversation", "UNKNOWN_UPLOAD_KEY", {"key": body.key})
    if row["status"] in ("uploaded", "processing", "transcribed", "failed"):
        raise ApiError(409, "this chunk was already confirmed", "ALREADY_CONFIRMED",
                       {"key": body.key, "status": row["status"]})
    if conv.get("finished_at"):
        raise ApiError(409, "the conversation is finished", "CONVERSATION_FINISHED")
    if time.time() > (row.get("expires_at") or 0):
        raise ApiError(410, "this upload key expired; upload the chunk again with a new URL", "UPLOAD_KEY_EXPIRED",
                       {"key": body.key})
    stored: dict[str, Any] = {}  # a chunk PUT straight to the bucket: checked and sealed now
    if row["status"] == "issued" and row.get("path"):
        stored = await check_direct_upload(svc, row)  # 409 not there, 413 too big, 415 not audio
    elif row["status"] in ("issued", "receiving"):
        raise ApiError(409, "nothing was uploaded with this key yet: PUT the chunk to its URL first (a PUT still"
                       " arriving counts once it is stored)", "NOT_UPLOADED", {"key": body.key})
    async with store.transaction():  # confirmed and queued together: a crash in between loses no chunk
        confirmed = await store.transition_chunk(row["id"], (row["status"],), "uploaded", **stored)
        if confirmed is not None:
            await store.transition_transcript(conv["id"], ("created",), "processing")
            await svc.jobs.stage([transcribe_job(confirmed["id"])])
    if confirmed is None:  # a concurrent confirm won
        raise ApiError(409, "this chunk was already confirmed", "ALREADY_CONFIRMED", {"key": body.key})
    return JSONResponse(chunk_out(confirmed), status_code=202)


async def finish(request: Request) -> Response:
    """Mark the conversation finished; it completes once every confirmed chunk is transcribed."""
    conv = await load_conversation(request)
    svc = services(request)
    if not conv.get("finished_at"):
        async with svc.store.transaction():  # finished and merged: the merge completes it once chunks are done
            conv = await svc.store.update_conversation(conv["id"], finished_at=utcnow()) or conv
            await svc.jobs.stage([settle_job(conv["id"])])
    return JSONResponse(await conversation_state(request, conv))


P = "/api/participant"
routes = [
    Route(P + "/projects/{project_id}", per_address(get_public_project), methods=["GET"]),
    Route(P + "/projects/{project_id}/conversations/{conversation_id}", per_address(get_conversation), methods=["GET"]),
    Route(P + "/conversations/initiate", per_address(initiate), methods=["POST"]),
    Route(P + "/conversations/{conversation_id}/chunks", per_address(list_chunks), methods=["GET"]),
    Route(P + "/conversations/{conversation_id}/check-s3", per_address(check_storage), methods=["POST"]),
    Route(P + "/conversations/{conversation_id}/get-upload-url", per_address(get_upload_url), methods=["POST"]),
    Route(P + "/conversations/{conversation_id}/chunks/{key}", per_address(put_chunk), methods=["PUT"]),
    Route(P + "/conversations/{conversation_id}/confirm-upload", per_address(confirm_upload), methods=["POST"]),
    Route(P + "/conversations/{conversation_id}/finish", per_address(finish), methods=["POST"]),
]

document("GET", P + "/projects/{project_id}", "Public project metadata", TAG,
         responses={200: (ProjectPublic, "title, language and portal settings")})
document("GET", P + "/projects/{project_id}/conversations/{conversation_id}", "A conversation's public state", TAG,
         responses={200: (ConversationState, "status, chunk counts and the merged transcript so far")})
document("POST", P + "/conversations/initiate", "Start a conversation", TAG, body=Initiate,
         description="`name`/`email` are required only when the project's portal asks for them (422 otherwise)."
                     " At most VOXLANE_MAX_OPEN_CONVERSATIONS unfinished conversations per project, and"
                     " VOXLANE_RATE_PER_PROJECT starts and upload URLs per minute per project (429 beyond).",
         responses={201: (Conversation, "the conversation; use its id for the upload calls"),
                    429: (None, "rate limited, or too many unfinished conversations; see Retry-After")})
document("GET", P + "/conversations/{conversation_id}/chunks", "List the conversation's chunks", TAG,
         responses={200: (Chunk, "confirmed chunks in recording order")}, response_list=True)
document("POST", P + "/conversations/{conversation_id}/check-s3", "Is chunk storage ready?", TAG,
         responses={200: (StorageCheck, "storage is ready"), 503: (None, "storage is not writable or full")})
document("POST", P + "/conversations/{conversation_id}/get-upload-url", "Get a signed upload URL for one chunk",
         TAG, body=UploadUrlRequest,
         description="Signed (HMAC), expiring (VOXLANE_UPLOAD_URL_TTL), single-use; at most"
                     " VOXLANE_UPLOAD_URL_RATE (40) per minute per conversation, within the project's"
                     " VOXLANE_RATE_PER_PROJECT and the caller's VOXLANE_RATE_PER_ADDRESS. With an S3 audio store"
                     " (VOXLANE_S3_BUCKET) `url` is a presigned PUT URL of the bucket, valid as long: send"
                     " `headers` with it; confirm then checks the stored object (413 too large, 415 not audio).",
         responses={200: (UploadUrl, "PUT the chunk to `url`, then confirm `key`"),
                    409: (None, "finished conversation, or index taken"),
                    429: (None, "rate limited; see Retry-After")})
document("PUT", P + "/conversations/{conversation_id}/chunks/{key}", "Upload one chunk (the signed URL)", TAG,
         body=AudioBytes, body_kind="binary", description="The raw audio bytes (audio/* or octet-stream; multipart"
         " with a `file` part also works). Acknowledged once fsynced.",
         query=[Param("expires", "from the signed URL", "integer", True),
                Param("signature", "from the signed URL", "string", True)],
         responses={200: (ChunkReceived, "stored"), 403: (None, "bad signature"), 409: (None, "URL already used"),
                    410: (None, "URL expired"), 413: (None, "too large"), 415: (None, "not supported audio")})
document("POST", P + "/conversations/{conversation_id}/confirm-upload", "Confirm an uploaded chunk", TAG,
         body=ConfirmUpload,
         responses={202: (Chunk, "queued for transcription"),
                    404: (None, "unknown key"), 409: (None, "already confirmed, not uploaded, or finished"),
                    410: (None, "key expired"), 413: (None, "the object PUT to the bucket is too large"),
                    415: (None, "the object PUT to the bucket is not supported audio")})
document("POST", P + "/conversations/{conversation_id}/finish", "Finish the conversation", TAG,
         responses={200: (ConversationState, "finished; `completed` once every chunk is transcribed")})
