"""Who a segment's speaker is shown as: the one resolver every reader of stored segments goes through.

Stored segments keep the label they were given (a live participant's name with its ``participant_id``, a
diarization label such as ``Speaker 1``, a channel's ``Channel 1``); labels may even be reassigned later. A
rename is therefore a mapping, applied when segments are read: the transcript's ``participants`` entries
``{"id", "name"}`` (``PATCH /v1/transcripts/{id}``), keyed by a participant id or by a stored speaker label.
A participant id wins over a label. Resolved segments carry the stored label as ``speaker_label``.

The segments column holds a participant id as text (``participant_key``); a stream that declared the integer
``1`` gets ``1`` back from every reader because the value as sent is kept on the transcript (its recorded
participant events) and put back here.
"""

from __future__ import annotations

from typing import Any

from protocol.messages import participant_key

LABEL = "speaker_label"


def sent_ids(transcript: dict[str, Any]) -> dict[str, str | int]:
    """``{participant key: the id as its stream sent it}``, from the events recorded on the transcript (a live
    participant's join has it; the first recorded wins when one participant once sent ``1`` and once ``"1"``)."""
    sent: dict[str, str | int] = {}
    for ev in (transcript.get("meta") or {}).get("participant_events") or []:
        pid = ev.get("participant_id") if isinstance(ev, dict) else None
        if isinstance(pid, str | int) and not isinstance(pid, bool) and pid != "":
            sent.setdefault(participant_key(pid), pid)
    return sent


def as_sent(participant_id: Any, sent: dict[str, str | int]) -> Any:
    """A stored participant id with the JSON type its stream gave it (unknown ones stay as stored)."""
    if participant_id is None:
        return None
    return sent.get(participant_key(participant_id), participant_id)


def speaker_names(transcript: dict[str, Any]) -> dict[str, str]:
    """``{participant id or stored label: name}`` from the transcript's ``participants``."""
    names: dict[str, str] = {}
    for p in transcript.get("participants") or []:
        if isinstance(p, dict) and p.get("id") is not None and isinstance(p.get("name"), str) and p["name"].strip():
            names[str(p["id"])] = " ".join(p["name"].split())
    return names


def stored_label(seg: dict[str, Any]) -> str | None:
    """The label a segment was stored with (also on a segment that was already resolved)."""
    return (seg[LABEL] if LABEL in seg else seg.get("speaker")) or None


def shown_speaker(seg: dict[str, Any], names: dict[str, str]) -> str | None:
    pid = seg.get("participant_id")
    if pid is not None and str(pid) in names:
        return names[str(pid)]
    label = stored_label(seg)
    return names.get(label, label) if label else None


def resolve_speakers(transcript: dict[str, Any], segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``segments`` with ``speaker`` as it is shown, the stored label in ``speaker_label`` and the
    participant id as it was sent. Idempotent: resolving resolved segments changes nothing."""
    names, sent = speaker_names(transcript), sent_ids(transcript)
    return [{**seg, "speaker": shown_speaker(seg, names), LABEL: stored_label(seg),
             **({"participant_id": as_sent(seg["participant_id"], sent)} if "participant_id" in seg else {})}
            for seg in segments]


def rename_only(transcript: dict[str, Any], segments: list[dict[str, Any]], participant_ids: set[str]) -> set[str]:
    """``participants`` ids that only rename a stored speaker label (not a participant of their own)."""
    labels = {stored_label(s) for s in segments} - {None}
    return {pid for pid in speaker_names(transcript) if pid in labels and pid not in participant_ids}


async def named_segments(store: Any, transcript: dict[str, Any]) -> list[dict[str, Any]]:
    """A transcript's stored final segments, with speakers as they are shown."""
    return resolve_speakers(transcript, await store.get_segments(transcript["id"]))
