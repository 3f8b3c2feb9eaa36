"""The meeting-bot download shapes: participants, participant events, speaker timeline, words."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from server.features.exports.roster import Person, Roster, participant_event_log

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
            raw = ev.get("data")
            raw = raw if isinstance(raw, dict) else {}
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
