"""Where a transcript's audio lives: one recording per transcript, one file per participant stream, its upload and
its kiosk chunks.

Audio is addressed by *keys* relative to the audio store (``server.storage.audio``): ``<transcript id>/...``.
The functions here are the one place keys are made, so a local directory and a bucket lay audio out alike.
"""

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


def recording_key(transcript_id: str, participant_id: str | int | None = None) -> str:
    """The live (or merged) recording of a transcript, or one participant's own recording."""
    return f"{transcript_id}/{audio_file_name(participant_id)}"


def taken_over_key(key: str, fence: int | None) -> str:
    """Where a stream that another node took over stores its recording: beside the new owner's (which it would
    otherwise overwrite, or be overwritten by), named by the fence it streamed with."""
    folder, _, name = key.rpartition("/")
    stem, dot, extension = name.rpartition(".")
    return f"{folder}/{stem}.taken-over-{fence or 0}{dot}{extension}"


def upload_key(transcript_id: str, extension: str, attempt: str | None = None) -> str:
    """An uploaded or job file, as received (``upload.wav``, ``upload.m4a``, ...). ``attempt``: one of several
    uploads that may race for one transcript (on two nodes) gets a key of its own (``upload-<attempt>.wav``), so the
    one that loses the race cannot overwrite the winner's file before it learns it lost."""
    return f"{transcript_id}/upload{'' if attempt is None else '-' + attempt}.{extension}"


def chunk_key(transcript_id: str, index: int, upload_key: str, extension: str) -> str:
    """One kiosk chunk; the index first, so a listing is in recording order."""
    return f"{transcript_id}/chunks/{index:06d}-{upload_key}.{extension}"


def sealed_chunk_key(presigned_key: str) -> str:
    """Where a chunk PUT straight to the bucket is moved at its confirmation: beside its presigned object, under
    a name its URL does not reach (:func:`server.routes.participant_uploads.seal_direct_upload`)."""
    folder, _, name = presigned_key.rpartition("/")
    return f"{folder}/confirmed/{name}"
