"""Every rendering of a stored transcript, in one place (routes and the CLI both use this module).

Stored final segments in, text out: plain, timestamped, SRT, WebVTT with speaker voice tags, JSON with
words and a speaker timeline (``GET /v1/transcripts/{id}?transcript_format=...``); a Markdown page per
conversation and a streamed zip of them; a conversation table as CSV or XLSX (safe to open in a
spreadsheet); and the meeting-bot download shapes (participants, participant events, speaker timeline,
words per participant), where speakers stand in for participants that were never declared.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from protocol.messages import participant_key
from server.speakers import LABEL, rename_only, resolve_speakers, shown_speaker, speaker_names

FORMATS = {
    "text": "text/plain; charset=utf-8",
    "text-timestamped": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "webvtt-named": "text/vtt; charset=utf-8",
    "json": "application/json",
    "markdown": "text/markdown; charset=utf-8",
}


def clock(seconds: float, sep: str = ".") -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _speaker(seg: dict[str, Any]) -> str | None:
    return seg.get("speaker") or None


def as_text(segments: list[dict[str, Any]]) -> str:
    lines, last = [], object()
    for seg in segments:
        speaker = _speaker(seg)
        if speaker and speaker != last:
            lines.append(f"{speaker}: {seg['text']}")
        else:
            lines.append(seg["text"])
        last = speaker
    return "\n".join(lines) + ("\n" if lines else "")


def as_timestamped(segments: list[dict[str, Any]]) -> str:
    out = []
    for seg in segments:
        who = f" {_speaker(seg)}:" if _speaker(seg) else ""
        out.append(f"[{clock(seg['start'])[:8]}]{who} {seg['text']}")
    return "\n".join(out) + ("\n" if out else "")


def as_srt(segments: list[dict[str, Any]]) -> str:
    blocks = []
    for i, seg in enumerate(segments, 1):
        text = f"{_speaker(seg)}: {seg['text']}" if _speaker(seg) else seg["text"]
        end = max(seg["end"], seg["start"] + 0.001)
        blocks.append(f"{i}\n{clock(seg['start'], ',')} --> {clock(end, ',')}\n{text}\n")
    return "\n".join(blocks)


def as_webvtt(segments: list[dict[str, Any]]) -> str:
    blocks = ["WEBVTT\n"]
    for seg in segments:
        text = seg["text"].replace("-->", "->")
        if _speaker(seg):
            name = _speaker(seg).replace(">", "").replace("\n", " ")
            text = f"<v {name}>{text}"
        end = max(seg["end"], seg["start"] + 0.001)
        blocks.append(f"{clock(seg['start'])} --> {clock(end)}\n{text}\n")
    return "\n".join(blocks)


def as_json(transcript: dict[str, Any], segments: list[dict[str, Any]]) -> dict[str, Any]:
    timeline: list[dict[str, Any]] = []
    for seg in segments:
        speaker = _speaker(seg)
        if timeline and timeline[-1]["speaker"] == speaker and seg["start"] - timeline[-1]["end"] < 1.0:
            timeline[-1]["end"] = seg["end"]
        else:
            timeline.append({"speaker": speaker, "start": seg["start"], "end": seg["end"]})
    return {**transcript, "segments": segments, "speakers": sorted({s for s in (_speaker(x) for x in segments) if s}),
            "speaker_timeline": timeline, "text": " ".join(s["text"] for s in segments)}


RENDERERS = {"text": as_text, "text-timestamped": as_timestamped, "srt": as_srt, "webvtt-named": as_webvtt}
EXTENSIONS = {"text": "txt", "text-timestamped": "txt", "srt": "srt", "webvtt-named": "vtt", "json": "json",
              "markdown": "md"}


def render(fmt: str, transcript: dict[str, Any], segments: list[dict[str, Any]]) -> str | dict[str, Any]:
    segments = resolve_speakers(transcript, segments)  # renamed speakers (a no-op on resolved segments)
    if fmt == "json":
        return as_json(transcript, segments)
    if fmt == "markdown":
        return as_markdown(transcript, segments)
    return RENDERERS[fmt](segments)


# ---------------------------------------------------------------- who spoke: participants, or speakers standing in


@dataclass
class Person:
    """One participant in the meeting-bot shapes: integer id, name, host flag, platform, extra data.

    ``sent`` is a participant's id as its stream (or the ``participants`` list) gave it, with its JSON type; the
    shapes carry it as ``extra_data.participant_id``, and an integer one is also the shapes' ``id``."""

    key: tuple[str, str | None]
    id: int = 0
    name: str | None = None
    is_host: bool | None = None
    platform: str | None = None
    extra_data: dict[str, Any] | None = None
    sent: str | int | None = None

    def full(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "is_host": self.is_host, "platform": self.platform,
                "extra_data": self.extra_data}

    def short(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}

    @property
    def label(self) -> str:
        return self.name or (f"Participant {self.id}" if self.key[0] != "default" else "Speaker")

    @property
    def participant_id(self) -> str | int | None:
        """The participant id as sent (``None`` for a speaker standing in)."""
        return self.sent if self.key[0] == "participant" else None

    @property
    def participant_key(self) -> str | None:
        """Its text form: what file names and the segments column use."""
        return self.key[1] if self.key[0] == "participant" else None


def _is_participant(pid: Any) -> bool:
    """Whether a stored value names a participant (``0`` does; ``None`` and ``""`` are the anonymous stream)."""
    return pid is not None and pid != ""


def segment_key(seg: dict[str, Any], names: dict[str, str] | None = None) -> tuple[str, str | None]:
    if _is_participant(seg.get("participant_id")):
        return ("participant", participant_key(seg["participant_id"]))
    speaker = shown_speaker(seg, names) if names is not None else seg.get("speaker")
    if speaker:
        return ("speaker", str(speaker))
    return ("default", None)


class Roster:
    """The people of a transcript, in order of appearance.

    Live publishers that declared a ``participant`` are participants (their metadata from the transcript's
    ``participants`` list or their recorded ``join`` event); otherwise each diarized speaker stands in for
    one, and speech with no speaker at all belongs to one default participant (named ``default_name``,
    e.g. the kiosk conversation's participant). An integer participant id is its ``id``, and so is a text one
    that is a plain decimal; others are numbered from 1. ``extra_data.participant_id`` is the id as it was
    sent, JSON type kept: ``1`` stays ``1``, ``"007"`` stays ``"007"``. ``1`` and ``"1"`` are one participant.
    """

    def __init__(self, transcript: dict[str, Any], segments: list[dict[str, Any]],
                 default_name: str | None = None) -> None:
        self.names = speaker_names(transcript)  # renames: read-time, never written into segments
        segments = resolve_speakers(transcript, segments)
        events = participant_event_log(transcript)
        # the id as sent, by key: a stream's own (recorded events, then segments: resolved to the type sent)
        # before what the participants list says of it
        sent: dict[str, str | int] = {}
        for pid in [e.get("participant_id") for e in events] + [s.get("participant_id") for s in segments]:
            if _is_participant(pid):
                sent.setdefault(participant_key(pid), pid)
        renames = rename_only(transcript, segments, set(sent))
        declared: dict[str, dict[str, Any]] = {}
        for p in transcript.get("participants") or []:
            if isinstance(p, dict) and p.get("id") is not None and participant_key(p["id"]) not in renames:
                declared[participant_key(p["id"])] = p
                sent.setdefault(participant_key(p["id"]), p["id"])
        keys: list[tuple[str, str | None]] = [("participant", pid) for pid in declared]
        for ev in events:
            if _is_participant(ev.get("participant_id")):
                pid = participant_key(ev["participant_id"])
                keys.append(("participant", pid))
                if isinstance(ev.get("participant"), dict):  # what the stream declared, under what was set since
                    declared[pid] = {**ev["participant"], **declared.get(pid, {})}
        keys += [segment_key(s) for s in segments]
        self.people: dict[tuple[str, str | None], Person] = {}
        for key in dict.fromkeys(keys):
            self.people[key] = self._person(key, declared.get(key[1] or "", {}), segments, default_name,
                                            sent.get(key[1] or ""))
        taken = {number for p in self.people.values() if (number := meeting_number(p)) is not None}
        n = 0
        for person in self.people.values():
            number = meeting_number(person)
            if number is not None:
                person.id = number
                continue
            n += 1
            while n in taken:
                n += 1
            person.id = n

    @staticmethod
    def _person(key: tuple[str, str | None], meta: dict[str, Any], segments: list[dict[str, Any]],
                default_name: str | None, sent: str | int | None) -> Person:
        kind, value = key
        if kind == "participant":
            mine = [s for s in segments if participant_key(s.get("participant_id")) == value]
            spoken = next((s["speaker"] for s in mine if s.get("speaker")), None)  # resolved: renames included
            renamed = next((s["speaker"] for s in mine if s.get("speaker") != s.get(LABEL)), None)
            extra = meta.get("extra_data") if isinstance(meta.get("extra_data"), dict) else {}
            is_host, platform = meta.get("is_host"), meta.get("platform")  # as declared, which may be anything
            return Person(key, name=_text(renamed or meta.get("name") or spoken or value),
                          is_host=is_host if isinstance(is_host, bool) else None, platform=_text(platform),
                          extra_data={**extra, "participant_id": sent}, sent=sent)
        if kind == "speaker":
            labels = sorted({s[LABEL] for s in segments if segment_key(s) == key and s.get(LABEL)})
            return Person(key, name=value, extra_data={"speaker": labels[0] if len(labels) == 1 else value})
        return Person(key, name=default_name)

    def of(self, seg: dict[str, Any]) -> Person:
        return self.people[segment_key(seg, self.names)]

    def by_participant_id(self, participant_id: str | int | None) -> Person | None:
        if participant_id is None:  # an event of the anonymous stream: the default participant's
            return self.people.get(("default", None))
        return self.people.get(("participant", participant_key(participant_id)))

    def __iter__(self):
        return iter(self.people.values())

    def __len__(self) -> int:
        return len(self.people)


MAX_PARTICIPANT_ID = 256
"""Longest participant id the API accepts (a live stream's is shorter still): any text up to it round-trips."""
_NUMERIC_ID = re.compile(r"0|[1-9][0-9]{0,8}")


def numeric_id(participant_id: str | None) -> int | None:
    """The number a text participant id keeps in the meeting downloads: only a plain decimal (ASCII digits, no
    leading zero, below 10^9). Not ``str.isdigit``: it is true of "²" and "٣", which ``int`` refuses or reads
    as another number, and "007" would take the number of "7"."""
    return int(participant_id) if participant_id is not None and _NUMERIC_ID.fullmatch(participant_id) else None


def meeting_number(person: Person) -> int | None:
    """The ``id`` a participant has in the meeting downloads, where it has one of its own: an integer id as it
    was sent (the protocol bounds it to JavaScript's safe integers), or a text id that is a plain decimal."""
    if person.key[0] != "participant":
        return None
    if isinstance(person.sent, int) and not isinstance(person.sent, bool):
        return person.sent
    return numeric_id(person.sent if isinstance(person.sent, str) else person.key[1])


def _text(value: Any) -> str | None:
    """A declared name or platform as text (a participants list is free-form JSON)."""
    return None if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def participant_event_log(transcript: dict[str, Any]) -> list[dict[str, Any]]:
    """Events recorded on the transcript (bot-sent ones, and join/leave of live participants)."""
    events = (transcript.get("meta") or {}).get("participant_events") or []
    return [e for e in events if isinstance(e, dict) and isinstance(e.get("type"), str)]


# ---------------------------------------------------------------- meeting-bot download shapes

EVENT_ACTIONS = ("join", "leave", "update", "speech_on", "speech_off", "webcam_on", "webcam_off", "screenshare_on",
                 "screenshare_off", "chat_message")
TIMELINE_GAP = 1.0
"""Speech of one person less than this apart is one stretch of the speaker timeline."""


def parse_time(iso: str | None) -> datetime:
    if not iso:
        return datetime.fromtimestamp(0, UTC)
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Timeline:
    """Relative seconds (from the start of the recording) to the ``{absolute, relative}`` pair."""

    def __init__(self, transcript: dict[str, Any]) -> None:
        meta = transcript.get("meta") or {}
        self.origin = parse_time(meta.get("started_at") or transcript.get("created_at"))

    def stamp(self, relative: float) -> dict[str, Any]:
        rel = round(max(0.0, float(relative)), 3)
        return {"absolute": iso(self.origin + timedelta(seconds=rel)), "relative": rel}


def stretches(segments: list[dict[str, Any]], roster: Roster, gap: float = TIMELINE_GAP
              ) -> list[tuple[Person, float, float, list[dict[str, Any]]]]:
    """Consecutive speech of one person, in time order: (person, start, end, segments)."""
    out: list[tuple[Person, float, float, list[dict[str, Any]]]] = []
    for seg in sorted(segments, key=lambda s: (s["start"], s["end"])):
        person = roster.of(seg)
        if out and out[-1][0] is person and seg["start"] - out[-1][2] < gap:
            p, start, end, segs = out[-1]
            out[-1] = (p, start, max(end, seg["end"]), [*segs, seg])
        else:
            out.append((person, seg["start"], seg["end"], [seg]))
    return out


def participants_download(roster: Roster) -> list[dict[str, Any]]:
    return [p.full() for p in roster]


def speaker_timeline_download(transcript: dict[str, Any], segments: list[dict[str, Any]],
                              roster: Roster) -> list[dict[str, Any]]:
    clock_ = Timeline(transcript)
    return [{"participant": p.full(), "start_timestamp": clock_.stamp(start), "end_timestamp": clock_.stamp(end)}
            for p, start, end, _ in stretches(segments, roster)]


def segment_words(seg: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(text, start, end) per word; a segment stored without word timings shares its span out evenly."""
    words = [(str(w.get("text", "")).strip(), float(w["start"]), float(w["end"])) for w in seg.get("words") or []]
    words = [w for w in words if w[0]]
    if words:
        return words
    tokens = seg["text"].split()
    if not tokens:
        return []
    step = max(0.0, seg["end"] - seg["start"]) / len(tokens)
    return [(t, seg["start"] + i * step, seg["start"] + (i + 1) * step) for i, t in enumerate(tokens)]


def transcript_download(segments: list[dict[str, Any]], roster: Roster) -> list[dict[str, Any]]:
    """One entry per turn (a stretch of one participant's speech) with its words."""
    out = []
    for person, _, _, segs in stretches(segments, roster):
        words = [{"text": text, "start_timestamp": {"relative": round(start, 3)},
                  "end_timestamp": {"relative": round(max(start, end), 3)}}
                 for seg in segs for text, start, end in segment_words(seg)]
        out.append({"participant": person.short(), "words": words})
    return out


def participant_events_download(transcript: dict[str, Any], segments: list[dict[str, Any]],
                                roster: Roster) -> list[dict[str, Any]]:
    """Recorded events as they are; join/leave and speech_on/speech_off derived from speech where none were
    recorded for a participant (join at its first word, leave at its last)."""
    clock_ = Timeline(transcript)
    rows: list[tuple[float, int, Person, str, dict[str, Any] | None]] = []
    recorded: dict[tuple[str, str | None], set[str]] = {}
    for ev in participant_event_log(transcript):
        action = ev["type"]
        person = roster.by_participant_id(ev.get("participant_id"))
        if action not in EVENT_ACTIONS or person is None:
            continue
        data = None
        if action == "chat_message":
            raw = ev.get("data") if isinstance(ev.get("data"), dict) else {}
            to = raw.get("to") if raw.get("to") in ("everyone", "only_bot") else "everyone"
            data = {"text": str(raw.get("text") or ""), "to": to}
        recorded.setdefault(person.key, set()).add(action)
        rows.append((float(ev.get("time") or 0.0), EVENT_ACTIONS.index(action), person, action, data))
    spans: dict[tuple[str, str | None], list[tuple[float, float]]] = {}
    for person, start, end, _ in stretches(segments, roster):
        spans.setdefault(person.key, []).append((start, end))
    for person in roster:
        have = recorded.get(person.key, set())
        mine = spans.get(person.key, [])
        if not mine:
            continue
        if "join" not in have:
            rows.append((mine[0][0], 0, person, "join", None))
        if "leave" not in have:
            rows.append((mine[-1][1], 1, person, "leave", None))
        if not have & {"speech_on", "speech_off"}:
            for start, end in mine:
                rows.append((start, 3, person, "speech_on", None))
                rows.append((end, 4, person, "speech_off", None))
    # at one instant: joins first, then speech_off before the next speech_on, leaves last
    order = {"join": 0, "speech_off": 1, "speech_on": 2, "leave": 9}
    rows.sort(key=lambda r: (round(r[0], 3), order.get(r[3], 5), r[2].id))
    out = []
    for t, _, person, action, data in rows:
        digest = hashlib.sha1(f"{transcript.get('id')}|{person.id}|{action}|{t:.3f}".encode()).hexdigest()[:16]
        out.append({"id": f"evt_{digest}", "action": action, "participant": person.full(),
                    "timestamp": clock_.stamp(t), "data": data})
    return out


# ---------------------------------------------------------------- Markdown (one conversation) and the project zip


def hms(seconds: float | None) -> str:
    s = int(round(max(0.0, seconds or 0.0)))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def as_markdown(transcript: dict[str, Any], segments: list[dict[str, Any]],
                conversation: dict[str, Any] | None = None) -> str:
    """Title, date, participants (and tags), then the transcript: one paragraph per turn, speaker and time."""
    conversation = conversation or {}
    segments = resolve_speakers(transcript, segments)
    roster = Roster(transcript, segments, default_name=conversation.get("name"))
    created = parse_time(transcript.get("created_at"))
    people = [p.label for p in roster]
    lines = [f"# {_one_line(transcript.get('name') or transcript.get('id') or 'Transcript')}", "",
             f"- Date: {created.strftime('%Y-%m-%d %H:%M')} UTC",
             f"- Duration: {hms(transcript.get('duration'))}",
             f"- Participants: {', '.join(_one_line(p) for p in people) if people else '(none)'}"]
    if conversation.get("tags"):
        lines.append(f"- Tags: {', '.join(_one_line(t) for t in conversation['tags'])}")
    lines += [f"- Status: {transcript.get('status')}", f"- ID: {transcript.get('id')}", "", "## Transcript", ""]
    turns = stretches(segments, roster)
    if not turns:
        lines.append("_No speech was transcribed._")
    for person, start, _, segs in turns:
        text = _one_line(" ".join(s["text"] for s in segs))
        lines += [f"**[{hms(start)}] {_one_line(person.label)}:** {text}", ""]
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
    zf = zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
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


# ---------------------------------------------------------------- the conversation table (CSV, XLSX)

TABLE_COLUMNS = ("id", "name", "tags", "created", "duration", "status", "speakers", "word_count")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (= + - @, tab, CR first) gets a leading single quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def table_row(transcript: dict[str, Any], conversation: dict[str, Any] | None,
              segments: list[dict[str, Any]]) -> dict[str, Any]:
    conversation = conversation or {}
    roster = Roster(transcript, segments, default_name=conversation.get("name"))
    speakers = [p.label for p in roster if p.key[0] != "default" or p.name]
    return {
        "id": transcript["id"],
        "name": conversation.get("name") or transcript.get("name") or "",
        "tags": ", ".join(conversation.get("tags") or []),
        "created": conversation.get("created_at") or transcript.get("created_at"),
        "duration": round(float(transcript.get("duration") or 0.0), 3),
        "status": transcript.get("status"),
        "speakers": ", ".join(speakers),
        "word_count": sum(len(s["text"].split()) for s in segments),
    }


def csv_line(values: Iterable[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n").writerow(
        [safe_cell("" if v is None else v) for v in values])
    return buf.getvalue()


def _xml_text(value: Any) -> Any:
    """Text without the control characters XML cannot hold: openpyxl refuses them in a cell (a 500 before) and
    writes them into a sheet title, which makes a workbook Excel cannot open. A name may well contain them."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value


def write_xlsx(path: str, rows: Iterable[dict[str, Any]], title: str = "Conversations") -> None:
    """The conversation table as an Excel workbook (openpyxl, write-only: rows go to disk as they come)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(re.sub(r"[\[\]:*?/\\]", " ", _xml_text(title))[:31] or "Conversations")
    bold = Font(bold=True)
    header = []
    for name in TABLE_COLUMNS:
        cell = WriteOnlyCell(ws, value=name)
        cell.font = bold
        header.append(cell)
    ws.append(header)
    for row in rows:
        values: list[Any] = []
        for name in TABLE_COLUMNS:
            value = row.get(name)
            if name == "created" and value:
                cell = WriteOnlyCell(ws, value=parse_time(value).replace(tzinfo=None))
                cell.number_format = "yyyy-mm-dd hh:mm:ss"
                values.append(cell)
                continue
            # a WriteOnlyCell holding text starting with '=' would become a formula: always text here
            cell = WriteOnlyCell(ws, value=_xml_text(safe_cell(value)))
            if isinstance(cell.value, str):
                cell.data_type = "s"
            values.append(cell)
        ws.append(values)
    wb.save(path)
