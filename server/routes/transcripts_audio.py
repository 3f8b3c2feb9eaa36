"""``/v1/transcripts_audio/{id}``: upload a recording to transcribe, download it, stream it with Range."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol import Error, Status
from server.http.audio_limits import refuse_declared
from server.http.errors import ApiError
from server.http.openapi import Param, document
from server.http.stored_audio import audio_response, range_error
from server.http.uploads import MEDIA_TYPES, Received, channel_options, probe_upload, receive_for_store
from server.http.visibility import visible_transcript
from server.jobs.recorded import transcribe_job
from server.pipeline import lifecycle
from server.pipeline.recordings import recording_key, upload_key
from server.routes.common import services
from server.storage import new_id

TAG = "transcript audio"
_receiving: set[str] = set()  # transcripts with an upload in flight (one at a time each)


class UploadForm(BaseModel):
    """multipart/form-data with the audio in a ``file`` part (or the raw bytes with an audio/* type)."""

    file: bytes
    split_channels: bool = Field(default=False, description="each channel is its own participant (`channel-1`, ...)"
                                                            " with its own audio; also a query parameter")
    channel_names: list[str] | None = Field(default=None, description="with split_channels: one repeated field per"
                                                                      " channel, in order (default `Channel 1`, ...)")


class UploadInfo(BaseModel):
    filename: str | None
    format: str
    size: int
    duration: float | None
    sample_rate: int | None
    channels: int | None


class UploadAccepted(BaseModel):
    id: str
    status: str
    message: str
    upload: UploadInfo


async def load_visible(request: Request) -> dict[str, Any]:
    return await visible_transcript(request)


async def _mark_failed(request: Request, row: dict[str, Any], message: str) -> None:
    svc = services(request)
    await svc.hub.publish(row["id"], Error(code="AUDIO_FORMAT_ERROR", message=message, recoverable=False))
    await lifecycle.fail(svc, row["id"], message)


async def upload(request: Request) -> Response:
    """Upload a recording; it is transcribed in the background (202), progress goes to subscribers."""
    svc = services(request)
    row = await load_visible(request)
    tid = row["id"]
    if svc.live.streams(tid) or row["status"] == "live":
        raise ApiError(409, "transcript is being streamed live", "TRANSCRIPT_LIVE")
    if row["status"] not in ("created", "failed"):
        raise ApiError(409, f"transcript already has audio (status {row['status']!r}); create a new transcript",
                       "ALREADY_HAS_AUDIO", {"status": row["status"]})
    if tid in _receiving:
        raise ApiError(409, "an upload to this transcript is already in progress", "UPLOAD_IN_PROGRESS")
    _receiving.add(tid)
    try:
        limit = svc.settings.max_upload_mb << 20
        received = await receive_for_store(request, svc.audio, tid, limit=limit)
        try:
            info = await probe_upload(received.path)
            refuse_declared(info, svc.settings.max_audio_seconds)  # an honest header: no job to fail later
            channels = channel_options(request, received, info)
        except ApiError as exc:
            await asyncio.to_thread(_unlink, received.path)
            if exc.code == "AUDIO_DECODE_ERROR":
                await _mark_failed(request, row, exc.message)
            raise
        return await _accept(request, row, received, info, channels)
    finally:
        _receiving.discard(tid)


async def _accept(request: Request, row: dict[str, Any], received: Received, info: dict[str, Any],
                  channels: dict[str, Any]) -> Response:
    """The upload is stored: its chunk row, the transcript's new state and the job that transcribes it commit
    together, and only to the first of two uploads racing for one transcript (on one node or two)."""
    svc = services(request)
    store, tid = svc.store, row["id"]
    upload_info = UploadInfo(filename=received.filename, format=received.format, size=received.size,
                             duration=info.get("duration"), sample_rate=info.get("sample_rate"),
                             channels=info.get("channels"))
    chunk_id = new_id()
    key = upload_key(tid, received.extension, chunk_id[:12])
    await svc.audio.put_file(key, received.path)  # stored before the 202 (on S3, no local copy stays)
    received.release()
    replaced: list[str] = []
    try:
        async with store.transaction():
            before = await store.transition_transcript(tid, ("created", "failed"), "processing")
            if before is None:
                raise _Raced(await store.get_transcript(tid))
            for old in await store.list_chunks(transcript_id=tid, kind="upload"):
                await store.delete_chunk(old["id"])  # an earlier, failed attempt
                if old["path"]:
                    replaced.append(old["path"])
            await store.delete_segments(tid)
            await store.create_chunk(transcript_id=tid, kind="upload", status="uploaded", path=key,
                                     format=received.format, size=received.size, duration=info.get("duration"),
                                     options={"filename": received.filename, **channels}, chunk_id=chunk_id)
            await store.merge_transcript_meta(tid, {"error": None, "upload": upload_info.model_dump()})
            await svc.jobs.stage([transcribe_job(chunk_id)])
    except _Raced as raced:  # this upload's own file goes; the winner's has a key of its own
        if raced.row is None:
            await svc.audio.delete_prefix(tid)
            raise ApiError(404, "transcript not found", "TRANSCRIPT_NOT_FOUND") from None
        await svc.audio.delete(key)
        raise ApiError(409, f"transcript already has audio (status {raced.row['status']!r}); create a new"
                       " transcript", "ALREADY_HAS_AUDIO", {"status": raced.row["status"]}) from None
    for path in replaced:  # the file of an earlier, failed attempt
        await svc.audio.delete(path)
    await svc.hub.publish(tid, Status(status="processing", stage="transcription", progress=0.0,
                                      message="upload received; queued for transcription"))
    body = UploadAccepted(id=tid, status="processing", message="upload received; transcription started",
                          upload=upload_info)
    return JSONResponse(body.model_dump(), status_code=202)


class _Raced(Exception):
    """The transcript left ``created``/``failed`` while the body arrived (another upload won, or it was deleted)."""

    def __init__(self, row: dict[str, Any] | None) -> None:
        self.row = row


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def audio_key(request: Request, row: dict[str, Any]) -> str:
    """The key of the transcript's audio: the original upload (or job file), else its recorded live/merged audio.
    (An older row's absolute path, on the local store.)"""
    svc = services(request)
    for kind in ("upload", "job"):
        for chunk in await svc.store.list_chunks(transcript_id=row["id"], kind=kind):
            if chunk["path"] and await svc.audio.size(chunk["path"]) is not None:
                return chunk["path"]
    recording = recording_key(row["id"])
    if await svc.audio.size(recording) is not None:
        return recording
    raise ApiError(404, "this transcript has no audio yet", "NO_AUDIO")


def _suffix(key: str) -> str:
    return PurePosixPath(key).suffix


def _media_type(key: str) -> str:
    return MEDIA_TYPES.get(_suffix(key).lstrip(".").lower(), "application/octet-stream")


def _download_name(row: dict[str, Any], key: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", row.get("name") or row["id"]).strip() or row["id"]
    return f"{stem[:100]}{_suffix(key)}"


async def download(request: Request) -> Response:
    """Download the transcript's audio: the original upload, or the recorded live audio."""
    row = await load_visible(request)
    key = await audio_key(request, row)
    return await audio_response(request, services(request).audio, key, media_type=_media_type(key),
                                filename=_download_name(row, key))


async def stream(request: Request) -> Response:
    """The audio for an <audio> element: inline, with HTTP Range requests (206) for seeking."""
    row = await load_visible(request)
    audio = services(request).audio
    key = await audio_key(request, row)
    refused = range_error(request.headers.get("range"), await audio.size(key) or 0)
    if refused is not None:
        return refused
    return await audio_response(request, audio, key, media_type=_media_type(key), filename=_download_name(row, key),
                                inline=True, headers={"Cache-Control": "private, max-age=0"})


routes = [
    Route("/v1/transcripts_audio/{transcript_id}/upload", upload, methods=["POST"]),
    Route("/v1/transcripts_audio/{transcript_id}/download", download, methods=["GET", "HEAD"]),
    Route("/v1/transcripts_audio/{transcript_id}/stream", stream, methods=["GET", "HEAD"]),
]

document("POST", "/v1/transcripts_audio/{transcript_id}/upload", "Upload a recording to transcribe", TAG,
         description="WAV, MP3, M4A, FLAC, OGG or WebM at 8-48 kHz, up to VOXLANE_MAX_UPLOAD_MB (413 before the"
                     " body is read when Content-Length says more). Streamed to disk; answered 202 once the file is"
                     " stored (on disk, or in the S3 bucket), then transcribed at bulk priority: `status`"
                     " messages with `progress` and the finals go to the transcript's WebSocket subscribers. A"
                     " corrupt file is a 422 and leaves the transcript `failed`. `split_channels=true` (form field"
                     " or query) transcribes each channel as its own participant (`channel-1`, ..., named by"
                     " repeated `channel_names`), with its own audio part.",
         body=UploadForm, body_kind="multipart",
         query=[Param("split_channels", "true: one participant per channel", "boolean"),
                Param("channel_names", "with split_channels: a name per channel, repeated in channel order",
                      "string")],
         responses={202: (UploadAccepted, "accepted; transcription runs in the background"),
                    409: (None, "the transcript is live or already has audio"),
                    413: (None, "file too large"), 415: (None, "not a supported audio format or sample rate"),
                    422: (None, "unreadable audio, or no `file` part")})
document("GET", "/v1/transcripts_audio/{transcript_id}/download", "Download the audio", TAG,
         description="The original upload, or the audio recorded from live streams (16 kHz WAV).",
         responses={200: (None, "the audio file (Content-Disposition: attachment)")}, content_type="audio/*",
         query=[Param("token", "bearer token, for clients that cannot send headers")])
document("GET", "/v1/transcripts_audio/{transcript_id}/stream", "Stream the audio (HTTP Range)", TAG,
         description="For <audio> elements: `Accept-Ranges: bytes`; a `Range` request gets 206 with"
                     " Content-Range, an unsatisfiable one 416.",
         responses={200: (None, "the whole file"), 206: (None, "the requested byte range"),
                    416: (None, "range not satisfiable")}, content_type="audio/*",
         query=[Param("token", "bearer token, for <audio src> which cannot send headers")])
