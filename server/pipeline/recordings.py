"""Where a transcript's audio lives: one recording per transcript, one file per participant stream."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from protocol.messages import participant_key
from server.settings import Settings

RECORDING = "recording.wav"


def audio_dir(settings: Settings, transcript_id: str) -> Path:
    return settings.data_path / "audio" / transcript_id


def audio_file_name(participant_id: str | int | None) -> str:
    participant_id = participant_key(participant_id)  # 1 and "1" are one participant: one recording
    if not participant_id:
        return RECORDING
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", participant_id)
    if safe == participant_id and len(safe) <= 80:
        return f"participant-{safe}.wav"
    # ids that had to be changed ("a b" and "a_b", two long ids with one prefix) must not share a file
    digest = hashlib.sha256(participant_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"participant-{safe[:80]}-{digest}.wav"
