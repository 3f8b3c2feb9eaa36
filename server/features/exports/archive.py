"""A Markdown page per conversation, and a project's conversations as a streamed zip of them."""

from __future__ import annotations

import re
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import IO, Any, cast

from server.features.exports.meeting import parse_time, stretches
from server.features.exports.roster import Roster
from server.features.speakers import resolve_speakers


def hms(seconds: float | None) -> str:
    s = int(round(max(0.0, seconds or 0.0)))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def one_line(text: Any) -> str:
    """``text`` on one line, its runs of whitespace (newlines included) one space each; None is empty."""
    return " ".join(str(text if text is not None else "").split())


def as_markdown(transcript: dict[str, Any], segments: list[dict[str, Any]],
                conversation: dict[str, Any] | None = None) -> str:
    """Title, date, participants (and tags), then the transcript: one paragraph per turn, speaker and time."""
    conversation = conversation or {}
    segments = resolve_speakers(transcript, segments)
    roster = Roster(transcript, segments, default_name=conversation.get("name"))
    created = parse_time(transcript.get("created_at"))
    people = [p.label for p in roster]
    lines = [f"# {one_line(transcript.get('name') or transcript.get('id') or 'Transcript')}", "",
             f"- Date: {created.strftime('%Y-%m-%d %H:%M')} UTC",
             f"- Duration: {hms(transcript.get('duration'))}",
             f"- Participants: {', '.join(one_line(p) for p in people) if people else '(none)'}"]
    if conversation.get("tags"):
        lines.append(f"- Tags: {', '.join(one_line(t) for t in conversation['tags'])}")
    lines += [f"- Status: {transcript.get('status')}", f"- ID: {transcript.get('id')}", "", "## Transcript", ""]
    turns = stretches(segments, roster)
    if not turns:
        lines.append("_No speech was transcribed._")
    for person, start, _, segs in turns:
        text = one_line(" ".join(s["text"] for s in segs))
        lines += [f"**[{hms(start)}] {one_line(person.label)}:** {text}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def zip_entry_name(index: int, transcript: dict[str, Any]) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", transcript.get("name") or "").strip("-").lower()[:60] or "conversation"
    return f"{index:04d}-{slug}-{transcript['id'][:8]}.md"


class _Pipe:
    """A write-only, unseekable sink: ``zipfile`` then writes entries with data descriptors, streaming."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        return None

    def drain(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        self.size = 0
        return out


def _write_entry(zf: zipfile.ZipFile, name: str, when: datetime, text: str) -> None:
    info = zipfile.ZipInfo(name, date_time=when.astimezone(UTC).timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with zf.open(info, "w") as f:
        data = text.encode("utf-8")
        for i in range(0, len(data), 1 << 16):
            f.write(data[i:i + (1 << 16)])


async def zip_stream(entries: AsyncIterator[tuple[str, datetime, str]], run=None) -> AsyncIterator[bytes]:
    """A zip archive of ``(name, modified, text)`` entries, produced as the entries come: at most one entry's
    text and its compressed bytes are held at a time. ``run`` executes the compression (e.g. in a thread)."""
    pipe = _Pipe()
    zf = zipfile.ZipFile(cast(IO[bytes], pipe), "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)  # file-like
    try:
        async for name, when, text in entries:
            if run is None:
                _write_entry(zf, name, when, text)
            else:
                await run(_write_entry, zf, name, when, text)
            chunk = pipe.drain()
            if chunk:
                yield chunk
    finally:
        zf.close()
    tail = pipe.drain()
    if tail:
        yield tail
