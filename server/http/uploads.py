"""Receiving audio files over HTTP: streamed to disk, never held whole in memory.

A body is either ``multipart/form-data`` (the audio in a ``file`` part, small text fields beside it) or the
raw audio bytes (``audio/*`` or ``application/octet-stream``, as a kiosk PUTs a chunk). Limits are enforced
before the body is read (``Content-Length``) and again while it streams (chunked bodies); the container is
sniffed from the first bytes, so an unsupported type is refused before the rest arrives. What is
acknowledged is on disk: the file is fsynced and renamed into place before the caller answers. A body bound for
the audio store (:func:`receive_for_store`) is then handed to it with ``put_file`` before the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from media import DecodeError, probe_file, sniff_container
from server.http.errors import ApiError
from server.routes.common import declared_length
from server.storage.audio import AudioStore
from server.storage.audio.incoming import hold
from server.storage.audio.local import fsync_dir

EXTENSIONS = {"wav": "wav", "ogg": "ogg", "webm": "webm", "flac": "flac", "mp3": "mp3", "mp4": "m4a", "aac": "aac"}
MEDIA_TYPES = {"wav": "audio/wav", "ogg": "audio/ogg", "webm": "audio/webm", "flac": "audio/flac",
               "mp3": "audio/mpeg", "m4a": "audio/mp4", "aac": "audio/aac"}
ACCEPTED = "WAV, MP3, M4A, FLAC, OGG, WebM"
MIN_RATE, MAX_RATE = 8000, 48000
MULTIPART_SLACK = 1 << 20  # boundaries and small fields on top of the file itself
FIELD_LIMIT = 64 * 1024
MAX_FIELDS = 32
FLUSH_BYTES = 1 << 20
SNIFF_BYTES = 12


@dataclass
class Received:
    path: Path
    size: int
    format: str
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)  # a repeated field: its last value
    lists: dict[str, list[str]] = field(default_factory=dict)  # every value of each field, in order
    held: Any = None
    """The received file, still open and locked (server.storage.audio.incoming) until :meth:`release` or until this
    object goes: a sweep of unacknowledged bodies on any process leaves it alone meanwhile."""

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.format, self.format)

    def release(self) -> None:
        """The file was stored or dropped: its lock goes."""
        if self.held is not None:
            with contextlib.suppress(OSError):
                self.held.close()
            self.held = None


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the file is larger than this server's limit of {limit // (1 << 20)} MB",
                    details={"max_bytes": limit})


def unsupported(detail: str) -> ApiError:
    return ApiError(415, f"{detail}; accepted formats: {ACCEPTED}", "UNSUPPORTED_MEDIA_TYPE",
                    {"accepted": ACCEPTED.split(", ")})


class _Sink:
    """One file being written: sniffs its first bytes, counts, enforces the limit, buffers writes."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.file = open(path, "wb")  # noqa: SIM115 - closed in discard() or by Received.release()
        hold(self.file)  # this body is ours until stored or dropped
        self.size = 0
        self.format: str | None = None
        self._head = bytearray()
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.limit:
            raise too_large(self.limit)
        if self.format is None:
            self._head += data[:SNIFF_BYTES]
            if len(self._head) >= SNIFF_BYTES:
                self._sniff()
        self._buf += data

    def _sniff(self) -> None:
        self.format = sniff_container(bytes(self._head[:SNIFF_BYTES]))
        if self.format is None:
            raise unsupported("the file is not audio in a supported format")

    @property
    def pending(self) -> int:
        return len(self._buf)

    async def flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            await asyncio.to_thread(self.file.write, data)

    async def close(self) -> None:
        if self.size == 0:
            raise ApiError(422, "the file is empty", "EMPTY_FILE")
        if self.format is None:
            self._sniff()
        await self.flush()
        await asyncio.to_thread(_sync, self.file)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def _sync(f: Any) -> None:
    """Flushed and on disk; left open, so its lock stays until the caller is done with the body."""
    f.flush()
    os.fsync(f.fileno())


def _prepare_dir(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(directory).free


async def receive_audio(request: Request, directory: Path, *, limit: int, stem: str = "upload",
                        field_name: str = "file") -> Received:
    """Stream the request's audio into ``directory/<stem>.<ext>``; fsynced before this returns."""
    ctype = request.headers.get("content-type", "")
    multipart = ctype.lower().startswith("multipart/form-data")
    raw = not ctype or ctype.lower().split(";")[0].strip() in ("application/octet-stream",) or ctype.lower(
    ).startswith(("audio/", "video/webm", "video/mp4", "video/ogg"))
    if not (multipart or raw):
        raise unsupported(f"content type {ctype.split(';')[0]!r} is not accepted: send multipart/form-data with a"
                          f" {field_name!r} part, or the audio bytes with an audio/* content type")
    declared = declared_length(request) or 0
    if declared > limit + (MULTIPART_SLACK if multipart else 0):
        raise too_large(limit)  # before a byte of the body is read
    free = await asyncio.to_thread(_prepare_dir, directory)
    if free < declared + (256 << 20):
        raise ApiError(507, "not enough free disk space for this upload", "INSUFFICIENT_STORAGE")
    tmp = directory / f".incoming-{uuid.uuid4().hex}"
    sink = _Sink(tmp, limit)
    try:
        if multipart:
            lists, filename = await _read_multipart(request, ctype, sink, field_name)
        else:
            lists, filename = {}, None
            async for data in request.stream():
                sink.feed(data)
                if sink.pending >= FLUSH_BYTES:
                    await sink.flush()
        await sink.close()
        final = directory / f"{stem}.{EXTENSIONS.get(sink.format or '', 'bin')}"
        await asyncio.to_thread(os.replace, tmp, final)
        await asyncio.to_thread(fsync_dir, directory)
    except BaseException:
        sink.discard()
        raise
    return Received(final, sink.size, sink.format or "", filename, {k: v[-1] for k, v in lists.items()}, lists,
                    held=sink.file)


async def receive_for_store(request: Request, audio: AudioStore, prefix: str, *, limit: int) -> Received:
    """:func:`receive_audio` into the audio store's incoming folder for ``prefix`` (``<tid>``, ``<tid>/chunks``),
    under a name of its own that starts with ``.incoming-`` (what a crash leaves there is swept, never taken
    for a stored file). The caller checks it, then stores it under its key with ``audio.put_file``."""
    return await receive_audio(request, audio.incoming_dir(prefix), limit=limit, stem=f".incoming-{uuid.uuid4().hex}")


async def _read_multipart(request: Request, ctype: str, sink: _Sink, field_name: str
                          ) -> tuple[dict[str, list[str]], str | None]:
    _, params = parse_options_header(ctype)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "multipart body without a boundary", "INVALID_MULTIPART")
    state: dict[str, Any] = {"headers": [], "field": b"", "value": b"", "target": None, "name": None,
                             "seen_file": False, "filename": None, "ended": False}
    values: list[tuple[str, bytearray]] = []

    def on_part_begin() -> None:
        state["headers"] = []
        state["target"] = None

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"].append((state["field"].lower(), state["value"]))
        state["field"] = state["value"] = b""

    def on_headers_finished() -> None:
        disposition = next((v for k, v in state["headers"] if k == b"content-disposition"), b"")
        _, options = parse_options_header(disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == field_name:
            if state["seen_file"]:
                raise ApiError(422, f"send one {field_name!r} part only")
            state["seen_file"] = True
            state["target"] = "file"
            raw_name = options.get(b"filename")
            state["filename"] = raw_name.decode("utf-8", "replace") if raw_name else None
        else:
            if len(values) >= MAX_FIELDS:
                raise ApiError(422, "too many form fields")
            state["target"] = "field"
            state["name"] = name
            values.append((name, bytearray()))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["target"] == "file":
            sink.feed(data[start:end])
        elif state["target"] == "field":
            buf = values[-1][1]
            buf += data[start:end]
            if len(buf) > FIELD_LIMIT:
                raise ApiError(422, f"form field {state['name']!r} is too long")

    def on_end() -> None:
        state["ended"] = True

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_end": on_end})
    total, most = 0, sink.limit + MULTIPART_SLACK  # the whole body too: preamble, headers, epilogue included
    try:
        async for data in request.stream():
            total += len(data)
            if total > most:
                raise too_large(sink.limit)
            parser.write(data)
            if sink.pending >= FLUSH_BYTES:
                await sink.flush()
        parser.finalize()
    except FormParserError as exc:
        raise ApiError(400, f"malformed multipart body: {exc}", "INVALID_MULTIPART") from None
    if not state["ended"]:
        raise ApiError(400, "the multipart body ended early", "INVALID_MULTIPART")
    if not state["seen_file"]:
        raise ApiError(422, f"the multipart body needs a {field_name!r} part with the audio", "MISSING_FILE")
    lists: dict[str, list[str]] = {}
    for name, buf in values:
        lists.setdefault(name, []).append(buf.decode("utf-8", "replace"))
    return lists, state["filename"]


async def probe_upload(path: Path) -> dict[str, Any]:
    """Check a received file is readable audio at 8-48 kHz; its duration, rate, channels, codec."""
    try:
        info = await asyncio.to_thread(probe_file, path)
    except DecodeError as exc:
        raise ApiError(422, f"the file could not be read as audio: {exc.message}", "AUDIO_DECODE_ERROR") from None
    rate = info.get("sample_rate") or 0
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ApiError(415, f"sample rate {rate} Hz is outside the supported 8-48 kHz", "UNSUPPORTED_SAMPLE_RATE",
                       {"sample_rate": rate, "min": MIN_RATE, "max": MAX_RATE})
    return info


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.strip() == "":
        return False
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ApiError(422, f"{name} must be true or false, not {value!r}")


def channel_options(request: Request, received: Received, info: dict[str, Any]) -> dict[str, Any]:
    """``split_channels`` (each channel its own participant) and its ``channel_names``, from the form fields or
    the query string (raw-body uploads have no fields); for a mixed file, an optional ``diarization`` flag."""
    split = _flag(received.fields.get("split_channels", request.query_params.get("split_channels")), "split_channels")
    names = received.lists.get("channel_names") or request.query_params.getlist("channel_names")
    names = [n.strip() for n in names]
    if names and not split:
        raise ApiError(422, "channel_names needs split_channels=true")
    diarize = received.fields.get("diarization", request.query_params.get("diarization"))
    if not split:  # a mixed file: its speakers are diarized unless the upload says not to
        return {} if diarize is None else {"diarization": _flag(diarize, "diarization")}
    channels = int(info.get("channels") or 1)
    if len(names) > channels or not all(0 < len(n) <= 200 for n in names):
        raise ApiError(422, f"channel_names: up to {channels} name(s) (one per channel, 1-200 characters each)",
                       details={"channels": channels})
    return {"split_channels": True, "channel_names": names or None}
