"""OpenAI-compatible transcription: ``POST /v1/audio/transcriptions`` and ``GET /v1/models``.

Existing clients (the official ``openai`` package, anything written against the OpenAI audio API) point their
base URL at ``/v1`` and transcribe files with the same pipeline as every other upload:
:func:`server.jobs.file_jobs.transcribe_file`, a file-mode session at BULK priority in the one inference loop, so
live streams still go first. The request is stateless like OpenAI's: the file is streamed to a scratch
directory in the data dir, transcribed with the segments collected in memory (nothing is stored, no transcript
is created), and removed when the answer is sent. At most ``VOXLANE_REST_WORKERS`` such requests transcribe at
once; more wait their turn.

Scope ``transcripts:write`` in private mode (a POST under ``/v1``); the client's API key is a voxlane token.
Errors keep voxlane's shape ``{"error": {"code", "message", "details"}}``, which the openai client reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import shutil
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from protocol import Transcription
from server.features import exports
from server.features.openai_models import ModelMap, ModelNotServed
from server.http.audio_limits import refuse_declared, too_long
from server.http.errors import ApiError
from server.http.openapi import document
from server.http.uploads import Received, probe_upload, receive_audio
from server.jobs.file_jobs import transcribe_file
from server.pipeline.convert import segment_row
from server.routes.common import form_key_terms, rest_of, services, transcriber
from server.routes.parts import NodeParts

log = logging.getLogger("voxlane.openai")
TAG = "openai-compatible"
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
SCRATCH = "tmp"
_LANGUAGE_NAMES = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian",
                   "nl": "dutch", "pt": "portuguese", "pl": "polish", "sv": "swedish", "da": "danish",
                   "no": "norwegian", "fi": "finnish", "cs": "czech", "ru": "russian", "uk": "ukrainian",
                   "tr": "turkish", "ar": "arabic", "hi": "hindi", "ja": "japanese", "zh": "chinese",
                   "ko": "korean"}


class TranscriptionForm(BaseModel):
    """multipart/form-data fields (as the OpenAI audio API takes them)."""

    file: bytes = Field(description="the audio (WAV, MP3, M4A, FLAC, OGG, WebM; 8-48 kHz)")
    model: str = Field(default="whisper-1", description="an OpenAI transcription id (`whisper-1`, `gpt-4o-transcribe`,"
                       " ...) or another id from GET /v1/models; they mean the served model")
    language: str | None = Field(default=None, description="ISO 639-1 code of the speech")
    prompt: str | None = Field(default=None, description="context for the first segment: vocabulary, spelling")
    key_terms: str | None = Field(default=None, description=(
        "names and jargon to spell as given: a JSON array or comma-separated (at most 100 terms of 50 characters);"
        " the model is steered towards them and near-misses are corrected"))
    response_format: Literal["json", "text", "srt", "vtt", "verbose_json"] = "json"
    timestamp_granularities: list[Literal["word", "segment"]] = Field(
        default_factory=lambda: ["segment"], alias="timestamp_granularities[]",
        description="verbose_json only: `segment` (default) and/or `word`")
    stream: bool = Field(default=False, description="server-sent events: transcript.text.delta, then"
                                                    " transcript.text.done (json and text formats)")
    temperature: float | None = Field(default=None, description="accepted and ignored (greedy decoding)")


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: int


class TranscriptionJson(BaseModel):
    text: str
    usage: DurationUsage


class VerboseSegment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int] = Field(description="always empty: token ids are not exposed")
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class VerboseWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionVerboseJson(BaseModel):
    task: str = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[VerboseSegment] | None = None
    words: list[VerboseWord] | None = None
    usage: DurationUsage


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


@dataclass
class Options:
    response_format: str
    granularities: tuple[str, ...]
    stream: bool
    language: str | None
    prompt: str | None
    key_terms: list[str]


# ------------------------------------------------------------ models


def check_model(services: NodeParts, model: str) -> str:
    """``model`` as a client named it, once it is known to mean the served model; raises ``MODEL_NOT_AVAILABLE``
    (422) otherwise. The Realtime route applies the same rule (server.transports.realtime)."""
    try:
        ModelMap.of(services.settings).resolve(model)
    except ModelNotServed as exc:
        raise ApiError(422, str(exc), "MODEL_NOT_AVAILABLE", {"available": exc.available}) from None
    return model


def _model(request: Request, model_id: str) -> dict[str, Any]:
    return OpenAIModel(id=model_id, created=int(rest_of(request).started_at), owned_by="voxlane").model_dump()


async def list_models(request: Request) -> Response:
    """The models this server transcribes with (OpenAI's model list shape)."""
    data = [_model(request, m) for m in ModelMap.of(services(request).settings).ids()]
    return JSONResponse(OpenAIModelList(data=data).model_dump())


async def get_model(request: Request) -> Response:
    """One model of the list."""
    model_id = request.path_params["model_id"]
    if model_id not in ModelMap.of(services(request).settings).ids():
        raise ApiError(404, f"model {model_id!r} is not served here", "MODEL_NOT_FOUND")
    return JSONResponse(_model(request, model_id))


# ------------------------------------------------------------ transcriptions


def _options(svc: NodeParts, received: Received) -> Options:
    fields, lists = received.fields, received.lists
    model = (fields.get("model") or "").strip()
    if model:
        check_model(svc, model)
    fmt = (fields.get("response_format") or "json").strip()
    if fmt not in FORMATS:
        raise ApiError(422, f"response_format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    granularities = tuple(dict.fromkeys(v.strip() for v in [*lists.get("timestamp_granularities[]", []),
                                                            *lists.get("timestamp_granularities", [])]))
    if any(g not in GRANULARITIES for g in granularities):
        raise ApiError(422, "timestamp_granularities[] must be word and/or segment")
    if granularities and fmt != "verbose_json":
        raise ApiError(422, "timestamp_granularities[] needs response_format=verbose_json")
    stream = (fields.get("stream") or "false").strip().lower()
    if stream not in ("true", "false", "1", "0"):
        raise ApiError(422, f"stream must be true or false, not {stream!r}")
    if stream in ("true", "1") and fmt not in ("json", "text"):
        raise ApiError(422, f"stream=true works with response_format json or text, not {fmt}")
    language = (fields.get("language") or "").strip() or None
    if language is not None and not (2 <= len(language) <= 8 and language.replace("-", "").isalpha()):
        raise ApiError(422, f"language must be an ISO 639-1 code, not {language!r}")
    temperature = (fields.get("temperature") or "").strip()
    if temperature:
        try:
            float(temperature)
        except ValueError:
            raise ApiError(422, f"temperature must be a number, not {temperature!r}") from None
    return Options(response_format=fmt, granularities=granularities or ("segment",), stream=stream in ("true", "1"),
                   language=language, prompt=(fields.get("prompt") or "").strip() or None,
                   key_terms=form_key_terms(fields.get("key_terms")))


def _slots(request: Request) -> asyncio.Semaphore:
    """The concurrency limit of this route (created, and a crash's leftovers swept, on first use)."""
    slots = getattr(request.app.state, "openai_slots", None)
    if slots is None:
        svc = services(request)
        slots = request.app.state.openai_slots = asyncio.Semaphore(svc.settings.rest_workers)
        _sweep(svc.settings.data_path / SCRATCH, before=rest_of(request).started_at)
    return slots


def _sweep(root: Path, before: float) -> None:
    """Scratch directories older than this process were left by a crash: nobody answers for them now."""
    with contextlib.suppress(OSError):
        for d in root.glob("openai-*"):
            if d.stat().st_mtime < before:
                shutil.rmtree(d, ignore_errors=True)


async def _transcribe(svc: NodeParts, path: Path, opts: Options,
                      on_segment: Callable[[dict[str, Any]], Awaitable[None]] | None = None
                      ) -> tuple[list[dict[str, Any]], float]:
    """(final segments in time order, audio duration); nothing is stored or broadcast."""
    found: list[dict[str, Any]] = []

    async def collect(msg: Transcription) -> None:
        if msg.is_final and msg.text.strip():
            seg = segment_row(msg)
            found.append(seg)
            if on_segment is not None:
                await on_segment(seg)

    result = await transcribe_file(svc, path.parent.name, path, emit=collect, publish_status=False,
                                   language=opts.language, prompt=opts.prompt, key_terms=opts.key_terms,
                                   max_seconds=svc.settings.max_audio_seconds)
    if result.limit_seconds is not None:
        raise too_long(result.limit_seconds)
    if result.error:
        raise ApiError(422, f"the file could not be transcribed: {result.error}", "AUDIO_DECODE_ERROR")
    return sorted(found, key=lambda s: (s["start"], s["end"])), result.duration


def _language(svc: NodeParts, opts: Options) -> str:
    english_only = svc.loop is not None and getattr(svc.loop.backend, "english_only", False)
    code = opts.language or ("en" if english_only else svc.settings.language)
    return _LANGUAGE_NAMES.get(code or "", code or "unknown")


def _usage(duration: float) -> dict[str, Any]:
    return DurationUsage(seconds=math.ceil(duration)).model_dump()


def _text(segments: list[dict[str, Any]]) -> str:
    return " ".join(s["text"].strip() for s in segments)


def _verbose(svc: NodeParts, opts: Options, segments: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    out = TranscriptionVerboseJson(language=_language(svc, opts), duration=round(duration, 3), text=_text(segments),
                                   usage=DurationUsage(seconds=math.ceil(duration)))
    if "segment" in opts.granularities:
        out.segments = [_verbose_segment(i, s) for i, s in enumerate(segments)]
    if "word" in opts.granularities:
        out.words = [VerboseWord(word=w["text"].strip(), start=w["start"], end=w["end"])
                     for s in segments for w in s.get("words") or [] if w["text"].strip()]
    return out.model_dump(exclude_none=True)


def _verbose_segment(i: int, seg: dict[str, Any]) -> VerboseSegment:
    text = " " + seg["text"].strip()  # Whisper's segments start with the space before their first word
    probs = [max(1e-6, w["probability"]) for w in seg.get("words") or []] or [max(1e-6, seg.get("confidence") or 0)]
    raw = text.encode()
    return VerboseSegment(id=i, seek=int(round(seg["start"] * 100)), start=seg["start"], end=seg["end"], text=text,
                          tokens=[], temperature=0.0, avg_logprob=round(sum(map(math.log, probs)) / len(probs), 4),
                          compression_ratio=round(len(raw) / len(zlib.compress(raw)), 4), no_speech_prob=0.0)


def _render(svc: NodeParts, opts: Options, segments: list[dict[str, Any]], duration: float) -> Response:
    fmt = opts.response_format
    if fmt == "json":
        return JSONResponse(TranscriptionJson(text=_text(segments), usage=_usage(duration)).model_dump())
    if fmt == "verbose_json":
        return JSONResponse(_verbose(svc, opts, segments, duration))
    if fmt == "srt":
        return Response(exports.as_srt(segments), media_type="application/x-subrip; charset=utf-8")
    if fmt == "vtt":
        return Response(exports.as_webvtt(segments), media_type="text/vtt; charset=utf-8")
    return PlainTextResponse(_text(segments) + "\n")


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"


async def _events(svc: NodeParts, slots: asyncio.Semaphore, scratch: Path, path: Path, opts: Options
                  ) -> AsyncIterator[bytes]:
    """``transcript.text.delta`` per final segment as it is transcribed, then ``transcript.text.done``."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def on_segment(seg: dict[str, Any]) -> None:
        queue.put_nowait(seg)

    async def run() -> tuple[list[dict[str, Any]], float]:
        try:
            async with slots:
                return await _transcribe(svc, path, opts, on_segment)
        finally:  # here, not in the generator: a client that goes away cancels the generator's awaits
            queue.put_nowait(None)
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    task = asyncio.create_task(run(), name="openai-stream")
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved even if nobody reads it
    try:
        deltas: list[str] = []
        while (seg := await queue.get()) is not None:
            delta = ("" if not deltas else " ") + seg["text"].strip()
            deltas.append(delta)
            yield _sse({"type": "transcript.text.delta", "delta": delta})
        try:
            await task
        except ApiError as exc:
            yield _sse({"type": "error", "error": {"code": exc.code, "message": exc.message, "details": exc.details}})
            return
        except Exception:
            log.exception("streamed transcription failed")
            yield _sse({"type": "error", "error": {"code": "INTERNAL_ERROR", "message": "internal server error",
                                                   "details": {}}})
            return
        yield _sse({"type": "transcript.text.done", "text": "".join(deltas)})
    finally:
        task.cancel()  # the client went away (or it is done already)


async def create_transcription(request: Request) -> Response:
    """Transcribe an audio file (OpenAI's audio transcription API)."""
    svc = transcriber(request)
    slots = _slots(request)
    scratch = svc.settings.data_path / SCRATCH / f"openai-{uuid.uuid4().hex}"
    streaming = False
    try:
        received = await receive_audio(request, scratch, limit=svc.settings.max_upload_mb << 20, stem="audio")
        opts = _options(svc, received)
        refuse_declared(await probe_upload(received.path), svc.settings.max_audio_seconds)
        if opts.stream:
            streaming = True
            return StreamingResponse(_events(svc, slots, scratch, received.path, opts), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        t0 = time.perf_counter()
        async with slots:
            segments, duration = await _transcribe(svc, received.path, opts)
        log.info("transcribed %.1f s of audio in %.2f s (%s)", duration, time.perf_counter() - t0,
                 opts.response_format)
        return _render(svc, opts, segments, duration)
    finally:
        if not streaming:  # a stream removes its file when it ends
            await asyncio.to_thread(shutil.rmtree, scratch, True)


routes = [
    Route("/v1/audio/transcriptions", create_transcription, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id}", get_model, methods=["GET"]),
]

document("POST", "/v1/audio/transcriptions", "Transcribe a file (OpenAI-compatible)", TAG, body=TranscriptionForm,
         body_kind="multipart",
         description="The OpenAI audio transcription API: point an OpenAI client's base URL at /v1. json ->"
                     " {text, usage}; verbose_json -> {task, language, duration, text, segments, words, usage};"
                     " text, srt and vtt -> the text itself. stream=true answers with server-sent events"
                     " `transcript.text.delta` ({type, delta}) per segment and a final `transcript.text.done`"
                     " ({type, text}). Nothing is stored.",
         responses={200: (TranscriptionJson, "the transcription (shape and type by response_format)"),
                    413: (None, "file too large (PAYLOAD_TOO_LARGE), or its audio longer than"
                                " VOXLANE_MAX_AUDIO_SECONDS (AUDIO_TOO_LONG, details.limit_seconds)"),
                    415: (None, "unsupported audio"),
                    422: (None, "unreadable audio, unknown model, bad field")})
document("GET", "/v1/models", "List models (OpenAI-compatible)", TAG,
         responses={200: (OpenAIModelList, "the served model and the OpenAI ids that mean it")})
document("GET", "/v1/models/{model_id}", "Read a model (OpenAI-compatible)", TAG,
         responses={200: (OpenAIModel, "the model"), 404: (None, "not an id of the list (MODEL_NOT_FOUND)")})
