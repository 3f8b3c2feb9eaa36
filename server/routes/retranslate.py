"""``/api/retranslate``: re-transcribe one segment with a chosen model, from an uploaded clip or from a stored
transcript's (job's) audio. See :mod:`server.features.retranslate` for how the model is chosen and run."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from media import AudioTooLong, DecodeError, decode_file
from server.features.retranslate import (
    MAX_SECONDS,
    DecodeFailed,
    ModelPool,
    ModelUnavailable,
    read_stored_range,
    retranscribe,
)
from server.features.speakers import named_segments
from server.http.audio_limits import refuse_declared, too_long
from server.http.errors import ApiError
from server.http.openapi import document
from server.http.uploads import probe_upload, receive_audio
from server.http.visibility import visible_transcript
from server.routes.common import json_body, services, transcriber
from server.routes.transcripts_audio import audio_key

TAG = "retranslate"


class SegmentForm(BaseModel):
    """multipart/form-data fields."""

    file: bytes = Field(description="the clipped audio of the segment")
    segment_id: str
    start_time: float | None = Field(default=None, description="where the clip sits in the recording (s)")
    end_time: float | None = None
    model_name: str | None = Field(default=None, description="default: the server's model")
    language: str | None = None
    speaker: str | None = None


class SegmentFromFull(BaseModel):
    model_config = ConfigDict(extra="ignore")
    segment_id: str = Field(min_length=1, max_length=200)
    start_time: float | None = Field(default=None, ge=0, description="default: the stored segment's start")
    end_time: float | None = Field(default=None, ge=0, description="default: the stored segment's end")
    model_name: str | None = Field(default=None, description="default: the server's model")
    language: str | None = Field(default=None, max_length=16)


class Retranslated(BaseModel):
    segment_id: str
    text: str
    confidence: float
    speaker: str | None
    model_used: str
    start_time: float | None = None
    end_time: float | None = None


def model_pool(request: Request) -> ModelPool:
    pool = getattr(request.app.state, "retranslate_models", None)
    if pool is None:
        pool = request.app.state.retranslate_models = ModelPool(services(request).settings)
    return pool


async def _run(request: Request, audio: Any, model_name: str | None, language: str | None):
    try:
        return await retranscribe(transcriber(request), model_pool(request), audio, model_name=model_name,
                                  language=language)
    except ModelUnavailable as exc:
        raise ApiError(422, str(exc), "MODEL_NOT_AVAILABLE", {"available": exc.available}) from None
    except DecodeFailed as exc:
        raise ApiError(503, f"the segment could not be transcribed: {exc}", "DECODE_FAILED") from None


def _float(fields: dict[str, str], name: str) -> float | None:
    raw = (fields.get(name) or "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be a number of seconds") from None


async def retranslate_segment(request: Request) -> Response:
    """Re-transcribe an uploaded clip of one segment."""
    svc = services(request)
    directory = svc.settings.data_path / "tmp" / f"retranslate-{uuid.uuid4().hex}"
    try:
        received = await receive_audio(request, directory, limit=svc.settings.max_upload_mb << 20, stem="clip")
        fields = received.fields
        segment_id = (fields.get("segment_id") or "").strip()
        if not segment_id:
            raise ApiError(422, "segment_id is required")
        start, end = _float(fields, "start_time"), _float(fields, "end_time")
        refuse_declared(await probe_upload(received.path), MAX_SECONDS)
        try:  # the header's duration may understate: the decoder stops at the limit itself
            audio = await asyncio.to_thread(decode_file, received.path, max_seconds=MAX_SECONDS)
        except AudioTooLong as exc:
            raise too_long(exc.limit_seconds) from None
        except DecodeError as exc:
            raise ApiError(422, f"the clip could not be read as audio: {exc.message}", "AUDIO_DECODE_ERROR") from None
        result = await _run(request, audio, fields.get("model_name"), (fields.get("language") or "").strip() or None)
    finally:
        await asyncio.to_thread(shutil.rmtree, directory, True)
    body = Retranslated(segment_id=segment_id, text=result.text, confidence=result.confidence,
                        speaker=(fields.get("speaker") or "").strip() or None, model_used=result.model_used,
                        start_time=start, end_time=end)
    return JSONResponse(body.model_dump())


async def retranslate_from_full(request: Request) -> Response:
    """Re-transcribe a time range of a stored transcript's (job's) audio."""
    job_id = request.query_params.get("job_id") or ""
    body = await json_body(request, SegmentFromFull)
    svc = services(request)
    row = await visible_transcript(request, job_id, missing="Transcription job not found or expired",
                                   code="JOB_NOT_FOUND")
    segments = await named_segments(svc.store, row)
    stored = next((s for s in segments if s["id"] == body.segment_id), None)
    start = body.start_time if body.start_time is not None else (stored or {}).get("start")
    end = body.end_time if body.end_time is not None else (stored or {}).get("end")
    if start is None or end is None:
        raise ApiError(422, "start_time and end_time are required (segment_id names no stored segment)")
    if end <= start:
        raise ApiError(422, "end_time must be after start_time")
    if end - start > MAX_SECONDS:
        raise ApiError(422, f"the segment is longer than {MAX_SECONDS:.0f} s", "SEGMENT_TOO_LONG")
    key = await audio_key(request, row)
    try:
        audio = await read_stored_range(svc.audio, key, start, end, svc.settings.max_audio_seconds)
    except DecodeError as exc:
        raise ApiError(422, f"the stored audio could not be read: {exc.message}", "AUDIO_DECODE_ERROR") from None
    if len(audio) == 0:
        raise ApiError(422, "the range holds no audio (past the end of the recording?)", "EMPTY_RANGE")
    result = await _run(request, audio, body.model_name, body.language)
    out = Retranslated(segment_id=body.segment_id, text=result.text, confidence=result.confidence,
                       speaker=_speaker_of(segments, start, end), model_used=result.model_used,
                       start_time=start, end_time=end)
    return JSONResponse(out.model_dump())


def _speaker_of(segments: list[dict[str, Any]], start: float, end: float) -> str | None:
    """The speaker of the stored speech that overlaps the range most."""
    overlap: dict[str, float] = {}
    for s in segments:
        shared = min(end, s["end"]) - max(start, s["start"])
        if shared > 0 and s.get("speaker"):
            overlap[s["speaker"]] = overlap.get(s["speaker"], 0.0) + shared
    return max(overlap, key=overlap.__getitem__) if overlap else None


R = "/api/retranslate"
routes = [
    Route(R + "/segment", retranslate_segment, methods=["POST"]),
    Route(R + "/segment-from-full", retranslate_from_full, methods=["POST"]),
]

document("POST", R + "/segment", "Re-transcribe an uploaded segment clip", TAG, body=SegmentForm,
         body_kind="multipart",
         description="With the server's model (through its inference loop) or another configured local model.",
         responses={200: (Retranslated, "the new text"),
                    413: (None, f"file too large (PAYLOAD_TOO_LARGE), or the clip longer than {MAX_SECONDS:g} s"
                                " (AUDIO_TOO_LONG, details.limit_seconds)"),
                    422: (None, "bad clip, unknown model")})
document("POST", R + "/segment-from-full", "Re-transcribe a time range of stored audio", TAG, body=SegmentFromFull,
         description="`?job_id=` is a transcription job's (or any transcript's) id; the range defaults to the"
                     " stored segment named by segment_id.",
         responses={200: (Retranslated, "the new text"), 404: (None, "unknown job"),
                    422: (None, "bad range, unknown model")})
