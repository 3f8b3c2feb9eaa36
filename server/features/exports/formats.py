"""Plain text, timestamped text, SRT, WebVTT with voice tags and JSON, from stored final segments."""

from __future__ import annotations

from typing import Any

from server.features.exports.archive import as_markdown
from server.features.speakers import resolve_speakers

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
        if name := _speaker(seg):
            name = name.replace(">", "").replace("\n", " ")
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
