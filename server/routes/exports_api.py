"""Getting transcripts out: a conversation's text, a project's transcripts (zip of Markdown) and its conversation
table (CSV, XLSX), and the meeting-bot downloads of any transcript (participants, participant events, speaker
timeline, words per participant, per-participant audio). Scope ``export`` in private mode (see
:data:`server.http.scopes._EXPORT_PATH`); the audio parts themselves download like the transcript's audio.

Renderings live in :mod:`server.features.exports`; this module only loads rows and streams responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import struct
import tempfile
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from media import DecodeError, float_to_s16, iter_decode_file
from protocol.messages import participant_key
from server.features import exports
from server.features.speakers import named_segments
from server.http.errors import ApiError
from server.http.openapi import Param, document
from server.http.stored_audio import audio_response
from server.http.visibility import visible_transcript
from server.pipeline.recordings import recording_key
from server.routes.common import public_base, services
from server.routes.projects import load_project
from server.routes.transcripts_audio import audio_key
from server.storage.audio import AudioStore
from server.storage.audio.wav import stored_wav_layout

TAG = "exports"
PAGE = 25  # conversations read per query while an export streams: what the server holds besides one conversation


class Stamp(BaseModel):
    absolute: str = Field(description="ISO 8601")
    relative: float = Field(description="seconds from the start of the recording")


class RelativeStamp(BaseModel):
    relative: float


class MeetingParticipant(BaseModel):
    id: int = Field(description="Numeric participant id (not unique across transcripts): an integer id as it was"
                                " sent, a plain-decimal text id's number, else a number from 1")
    name: str | None
    is_host: bool | None
    platform: str | None
    extra_data: dict[str, Any] | None = Field(description="For a declared participant, `participant_id` is its id"
                                                          " as it was sent (text or integer, JSON type kept)")


class ParticipantRef(BaseModel):
    id: int
    name: str | None


class ChatData(BaseModel):
    text: str
    to: str = Field(description="everyone | only_bot")


class ParticipantEvent(BaseModel):
    id: str
    action: str = Field(description="join | leave | update | speech_on | speech_off | webcam_on | webcam_off |"
                                    " screenshare_on | screenshare_off | chat_message")
    participant: MeetingParticipant
    timestamp: Stamp
    data: ChatData | None


class TimelineEntry(BaseModel):
    participant: MeetingParticipant
    start_timestamp: Stamp
    end_timestamp: Stamp


class DownloadWord(BaseModel):
    text: str
    start_timestamp: RelativeStamp
    end_timestamp: RelativeStamp


class ParticipantWords(BaseModel):
    participant: ParticipantRef
    words: list[DownloadWord]


class AudioPart(BaseModel):
    id: str
    participant: MeetingParticipant
    start_timestamp: Stamp
    duration: float
    download_url: str


# ------------------------------------------------------------ loading


async def _visible_transcript(request: Request, transcript_id: str, missing: str = "transcript not found",
                              code: str = "TRANSCRIPT_NOT_FOUND") -> dict[str, Any]:
    return await visible_transcript(request, transcript_id, missing=missing, code=code)


async def _project_conversations(request: Request, project_id: str
                                 ) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]]:
    """(conversation, transcript, segments) of a project, oldest first, one conversation at a time."""
    store = services(request).store
    offset = 0
    while True:
        batch = await store.list_conversations(project_id, offset=offset, limit=PAGE)
        for conv in batch:
            transcript = await store.get_transcript(conv["id"])
            if transcript is not None:
                yield conv, transcript, await named_segments(store, transcript)
        if len(batch) < PAGE:
            return
        offset += PAGE


def _slug(text: str | None, fallback: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text or "").strip("-").lower()[:60] or fallback


# ------------------------------------------------------------ conversation text, project zip and tables


async def conversation_transcript(request: Request) -> Response:
    """A conversation's transcript as plain text (speaker names where known)."""
    cid = request.path_params["conversation_id"]
    row = await _visible_transcript(request, cid, "conversation not found", "CONVERSATION_NOT_FOUND")
    segments = await named_segments(services(request).store, row)
    return Response(exports.as_text(segments), media_type="text/plain; charset=utf-8",
                    headers={"Content-Disposition": f'inline; filename="{_slug(row.get("name"), cid)}.txt"'})


async def project_transcripts(request: Request) -> Response:
    """Every conversation of the project as one Markdown file each, in a zip streamed as it is built."""
    project = await load_project(request)

    async def entries() -> AsyncIterator[tuple[str, Any, str]]:
        index = 0
        async for conv, transcript, segments in _project_conversations(request, project["id"]):
            index += 1
            text = exports.as_markdown(transcript, segments, conv)
            yield exports.zip_entry_name(index, transcript), exports.parse_time(transcript["created_at"]), text

    name = f"{_slug(project['title'], 'project')}-transcripts.zip"
    return StreamingResponse(exports.zip_stream(entries(), run=asyncio.to_thread), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _bom(request: Request) -> bool:
    return request.query_params.get("bom", "").lower() in ("1", "true", "yes")


async def project_csv(request: Request) -> Response:
    """One row per conversation: id, name, tags, created, duration, status, speakers, word count."""
    project = await load_project(request)
    bom = _bom(request)

    async def lines() -> AsyncIterator[bytes]:
        yield (("\ufeff" if bom else "") + exports.csv_line(exports.TABLE_COLUMNS)).encode()
        async for conv, transcript, segments in _project_conversations(request, project["id"]):
            row = exports.table_row(transcript, conv, segments)
            yield exports.csv_line(row[c] for c in exports.TABLE_COLUMNS).encode()

    name = f"{_slug(project['title'], 'project')}-conversations.csv"
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def project_xlsx(request: Request) -> Response:
    """The same table as an Excel workbook."""
    project = await load_project(request)
    rows = [exports.table_row(transcript, conv, segments)
            async for conv, transcript, segments in _project_conversations(request, project["id"])]
    fd, path = tempfile.mkstemp(suffix=".xlsx", prefix="voxlane-export-")
    os.close(fd)
    try:
        await asyncio.to_thread(exports.write_xlsx, path, rows, project["title"])
    except BaseException:
        _unlink(path)
        raise
    name = f"{_slug(project['title'], 'project')}-conversations.xlsx"
    return FileResponse(path, filename=name, background=BackgroundTask(_unlink, path),
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# ------------------------------------------------------------ meeting-bot downloads


async def meeting_of(request: Request) -> tuple[dict[str, Any], list[dict[str, Any]], exports.Roster]:
    row = await _visible_transcript(request, request.path_params["transcript_id"])
    store = services(request).store
    segments = await named_segments(store, row)
    conv = await store.get_conversation(row["id"])
    return row, segments, exports.Roster(row, segments, default_name=(conv or {}).get("name"))


async def download_participants(request: Request) -> Response:
    """Participants (speakers stand in where none were declared)."""
    _, _, roster = await meeting_of(request)
    return JSONResponse(exports.participants_download(roster))


async def download_participant_events(request: Request) -> Response:
    """Participant events: recorded ones, and join/leave/speech_on/speech_off derived from speech."""
    row, segments, roster = await meeting_of(request)
    return JSONResponse(exports.participant_events_download(row, segments, roster))


async def download_speaker_timeline(request: Request) -> Response:
    """Who spoke when."""
    row, segments, roster = await meeting_of(request)
    return JSONResponse(exports.speaker_timeline_download(row, segments, roster))


async def download_transcript(request: Request) -> Response:
    """Words with timings, per participant turn."""
    _, segments, roster = await meeting_of(request)
    return JSONResponse(exports.transcript_download(segments, roster))


async def download_audio_parts(request: Request) -> Response:
    """Per-participant audio, each with a download_url."""
    row, segments, roster = await meeting_of(request)
    parts = await _audio_parts(request, row, segments, roster)
    timeline = exports.Timeline(row)
    base = public_base(request)
    return JSONResponse([{"id": p["id"], "participant": p["person"].full(), "start_timestamp": timeline.stamp(
        p["start"]), "duration": round(p["duration"], 3), "download_url": f"{base}/v1/transcripts_audio/{row['id']}"
        f"/parts/{p['id']}/download"} for p in parts])


async def _wav_duration(audio: AudioStore, key: str) -> float | None:
    layout = await stored_wav_layout(audio, key)
    return None if layout is None else layout.data_bytes / (layout.sample_width * layout.channels) / layout.sample_rate


async def _audio_parts(request: Request, row: dict[str, Any], segments: list[dict[str, Any]],
                       roster: exports.Roster) -> list[dict[str, Any]]:
    """Live participants' own recordings; else the whole recording for each speaker standing in for a
    participant (with the others' speech silenced when there are several)."""
    svc = services(request)
    joined: dict[str, float] = {}
    for ev in exports.participant_event_log(row):
        if ev["type"] == "join" and ev.get("participant_id") is not None:
            joined.setdefault(participant_key(ev["participant_id"]), float(ev.get("time") or 0.0))
    parts: list[dict[str, Any]] = []
    for person in roster:
        pid = person.participant_key  # 1 and "1" alike: one participant, one recording
        if pid is None:
            continue
        key = recording_key(row["id"], pid)
        duration = await _wav_duration(svc.audio, key)
        if duration is None:
            continue
        first_word = min((s["start"] for s in segments if participant_key(s.get("participant_id")) == pid),
                         default=0.0)
        parts.append({"id": f"participant-{person.id}", "person": person, "key": key, "mask": None,
                      "start": joined.get(pid, max(0.0, first_word)), "duration": duration})
    if parts:
        return parts
    stand_ins = [p for p in roster if p.participant_key is None]
    if not stand_ins:
        return []
    try:
        key = await audio_key(request, row)
    except ApiError:
        return []
    duration = float(row.get("duration") or 0.0) or await _wav_duration(svc.audio, key) or 0.0
    for person in stand_ins:
        spans = None if len(stand_ins) == 1 else [(s["start"], s["end"]) for s in segments
                                                  if roster.of(s) is person]
        parts.append({"id": "recording" if spans is None else f"speaker-{person.id}", "person": person,
                      "key": key, "mask": spans, "start": 0.0, "duration": duration})
    return parts


async def audio_part(request: Request) -> Response:
    """One audio part of the audio_parts download (a participant's own recording, or a speaker's)."""
    row, segments, roster = await meeting_of(request)
    part = next((p for p in await _audio_parts(request, row, segments, roster)
                 if p["id"] == request.path_params["part_id"]), None)
    if part is None:
        raise ApiError(404, "no such audio part", "AUDIO_PART_NOT_FOUND")
    audio, key = services(request).audio, part["key"]
    if part["mask"] is None:
        suffix = PurePosixPath(key).suffix
        return await audio_response(request, audio, key, filename=f"{row['id']}-{part['id']}{suffix}",
                                    media_type="audio/wav" if suffix == ".wav" else "application/octet-stream")
    total = int(round(part["duration"] * 16000))
    return StreamingResponse(_masked_wav(audio, key, part["mask"], total), media_type="audio/wav", headers={
        "Content-Disposition": f'attachment; filename="{row["id"]}-{part["id"]}.wav"',
        "Content-Length": str(44 + total * 2)})


async def _masked_wav(audio: AudioStore, key: str, spans: list[tuple[float, float]], total: int
                      ) -> AsyncIterator[bytes]:
    """16 kHz mono WAV of ``total`` samples: the file's audio inside ``spans``, silence elsewhere."""
    yield struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + total * 2, b"WAVE", b"fmt ", 16, 1, 1, 16000, 32000, 2, 16,
                      b"data", total * 2)
    pos = 0
    with contextlib.suppress(FileNotFoundError):  # gone since it was listed: silence, at the declared length
        async with audio.local_path(key) as path:  # on S3 a scratch copy, removed once streamed
            blocks = iter_decode_file(path, chunk_seconds=10.0)
            while pos < total:
                try:
                    block = await asyncio.to_thread(next, blocks, None)
                except DecodeError:
                    block = None
                if block is None:
                    break
                block = block[:total - pos].copy()
                keep = np.zeros(len(block), dtype=bool)
                for start, end in spans:
                    a, b = max(0, int(start * 16000) - pos), min(len(block), int(end * 16000) - pos)
                    if a < b:
                        keep[a:b] = True
                block[~keep] = 0.0
                yield float_to_s16(block)
                pos += len(block)
    while pos < total:  # the declared length is kept whatever the decoder produced
        n = min(total - pos, 160000)
        yield bytes(2 * n)
        pos += n


T = "/v1/transcripts/{transcript_id}/download"
routes = [
    Route("/api/conversations/{conversation_id}/transcript", conversation_transcript, methods=["GET"]),
    Route("/api/projects/{project_id}/transcripts", project_transcripts, methods=["GET"]),
    Route("/api/projects/{project_id}/export.csv", project_csv, methods=["GET"]),
    Route("/api/projects/{project_id}/export.xlsx", project_xlsx, methods=["GET"]),
    Route(T + "/participants", download_participants, methods=["GET"]),
    Route(T + "/participant_events", download_participant_events, methods=["GET"]),
    Route(T + "/speaker_timeline", download_speaker_timeline, methods=["GET"]),
    Route(T + "/transcript", download_transcript, methods=["GET"]),
    Route(T + "/audio_parts", download_audio_parts, methods=["GET"]),
    Route("/v1/transcripts_audio/{transcript_id}/parts/{part_id}/download", audio_part, methods=["GET", "HEAD"]),
]

document("GET", "/api/conversations/{conversation_id}/transcript", "A conversation's transcript (plain text)", TAG,
         responses={200: (None, "text/plain")}, content_type="text/plain")
document("GET", "/api/projects/{project_id}/transcripts", "All of a project's transcripts (zip of Markdown)", TAG,
         description="One Markdown file per conversation (title, date, participants, then the transcript with"
                     " speaker names and timestamps); streamed while it is built.",
         responses={200: (None, "a zip archive")}, content_type="application/zip")
document("GET", "/api/projects/{project_id}/export.csv", "A project's conversations (CSV)", TAG,
         description="Columns: id, name, tags, created, duration, status, speakers, word_count. Text a spreadsheet"
                     " would run as a formula is prefixed with a single quote.",
         responses={200: (None, "text/csv")}, content_type="text/csv",
         query=[Param("bom", "1: start with a UTF-8 byte order mark (for Excel)", "string")])
document("GET", "/api/projects/{project_id}/export.xlsx", "A project's conversations (Excel)", TAG,
         responses={200: (None, "an XLSX workbook")},
         content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
document("GET", T + "/participants", "Meeting download: participants", TAG,
         description="Declared live participants, else speakers stand in (no speaker: one default participant).",
         responses={200: (MeetingParticipant, "participants")}, response_list=True)
document("GET", T + "/participant_events", "Meeting download: participant events", TAG,
         description="Recorded events (join/leave of live participants, events a bot sent) plus join, leave,"
                     " speech_on and speech_off derived from speech where none were recorded.",
         responses={200: (ParticipantEvent, "events in time order")}, response_list=True)
document("GET", T + "/speaker_timeline", "Meeting download: speaker timeline", TAG,
         responses={200: (TimelineEntry, "who spoke when")}, response_list=True)
document("GET", T + "/transcript", "Meeting download: words per participant", TAG,
         responses={200: (ParticipantWords, "one entry per turn, with word timings")}, response_list=True)
document("GET", T + "/audio_parts", "Meeting download: per-participant audio", TAG,
         responses={200: (AudioPart, "audio parts with download URLs")}, response_list=True)
document("GET", "/v1/transcripts_audio/{transcript_id}/parts/{part_id}/download", "Download one audio part", TAG,
         responses={200: (None, "the audio")}, content_type="audio/*",
         query=[Param("token", "bearer token, for clients that cannot send headers")])
