"""A long upload transcribed in the background while the live bench runs (``voxlane bench --with-upload``).

:func:`start_background_upload` concatenates the real speech in ``shared/audio/single`` (looping) into a
~``seconds``-long 16 kHz WAV, uploads it through ``POST /v1/transcripts_audio/{id}/upload`` and follows it
to ``completed``. The upload goes through the same inference loop at BULK priority, so comparing live final
latency with and without it shows what a big file costs live sessions.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import SHARED_AUDIO
from media import decode_file, float_to_s16, probe_file

DEFAULT_SPEECH = SHARED_AUDIO / "single"


@dataclass
class UploadRun:
    transcript_id: str | None = None
    audio_seconds: float = 0.0
    upload_seconds: float | None = None
    transcribe_seconds: float | None = None
    status: str = "starting"
    segments: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        if self.transcribe_seconds:
            out["realtime_factor"] = round(self.transcribe_seconds / max(self.audio_seconds, 1e-9), 4)
        return out


def build_long_wav(path: Path, seconds: float, speech_dir: Path = DEFAULT_SPEECH) -> float:
    """Write ~``seconds`` of real speech (the corpus' single-speaker files, looped) as 16 kHz mono WAV."""
    files = sorted(speech_dir.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no .wav files in {speech_dir}")
    target = int(seconds * 16000)
    written = 0
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        while written < target:
            for f in files:
                audio = decode_file(f)
                assert isinstance(audio, np.ndarray)
                audio = audio[:target - written]
                w.writeframes(float_to_s16(audio))
                written += len(audio)
                if written >= target:
                    break
    return written / 16000


async def run_upload(base_url: str, token: str | None, seconds: float = 600.0, *, run: UploadRun | None = None,
                     speech_dir: Path = DEFAULT_SPEECH, poll: float = 0.5, path: str | Path | None = None
                     ) -> UploadRun:
    run = run or UploadRun()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with tempfile.TemporaryDirectory(prefix="voxlane-bench-upload-") as tmp:
        if path is None:
            path = Path(tmp) / "long.wav"
            run.audio_seconds = await asyncio.to_thread(build_long_wav, path, seconds, speech_dir)
        else:
            path = Path(path)
            run.audio_seconds = float((await asyncio.to_thread(probe_file, path)).get("duration") or 0.0)
        async with httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=600) as client:
            r = await client.post("/v1/transcripts/", json={"name": f"bench upload {run.audio_seconds:.0f} s"})
            r.raise_for_status()
            run.transcript_id = r.json()["id"]
            data = await asyncio.to_thread(path.read_bytes)  # ~19 MB for 10 minutes
            t0 = time.monotonic()
            r = await client.post(f"/v1/transcripts_audio/{run.transcript_id}/upload",
                                  files={"file": (path.name, data)})
            if r.status_code != 202:
                run.status, run.error = "failed", r.text
                return run
            t1 = time.monotonic()
            run.upload_seconds = round(t1 - t0, 3)
            run.status = "processing"
            while True:
                await asyncio.sleep(poll)
                r = await client.get(f"/v1/transcripts/{run.transcript_id}")
                r.raise_for_status()
                body = r.json()
                if body["status"] in ("completed", "failed"):
                    run.status = body["status"]
                    run.error = body.get("error")
                    run.segments = len(body.get("segments") or [])
                    run.transcribe_seconds = round(time.monotonic() - t1, 3)
                    return run


async def start_background_upload(base_url: str, token: str | None, seconds: float = 600.0,
                                  path: str | Path | None = None) -> asyncio.Task:
    """Start the upload and return its task at once; ``await`` it for an :class:`UploadRun`.

    ``path`` uploads that file instead of ~``seconds`` of concatenated corpus speech.

    Cancel the task to stop following the upload (the server keeps transcribing what it accepted).
    ``task.upload_run`` is the live :class:`UploadRun` (status, timings) while it runs.
    """
    run = UploadRun()
    task = asyncio.create_task(run_upload(base_url, token, seconds, run=run, path=path),
                               name="bench-background-upload")
    task.upload_run = run  # type: ignore[attr-defined]
    return task
