"""``POST /v1/listen``: Deepgram's pre-recorded transcription, through the one job runner.

The body is the audio (any content type the upload routes take; raw ``linear16``/``mulaw``/``alaw`` with
``encoding`` and ``sample_rate``) or JSON ``{"url": ...}``, fetched through the outbound-URL guard like every URL
a user gives the server. The file becomes a transcript with a job, exactly as ``POST /v1/transcribe`` makes one;
the request waits for it and answers in Deepgram's shape, with ``metadata.request_id`` the transcript's id (it
stays readable over REST). Query parameters as the live route reads them (protocol.deepgram), plus
``utterances``. ``callback`` is refused: nothing is posted back.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import time
import uuid
import wave
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from media.g711 import g711_to_pcm16
from protocol.deepgram import (
    DgWord,
    ListenParams,
    ParamError,
    ResultsChannel,
    alternative,
    dg_word,
    parse_listen_params,
)
from server.features.speakers import named_segments
from server.http.audio_limits import refuse_declared
from server.http.auth import principal
from server.http.errors import ApiError
from server.http.openapi import Param, document
from server.http.outbound import OutboundGuard, OutboundRefused, guarded_client
from server.http.uploads import EXTENSIONS, Received, probe_upload, receive_for_store, too_large
from server.jobs.recorded import transcribe_job
from server.pipeline.recordings import upload_key
from server.routes.common import json_body, transcriber
from server.routes.deepgram_ws import LIVE_QUERY, TAG, served_model
from server.routes.parts import NodeParts
from server.storage.base import new_id

WAIT_POLL_S = 0.2
RAW = {"linear16": None, "mulaw": "pcmu", "alaw": "pcma"}


class UrlSource(BaseModel):
    url: str = Field(min_length=1, max_length=2048, description="an http(s) URL of the audio")


class Utterance(BaseModel):
    start: float
    end: float
    confidence: float
    channel: int
    transcript: str
    words: list[DgWord]
    speaker: int | None = None
    id: str


class ResultsOut(BaseModel):
    channels: list[ResultsChannel]
    utterances: list[Utterance] | None = None


class PrerecordedMetadata(BaseModel):
    transaction_key: str = "deprecated"
    request_id: str = Field(description="the voxlane transcript that holds the result")
    sha256: str
    created: str
    duration: float
    channels: int
    models: list[str]
    model_info: dict[str, Any]


class PrerecordedResponse(BaseModel):
    metadata: PrerecordedMetadata
    results: ResultsOut


def _bad(exc: ParamError) -> ApiError:
    return ApiError(400, str(exc), "INVALID_PARAMS")


async def _fetch(svc: NodeParts, url: str, dest: Path, limit: int) -> int:
    """The URL's body into ``dest`` (guarded: no internal address, no redirect), bounded by ``limit`` bytes."""
    size = 0
    try:
        async with guarded_client(OutboundGuard(svc.settings), timeout=svc.settings.platform_timeout) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise ApiError(400, f"the url answered HTTP {response.status_code}", "URL_FETCH_FAILED")
            with dest.open("wb") as f:  # noqa: ASYNC230 - chunks of a stream, written as they arrive
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise too_large(limit)
                    f.write(chunk)
    except OutboundRefused as exc:
        raise ApiError(400, f"the url is refused: {exc.message}", exc.code) from None
    except ApiError:
        raise
    except Exception as exc:  # httpx's connection and protocol errors
        raise ApiError(400, f"the url could not be fetched: {type(exc).__name__}", "URL_FETCH_FAILED") from None
    return size


async def _raw_wav(request: Request, dest: Path, params: ListenParams, limit: int) -> int:
    """Raw PCM or G.711 (nothing in it says what it is) as a WAV file the decoder reads."""
    g711 = RAW[params.encoding or ""]
    size = 0
    out = await asyncio.to_thread(wave.open, str(dest), "wb")
    try:
        out.setnchannels(params.channels)
        out.setsampwidth(2)
        out.setframerate(params.sample_rate or 16000)
        async for data in request.stream():
            size += len(data)
            if size > limit:
                raise too_large(limit)
            await asyncio.to_thread(out.writeframesraw, g711_to_pcm16(data, g711) if g711 else data)
    finally:
        await asyncio.to_thread(out.close)
    return size


async def _receive(request: Request, svc: NodeParts, tid: str, params: ListenParams) -> Received:
    limit = svc.settings.max_upload_mb << 20
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    folder = svc.audio.incoming_dir(tid)
    if ctype != "application/json" and params.encoding not in RAW:
        return await receive_for_store(request, svc.audio, tid, limit=limit)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    path = folder / f".incoming-{uuid.uuid4().hex}"
    try:
        if ctype == "application/json":
            size = await _fetch(svc, (await json_body(request, UrlSource)).url, path, limit)
        else:
            size = await _raw_wav(request, path, params, limit)
        if size == 0:
            raise ApiError(422, "the file is empty", "EMPTY_FILE")
        names = str((await probe_upload(path)).get("format") or "").split(",")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Received(path, size, next((f for f in EXTENSIONS if f in names), "bin"))


async def _wait(svc: NodeParts, tid: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        row = await svc.store.get_transcript(tid)
        if row is None:
            raise ApiError(404, "the transcript was deleted while it was transcribed", "TRANSCRIPT_NOT_FOUND")
        if row["status"] in ("completed", "failed"):
            return row
        if time.monotonic() > deadline:
            raise ApiError(504, f"the transcription took over {within:.0f} s; it goes on as transcript {tid}",
                           "TIMEOUT", {"transcript_id": tid})
        await asyncio.sleep(WAIT_POLL_S)


async def listen_prerecorded(request: Request) -> Response:
    """Transcribe a file or a URL (Deepgram's pre-recorded API)."""
    svc = transcriber(request)
    try:
        params = parse_listen_params(request.query_params.multi_items(), live=False)
    except ParamError as exc:
        raise _bad(exc) from None
    if params.url_callback is not None:
        raise ApiError(400, "callback is not served: the result is this request's answer", "INVALID_PARAMS")
    tid = new_id()
    try:
        received = await _receive(request, svc, tid, params)
        info = await probe_upload(received.path)
        refuse_declared(info, svc.settings.max_audio_seconds)
        sha = await asyncio.to_thread(_sha256, received.path)
        options = {"language": params.language, "diarization": params.diarize, "split_channels": params.multichannel,
                   "channels": info.get("channels"), **({"key_terms": params.key_terms} if params.key_terms else {})}
        key = upload_key(tid, received.extension)
        await svc.audio.put_file(key, received.path)
        received.release()
        async with svc.store.transaction():
            await svc.store.create_transcript(transcript_id=tid, name="Deepgram pre-recorded",
                                              owner=principal(request).user, status="processing",
                                              source_language=params.language, meta={"job": options})
            await svc.store.create_chunk(transcript_id=tid, kind="job", status="uploaded", path=key,
                                         format=received.format, size=received.size, duration=info.get("duration"),
                                         options=options, chunk_id=(chunk_id := new_id()))
            await svc.jobs.stage([transcribe_job(chunk_id)])
    except BaseException:
        await svc.audio.delete_prefix(tid)
        raise
    row = await _wait(svc, tid, within=max(600.0, 2 * float(info.get("duration") or 0)))
    if row["status"] == "failed":
        raise ApiError(422, f"the file could not be transcribed: {row.get('error') or 'unreadable audio'}",
                       "AUDIO_DECODE_ERROR", {"transcript_id": tid})
    channels = int(info.get("channels") or 1) if params.multichannel else 1
    body = _response(svc, params, tid, sha, await named_segments(svc.store, row), float(row.get("duration") or 0),
                     channels)
    return JSONResponse(body.model_dump(exclude_none=True), headers={"dg-request-id": tid})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _response(svc: NodeParts, params: ListenParams, tid: str, sha: str, segments: list[dict[str, Any]],
              duration: float, channels: int) -> PrerecordedResponse:
    speakers: dict[str, int] = {}
    per_channel: list[list[Any]] = [[] for _ in range(channels)]
    utterances: list[Utterance] = []
    for seg in segments:
        pid = str(seg.get("participant_id") or "")
        channel = int(pid.removeprefix("channel-")) - 1 if pid.startswith("channel-") and pid[8:].isdigit() else 0
        if not 0 <= channel < channels:
            continue
        label = seg.get("speaker")
        speaker = speakers.setdefault(label, len(speakers)) if params.diarize and label else None
        words = [dg_word(w, speaker) for w in seg.get("words") or []]
        per_channel[channel].extend(words)
        alt = alternative(words, params.formatted)
        utterances.append(Utterance(start=seg["start"], end=seg["end"], confidence=alt.confidence, channel=channel,
                                    transcript=alt.transcript, words=words,
                                    speaker=speaker, id=str(seg["id"])))
    out_channels = [ResultsChannel(alternatives=[alternative(words, params.formatted)]) for words in per_channel]
    info, model_uuid = served_model(svc)
    created = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
    meta = PrerecordedMetadata(request_id=tid, sha256=sha, created=created, duration=round(duration, 3),
                               channels=channels, models=[model_uuid], model_info={model_uuid: info.model_dump()})
    return PrerecordedResponse(metadata=meta, results=ResultsOut(
        channels=out_channels, utterances=utterances if params.utterances else None))


routes = [Route("/v1/listen", listen_prerecorded, methods=["POST"])]

document("POST", "/v1/listen", "Transcribe a file or URL (Deepgram-compatible)", TAG, body=UrlSource,
         description="Deepgram's pre-recorded API: the body is the audio (audio/*, application/octet-stream; raw"
                     " linear16/mulaw/alaw with encoding and sample_rate) or JSON {\"url\"} (fetched through the"
                     " outbound-URL guard). The file is transcribed as a job (a transcript, metadata.request_id)"
                     " and the answer waits for it: metadata, results.channels[].alternatives[0] (transcript,"
                     " confidence, words), results.utterances with utterances=true.",
         query=[*[p for p in LIVE_QUERY if p.name not in ("interim_results", "vad_events", "utterance_end_ms",
                                                          "endpointing")],
                Param("utterances", "true: results.utterances, one per voxlane segment", "boolean")],
         responses={200: (PrerecordedResponse, "the transcription"),
                    400: (None, "a bad parameter, a refused or failing url"),
                    413: (None, "file too large, or its audio longer than VOXLANE_MAX_AUDIO_SECONDS"),
                    415: (None, "unsupported audio"), 422: (None, "unreadable audio"),
                    504: (None, "the transcription outlasted the wait; it goes on as details.transcript_id")})
