"""An external platform's cloud recording, ingested once it is ready: the ``meeting_recording`` job.

When a recorded meeting on Whereby or Daily ends, this job asks the platform for the room's finished recordings
(trying again later while there are none yet: platforms take minutes to process one), downloads the first
through the outbound guard (the URL comes from outside, like a webhook's), stores it as the meeting transcript's
file, and hands it to the ordinary ``transcribe`` job: the recorded file goes through the same pipeline as any
uploaded one. The file's chunk id derives from the recording's id, so a job run again stores nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlparse

from server.features.meetings.platforms import PlatformError, platform_for
from server.http.outbound import OutboundGuard, OutboundRefused, guarded_client
from server.jobs.queue import Job
from server.jobs.recorded import transcribe_job
from server.jobs.runner import JobContext, RetryLater, Task
from server.pipeline import lifecycle
from server.pipeline.recordings import upload_key

if TYPE_CHECKING:
    from pathlib import Path

    from server.jobs.queue import JobQueue
    from server.settings import Settings
    from server.storage.audio import AudioStore


TASK = "meeting_recording"
POLL_SECONDS = 120.0
EXTRA_ATTEMPTS = 12
"""Beyond VOXLANE_JOB_MAX_ATTEMPTS: each waits POLL_SECONDS, so a platform has about half an hour to finish."""
"""How long to wait before asking the platform again for a recording it has not finished."""
_EXTENSIONS = ("mp4", "webm", "m4a", "mp3", "ogg", "wav", "mkv")


class RecordingParts(lifecycle.Recorded, Protocol):
    """What fetching a meeting's recording takes: the rows, the audio store it lands in, the queue that
    transcribes it, and the subscribers told when it cannot be had."""

    settings: Settings
    audio: AudioStore
    jobs: JobQueue


def recording_job(meeting_id: str) -> Job:
    return Job(TASK, {"meeting_id": meeting_id, "transcript_id": meeting_id}, dedupe=f"{TASK}:{meeting_id}")


async def ingest_recording(ctx: JobContext[RecordingParts]) -> None:
    services = ctx.services
    store = services.store
    meeting = await store.get_meeting(ctx.args["meeting_id"])
    transcript = await store.get_transcript(ctx.args["meeting_id"]) if meeting is not None else None
    if meeting is None or transcript is None or transcript["status"] in ("completed", "failed"):
        return
    try:
        found = await platform_for(meeting["platform"], services.settings).recordings(
            meeting.get("external_id") or "", meeting.get("meta") or {})
    except PlatformError as exc:
        raise RetryLater(exc.message, POLL_SECONDS) from None
    if not found:
        raise RetryLater(f"{meeting['platform']} has no finished recording of meeting {meeting['id']} yet",
                         POLL_SECONDS)
    recording = found[0]
    chunk_id = hashlib.sha256(f"{meeting['id']}\n{recording.id}".encode()).hexdigest()[:32]
    if await store.get_chunk(chunk_id) is not None:
        return
    extension = urlparse(recording.url).path.rsplit(".", 1)[-1].lower()
    key = upload_key(meeting["id"], extension if extension in _EXTENSIONS else "mp4")
    size = await _download(services, recording.url, key)
    options = {"language": transcript.get("source_language"), "diarization": (meeting.get("meta") or {}).get(
        "diarization"), "filename": f"{meeting['platform']}-recording-{recording.id}"}
    async with store.transaction():
        await store.create_chunk(transcript_id=meeting["id"], kind="job", status="uploaded", path=key, size=size,
                                 options=options, chunk_id=chunk_id)
        await store.transition_transcript(meeting["id"], ("created", "live"), "processing")
        await services.jobs.stage([transcribe_job(chunk_id)])


async def _download(services: RecordingParts, url: str, key: str) -> int:
    """The recording stored under ``key``, its size; bounded by VOXLANE_MAX_UPLOAD_MB."""
    limit = services.settings.max_upload_mb << 20
    folder: Path = services.audio.incoming_dir(key.split("/", 1)[0])
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    path = folder / f".incoming-{uuid.uuid4().hex}"
    size = 0
    try:
        async with guarded_client(OutboundGuard(services.settings), timeout=services.settings.platform_timeout
                                  ) as client, client.stream("GET", url) as response:
            if response.status_code != 200:
                raise RetryLater(f"the recording's download answered {response.status_code}", POLL_SECONDS)
            with open(path, "wb") as f:  # noqa: ASYNC230 - chunks of a stream, written as they arrive
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise RetryLater(f"the recording is larger than VOXLANE_MAX_UPLOAD_MB ({limit >> 20} MB)")
                    f.write(chunk)
        await services.audio.put_file(key, path)
    except OutboundRefused as exc:
        raise RetryLater(f"the recording's URL is refused: {exc}") from None
    finally:
        path.unlink(missing_ok=True)
    return size


async def give_up(ctx: JobContext[RecordingParts], reason: str) -> None:
    """No recording came: the meeting's transcript fails, saying why."""
    row = await ctx.services.store.get_transcript(ctx.args["meeting_id"])
    if row is not None and row["status"] not in ("completed", "failed"):
        await lifecycle.fail(ctx.services, row["id"], f"the meeting's recording was not ingested: {reason}")


def job_tasks(attempts: int) -> list[Task]:
    """Fetching a meeting's recording from its platform, which may take half an hour to finish it."""
    return [Task(TASK, ingest_recording, max_attempts=attempts + EXTRA_ATTEMPTS, give_up=give_up)]
