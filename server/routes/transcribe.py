"""``/api/transcribe``: transcription jobs. A job is a transcript underneath: one pipeline, one store.

``POST /api/transcribe/`` takes a file like an upload does, makes a transcript (the job id is its id) and
queues it; status, result and the live WebSocket read that transcript and its audio item.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from asr.backends.model_files import BUNDLED_MODEL, ModelNotFound, resolve_model
from protocol.close import CLOSE_NOT_FOUND
from server.features.speakers import named_segments
from server.http.audio_limits import refuse_declared
from server.http.auth import principal
from server.http.errors import ApiError
from server.http.openapi import Param, document
from server.http.uploads import channel_options, probe_upload, receive_for_store
from server.http.visibility import find_visible_transcript
from server.jobs.progress import Progress
from server.jobs.recorded import TASK as TRANSCRIBE
from server.jobs.recorded import transcribe_job
from server.pipeline.recordings import upload_key
from server.routes.common import form_key_terms, int_param, services
from server.routes.transcribe_schemas import (
    JobCreated,
    JobDebug,
    JobForm,
    JobList,
    JobResult,
    JobStatus,
    ModelInfo,
    ModelList,
    ResultSegment,
)
from server.storage import new_id

TAG = "transcription jobs"
NOT_FOUND_MESSAGE = "Transcription job not found or expired"
_FULL_NAMES = {"tiny.en": "Systran/faster-whisper-tiny.en"}


# ------------------------------------------------------------ models


def _dir_size_mb(path: str) -> float | None:
    if not os.path.isdir(path):
        return None
    total = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
                if os.path.isfile(os.path.join(path, f)))
    return round(total / 1e6, 1)


def available_models(loaded: str) -> list[ModelInfo]:
    out = []
    for name in dict.fromkeys([loaded, BUNDLED_MODEL]):
        try:
            path = resolve_model(name)
        except ModelNotFound:
            path = ""
        size = _dir_size_mb(path) if path else None
        bundled = name == BUNDLED_MODEL
        out.append(ModelInfo(
            name=name, full_name=_FULL_NAMES.get(name, path or name), is_downloaded=name == loaded or size is not None,
            size_mb=size,
            description=("Fast, English optimized (bundled)" if bundled else "Locally configured model")
            + ("" if name == loaded else "; not loaded by this server"), loaded=name == loaded))
    return out


async def list_models(request: Request) -> Response:
    """The bundled model and the configured local one."""
    models = await asyncio.to_thread(available_models, services(request).settings.model)
    return JSONResponse(ModelList(models=models).model_dump())


# ------------------------------------------------------------ jobs


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ApiError(422, f"diarize must be true or false, not {value!r}")


async def create_job(request: Request) -> Response:
    """Start a transcription job from an uploaded file.

    The job's transcript row, its chunk and its queued job commit together once the file is stored: a request
    refused or cut off on the way leaves no row behind."""
    svc = services(request)
    store = svc.store
    who = principal(request)
    tid = new_id()
    try:
        received = await receive_for_store(request, svc.audio, tid, limit=svc.settings.max_upload_mb << 20)
        fields = received.fields
        model_name = (fields.get("model_name") or BUNDLED_MODEL).strip()
        if model_name in ("default", "bundled"):
            model_name = svc.settings.model
        if model_name != svc.settings.model:
            names = [m.name for m in available_models(svc.settings.model) if m.loaded]
            raise ApiError(422, f"model {model_name!r} is not loaded by this server; use one of {', '.join(names)}",
                           "MODEL_NOT_AVAILABLE", {"available": names})
        language = (fields.get("language") or "").strip() or None
        if language is not None and not (2 <= len(language) <= 8 and language.replace("-", "").isalpha()):
            raise ApiError(422, f"language must be an ISO 639-1 code, not {language!r}")
        diarize = _bool(fields.get("diarize"), True)
        key_terms = form_key_terms(fields.get("key_terms"))
        info = await probe_upload(received.path)
        refuse_declared(info, svc.settings.max_audio_seconds)  # a longer file that hides it fails the job
        channels = channel_options(request, received, info)
        options = {"model_name": model_name, "language": language, "diarize": diarize,
                   "filename": received.filename, "sample_rate": info.get("sample_rate"),
                   "channels": info.get("channels"), **channels, **({"key_terms": key_terms} if key_terms else {})}
        key = upload_key(tid, received.extension)
        await svc.audio.put_file(key, received.path)  # stored before the 202 (on S3, no local copy stays)
        received.release()
        chunk_id = new_id()
        async with store.transaction():
            await store.create_transcript(transcript_id=tid, name=received.filename or "Transcription job",
                                          owner=who.user, status="processing", source_language=language,
                                          meta={"job": options})
            await store.create_chunk(transcript_id=tid, kind="job", status="uploaded", path=key,
                                     format=received.format, size=received.size, duration=info.get("duration"),
                                     options=options, chunk_id=chunk_id)
            await svc.jobs.stage([transcribe_job(chunk_id)])
    except BaseException:
        await svc.audio.delete_prefix(tid)  # the received body, or the stored file
        raise
    body = JobCreated(job_id=tid, status="processing", message=f"transcription of {received.filename or 'the file'}"
                      f" ({float(info.get('duration') or 0):.1f} s) started")
    return JSONResponse(body.model_dump(), status_code=202)


async def _job(request_or_ws: Any, job_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(transcript, audio item) of a job the caller may see, or None."""
    transcript = await find_visible_transcript(request_or_ws, job_id)
    if transcript is None:
        return None
    items = await services(request_or_ws).store.list_chunks(transcript_id=job_id, kind="job")
    return (transcript, items[-1]) if items else None


async def _job_or_404(request: Request, job_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = await _job(request, job_id)
    if found is None:
        raise ApiError(404, NOT_FOUND_MESSAGE, "JOB_NOT_FOUND")
    return found


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def job_status(conn: Any, transcript: dict[str, Any], item: dict[str, Any],
                     reported: float | None = None) -> JobStatus:
    """A job's status from its chunk row, to the block where this node runs it. ``reported``: the progress a
    ``status`` message just told (finer than the row, which the node running the job updates every 2 s)."""
    svc = services(conn)
    prog = svc.runner.progress.get(transcript["id"]) if svc.runner is not None else None
    state = item["status"]
    updated = prog.updated_at if prog is not None else _epoch(item["updated_at"])
    if state == "transcribed":
        total = float(item.get("duration") or 0.0)
        done = Progress(status="completed", done=total, total=total)
        return JobStatus(job_id=transcript["id"], status="completed", message="transcription complete",
                         progress=100.0, updated_at=updated, chunk_info=done.chunk_info())
    if state == "failed":
        return JobStatus(job_id=transcript["id"], status="failed", message=item.get("error") or "failed",
                         progress=float(item.get("progress") or 0.0), updated_at=updated)
    if state == "uploaded":
        pos = await svc.jobs.position(TRANSCRIBE, transcribe_job(item["id"]).dedupe or "")
        message = f"queued (position {pos})" if pos else "queued"
        waiting = prog or Progress(total=float(item.get("duration") or 0.0))
        return JobStatus(job_id=transcript["id"], status="processing", message=message, progress=0.0,
                         updated_at=updated, chunk_info=waiting.chunk_info())
    if prog is None:
        prog = Progress.of_row(item, updated)
        if reported is not None and prog.total > 0:
            prog.done = max(prog.done, prog.total * min(99.0, reported) / 100.0)
    info = prog.chunk_info()
    message = (f"Processing chunk {info['current_chunk']}/{info['total_chunks']} ({prog.percent:.0f}%)"
               if info["total_chunks"] else prog.message)
    return JobStatus(job_id=transcript["id"], status="processing", message=message, progress=prog.percent,
                     updated_at=updated, chunk_info=info)


def not_found(job_id: str) -> JobStatus:
    return JobStatus(job_id=job_id, status="not_found", message=NOT_FOUND_MESSAGE, progress=0.0,
                     updated_at=time.time())


async def get_status(request: Request) -> Response:
    """A job's status and progress (status `not_found` for unknown ids)."""
    job_id = request.path_params["job_id"]
    found = await _job(request, job_id)
    body = not_found(job_id) if found is None else await job_status(request, *found)
    return JSONResponse(body.model_dump())


async def list_jobs(request: Request) -> Response:
    """Your jobs, newest first."""
    limit = int_param(request, "limit", 100, 1, 1000)
    store = services(request).store
    items = await store.list_chunks(kind="job", owner=principal(request).owner_filter, limit=limit)
    jobs = []
    for item in items:
        transcript = await store.get_transcript(item["transcript_id"])
        if transcript is not None:
            jobs.append((await job_status(request, transcript, item)).model_dump())
    return JSONResponse(JobList(jobs=jobs, count=len(jobs)).model_dump())


def display(t: float) -> str:
    ms = int(round(max(0.0, t) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def result_segment(seg: dict[str, Any]) -> ResultSegment:
    return ResultSegment(start=seg["start"], end=seg["end"], text=seg["text"], speaker=seg.get("speaker"),
                         speaker_confidence=None, start_display=display(seg["start"]), end_display=display(seg["end"]))


def job_language(request: Request, transcript: dict[str, Any], item: dict[str, Any]) -> str | None:
    svc = services(request)
    language = (item.get("options") or {}).get("language") or transcript.get("source_language")
    if language:
        return language
    if svc.loop is not None and getattr(svc.loop.backend, "english_only", False):
        return "en"
    return svc.settings.language


async def get_result(request: Request) -> Response:
    """A completed job's segments, text, language and duration."""
    job_id = request.path_params["job_id"]
    transcript, item = await _job_or_404(request, job_id)
    if item["status"] == "failed":
        raise ApiError(409, f"the job failed: {item.get('error')}", "JOB_FAILED", {"status": "failed"})
    if item["status"] != "transcribed":
        status = await job_status(request, transcript, item)
        raise ApiError(409, "the job is still processing", "JOB_NOT_READY",
                       {"status": status.status, "progress": status.progress})
    segments = [s for s in await named_segments(services(request).store, transcript) if s["text"].strip()]
    body = JobResult(job_id=job_id, segments=[result_segment(s) for s in segments],
                     text=" ".join(s["text"].strip() for s in segments),
                     language=job_language(request, transcript, item), audio_duration=item.get("duration"))
    return JSONResponse(body.model_dump())


async def get_debug(request: Request) -> Response:
    """Diagnostics for a job: its audio item, cached segments, latest time, queue position."""
    job_id = request.path_params["job_id"]
    transcript, item = await _job_or_404(request, job_id)
    svc = services(request)
    segments = await svc.store.get_segments(job_id)
    prog = svc.runner.progress.get(job_id) if svc.runner is not None else None
    item_view = {k: v for k, v in item.items() if k not in ("segments", "path", "upload_key", "options")}
    item_view["file"] = Path(item["path"]).name if item.get("path") else None
    queued = await svc.jobs.counts()
    body = JobDebug(job_id=job_id, transcript_status=transcript["status"], item=item_view,
                    options=item.get("options") or {}, cached_segments=len(segments),
                    latest_time=max((s["end"] for s in segments), default=0.0),
                    progress=None if prog is None else {"status": prog.status, "message": prog.message,
                                                        "done_seconds": prog.done, "total_seconds": prog.total,
                                                        "percent": prog.percent, "updated_at": prog.updated_at},
                    queue_position=await svc.jobs.position(TRANSCRIBE, transcribe_job(item["id"]).dedupe or ""),
                    queued_total=queued.get(TRANSCRIBE, 0),
                    running=item["status"] == "processing", subscribers=svc.hub.subscriber_count(job_id))
    return JSONResponse(body.model_dump())


async def job_live(ws: WebSocket) -> None:
    """Live updates of a job: status messages with progress and chunk_info, then segments as produced."""
    job_id = ws.path_params["job_id"]
    await ws.accept()
    found = await _job(ws, job_id)
    if found is None:
        await ws.send_json({"type": "status", **not_found(job_id).model_dump()})
        await ws.close(code=CLOSE_NOT_FOUND, reason="job not found")
        return
    svc = services(ws)
    sub = svc.hub.subscribe(job_id)  # before the replay: nothing falls in between
    receiver = asyncio.create_task(_drain(ws))
    try:
        await sub  # the broker's read position too (messages from other nodes)
        seen: set[str] = set()
        transcript, item = found
        for seg in await named_segments(svc.store, transcript):
            seen.add(seg["id"])
            await ws.send_json({"type": "segment", **result_segment(seg).model_dump()})
        current = await job_status(ws, transcript, item)
        await ws.send_json({"type": "status", **current.model_dump()})
        if current.status in ("completed", "failed"):
            await ws.close()
            return
        while True:
            getter = asyncio.create_task(sub.queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return  # the client went away
            msg = getter.result()
            if msg is None:
                await ws.close(code=sub.close_code)
                return
            data = msg["data"]
            if msg["type"] == "transcription":
                if data.get("is_final") and data.get("text", "").strip() and data["segment_id"] not in seen:
                    seen.add(data["segment_id"])
                    await ws.send_json({"type": "segment", **result_segment(data).model_dump()})
            elif msg["type"] == "status" and data.get("participant_id") is None:
                found = await _job(ws, job_id)
                if found is None:
                    await ws.close(code=CLOSE_NOT_FOUND, reason="job deleted")
                    return
                status = await job_status(ws, *found, reported=data.get("progress"))
                if data["status"] == "failed":
                    status.status, status.message = "failed", data.get("message") or status.message
                await ws.send_json({"type": "status", **status.model_dump()})
                if status.status in ("completed", "failed"):
                    await ws.close()
                    return
    except WebSocketDisconnect:
        pass
    finally:
        svc.hub.unsubscribe(sub)
        receiver.cancel()
        with contextlib.suppress(BaseException):
            await receiver


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) client messages until it disconnects."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


T = "/api/transcribe"
routes = [
    Route(T + "/models", list_models, methods=["GET"]),
    Route(T + "/", create_job, methods=["POST"]),
    Route(T, create_job, methods=["POST"]),
    Route(T + "/jobs", list_jobs, methods=["GET"]),
    Route(T + "/status/{job_id}", get_status, methods=["GET"]),
    Route(T + "/result/{job_id}", get_result, methods=["GET"]),
    Route(T + "/debug/{job_id}", get_debug, methods=["GET"]),
    WebSocketRoute(T + "/live/{job_id}", job_live),
]

document("GET", T + "/models", "List models", TAG, responses={200: (ModelList, "the models")})
document("POST", T + "/", "Start a transcription job", TAG, body=JobForm, body_kind="multipart",
         description="The job is a transcript (job_id is its id), transcribed at bulk priority.",
         responses={202: (JobCreated, "queued"),
                    413: (None, "file too large (PAYLOAD_TOO_LARGE), or its header gives a duration over"
                                " VOXLANE_MAX_AUDIO_SECONDS (AUDIO_TOO_LONG, details.limit_seconds); audio that"
                                " decodes longer than its header says fails the job"),
                    415: (None, "unsupported audio"), 422: (None, "unreadable audio, unknown model, bad field")})
document("GET", T + "/jobs", "List jobs", TAG, responses={200: (JobList, "your jobs, newest first")},
         query=[Param("limit", "most jobs returned (1-1000)", "integer", minimum=1, maximum=1000)])
document("GET", T + "/status/{job_id}", "Job status", TAG,
         responses={200: (JobStatus, "status and progress; status `not_found` for an unknown id")})
document("GET", T + "/result/{job_id}", "Job result", TAG,
         responses={200: (JobResult, "segments, text, language, duration"),
                    409: (None, "not finished yet, or failed")})
document("GET", T + "/debug/{job_id}", "Job diagnostics", TAG, responses={200: (JobDebug, "diagnostic fields")})
document("WEBSOCKET", T + "/live/{job_id}", "Live job updates (WebSocket)", TAG,
         description="Server messages: {\"type\":\"status\", status, message, progress, chunk_info:"
                     " {current_chunk, total_chunks, chunk_progress}} and {\"type\":\"segment\", start, end, text,"
                     " speaker, speaker_confidence, start_display, end_display} as segments are produced (silence"
                     " is never sent). Closes after `completed`/`failed`; 4404 for an unknown job.",
         query=[Param("token", "bearer token (or the Authorization header)")])
