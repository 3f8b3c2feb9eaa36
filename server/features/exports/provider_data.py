"""The meeting-bot "Transcript Provider Data" download: each message the transcription produced, as it went out.

voxlane is its own transcription provider, so a part is one of its own final ``transcription`` messages, rebuilt
from the stored segment (the stored form: speakers as shown, spans as the end-of-stream pass left them). A live
stream's finals went out on the transcript's WebSocket (``websocket_message``); a recorded file's came from the job
runner and are read back over HTTP (``http_response``). The source audio is ``separate`` where the stream was one
declared participant's, with that participant, and ``mixed`` otherwise (one stream, voices told apart by
diarization at most). A long meeting has thousands of parts: the route pages them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from protocol.messages import Transcription, Word, envelope
from server.features.exports.meeting import Timeline, iso
from server.features.exports.roster import Roster


def _message(seg: dict[str, Any], created: float) -> dict[str, Any]:
    words = [Word(text=w["text"], start=w["start"], end=w["end"],
                  probability=min(1.0, max(0.0, float(w.get("probability", 1.0)))), final=True)
             for w in seg.get("words") or []]
    confidence = seg.get("confidence")
    msg = Transcription(text=seg["text"], speaker=seg.get("speaker"), timestamp=created,
                        confidence=min(1.0, max(0.0, float(confidence if confidence is not None else 1.0))),
                        segment_id=seg["id"], is_final=True, start=seg["start"], end=seg["end"], words=words,
                        participant_id=seg.get("participant_id"))
    return envelope(msg)


def provider_data_parts(transcript: dict[str, Any], segments: list[dict[str, Any]], roster: Roster, *,
                        live: bool, base_url: str) -> list[dict[str, Any]]:
    """The parts of ``segments`` (one page of a transcript's stored segments, in time order).

    ``live``: the transcript came from a live stream (else from recorded files). ``created_at`` is when the part's
    last word was heard on the transcript's clock, which is when a live final goes out, give or take its
    commit latency."""
    clock = Timeline(transcript)
    tid = transcript["id"]
    parts = []
    for seg in segments:
        person = roster.of(seg)
        separate = person.key[0] == "participant"
        created_at = clock.origin + timedelta(seconds=max(0.0, float(seg["end"])))
        payload = _message(seg, created_at.timestamp())
        if live:
            ws = "ws" + base_url[4:] if base_url.startswith("http") else base_url
            data = {"url": f"{ws}/v1/transcripts_websocket/{tid}", "event": payload["type"], "payload": payload}
        else:
            data = {"url": f"{base_url}/v1/transcripts/{tid}", "status_code": 200, "body": payload}
        parts.append({
            "id": seg["id"],
            "created_at": iso(created_at),
            "source_audio": {"type": "separate" if separate else "mixed",
                             "offset": round(max(0.0, float(seg["start"])), 3),
                             "participant": person.full() if separate else None},
            "type": "websocket_message" if live else "http_response",
            "data": data,
        })
    return parts
