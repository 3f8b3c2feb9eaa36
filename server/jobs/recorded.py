"""The ``transcribe`` job: one recorded file (an upload, a transcription job's file, a kiosk chunk) through the
same session pipeline as live audio, at BULK priority in the one inference loop, so live streams go first.

Every attempt claims the chunk row (``uploaded``/``processing`` -> ``processing``, counting the attempt in the
row), and its end is a compare-and-set on that count: an attempt that lost its job to another node (its node
stalled past its lease) cannot complete or fail the chunk after the newer attempt took it. A file's attempt also
moves its transcript's fence on (as a live stream's start does), and writes its segments, events and completion
with it: the older attempt's are refused from the newer one's start. A file's segments
get ids derived from the chunk, so an attempt run again replaces the segments of the one before instead of
adding to them; a kiosk chunk keeps its segments in its own row until the merge (:mod:`server.jobs.merge`)
places them.

A file's transcript is completed in the same transaction as its chunk (:func:`server.pipeline.lifecycle.complete`),
and a kiosk chunk's end queues its conversation's merge in the same transaction as its new state.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from protocol import Transcription
from server.jobs.file_jobs import transcribe_file
from server.jobs.merge import settle_job
from server.jobs.progress import PROGRESS_WRITE_SECONDS, Progress
from server.jobs.queue import Job
from server.jobs.runner import AUDIO_LANE, JobContext, RetryLater, Task
from server.pipeline import lifecycle
from server.pipeline.convert import segment_row
from server.pipeline.parts import StreamParts

if TYPE_CHECKING:
    from server.jobs.queue import JobQueue

log = logging.getLogger("voxlane.jobs")
TASK = "transcribe"


class Deleted(Exception):
    """The transcript went away while its file was being transcribed."""


class Superseded(Deleted):
    """A newer attempt holds the transcript (this one's node stalled past the job's lease meanwhile)."""


class RecordedParts(StreamParts, Protocol):
    """What transcribing an upload or a kiosk chunk takes: a stream's parts, and the queue that settles a
    conversation once its chunks are in."""

    jobs: JobQueue


def transcribe_job(chunk_id: str) -> Job:
    """The job of one confirmed chunk; ``dedupe`` finds its place in the queue (GET .../status)."""
    return Job(TASK, {"chunk_id": chunk_id}, dedupe=f"{TASK}:{chunk_id}")


async def transcribe(ctx: JobContext[RecordedParts]) -> None:
    store = ctx.services.store
    row = await store.get_chunk(ctx.args["chunk_id"])
    if row is None or row["status"] in ("transcribed", "failed"):
        return  # deleted, or finished by an earlier attempt that died before its job was marked done
    ctx.concerns(row["transcript_id"])
    claimed = await store.transition_chunk(row["id"], ("uploaded", "processing"), "processing",
                                           attempts=row["attempts"] + 1)
    if claimed is None:
        return
    try:
        if claimed["kind"] == "chunk":
            await _transcribe_chunk(ctx, claimed)
        else:
            await _transcribe_file(ctx, claimed)
    except Superseded:
        log.warning("transcript %s: a newer attempt at its job holds it (this one's node stalled past the job's"
                    " lease); attempt %d stops, its writes refused", claimed["transcript_id"], claimed["attempts"])
    except Deleted:
        return
    finally:
        board = ctx.progress
        if board is not None:
            board.pop(claimed["transcript_id"], None)


async def give_up(ctx: JobContext[RecordedParts], reason: str) -> None:
    """Out of attempts: the chunk fails (and with it a file's transcript; a kiosk chunk leaves a gap that its
    conversation's merge reports)."""
    store = ctx.services.store
    row = await store.get_chunk(ctx.args["chunk_id"])
    if row is None or row["status"] in ("transcribed", "failed"):
        return
    async with store.transaction():
        if await store.transition_chunk(row["id"], ("uploaded", "processing"), "failed", error=reason) is None:
            return
        if row["kind"] == "chunk":
            await ctx.services.jobs.stage([settle_job(row["transcript_id"])])
    if row["kind"] != "chunk":
        await lifecycle.fail(ctx.services, row["transcript_id"], reason)


# ------------------------------------------------------------ uploads and job files


async def _transcribe_file(ctx: JobContext[RecordedParts], row: dict[str, Any]) -> None:
    """An upload or a job: the file is the transcript's whole audio."""
    services, tid = ctx.services, row["transcript_id"]
    store = services.store
    # this attempt holds the transcript from here: the claim moves its fence on, so an earlier attempt still
    # running (its node stalled past the job's lease) has every later write refused, its segments included
    started = await store.transition_transcript(tid, ("created", "processing", "failed"), "processing", claim=True)
    if started is None and await store.get_transcript(tid) is None:
        return
    fence = started["live_fence"] if started is not None else None
    await store.delete_segments(tid)  # an earlier attempt's partial output goes; this one writes the same ids
    services.hub.fence(tid, fence)
    try:
        await _transcribe_held_file(ctx, row, fence)
    finally:
        if services.hub.fence_of(tid) == fence:  # not a newer attempt's, on this same node
            services.hub.fence(tid, None)


async def _transcribe_held_file(ctx: JobContext[RecordedParts], row: dict[str, Any], fence: int | None) -> None:
    services, tid = ctx.services, row["transcript_id"]
    store = services.store
    prog = Progress(message="transcribing", total=float(row.get("duration") or 0.0))
    board = ctx.progress
    if board is not None:
        board[tid] = prog

    async def on_progress(done: float, total: float) -> None:
        ctx.alive()
        prog.done, prog.total, prog.updated_at = done, total, time.time()
        prog.message = f"transcribed {done:.0f} s of {total:.0f} s"
        if services.hub.refused_for(tid) or services.hub.fence_of(tid) != fence:
            raise Superseded  # a newer attempt holds the transcript (here or elsewhere): this one stops
        if prog.updated_at - prog.written_at >= PROGRESS_WRITE_SECONDS:
            prog.written_at = prog.updated_at
            if await store.update_chunk(row["id"], progress=prog.percent) is None:
                raise Deleted  # the transcript (and its chunk) was deleted, perhaps on another node

    options = row.get("options") or {}
    async with services.audio.local_path(row["path"]) as path:
        result = await transcribe_file(services, tid, path, on_progress=on_progress,
                                       language=options.get("language"),
                                       split_channels=bool(options.get("split_channels")),
                                       channel_names=options.get("channel_names"),
                                       diarize=wants_diarization(services, options),
                                       max_seconds=services.settings.max_audio_seconds, id_seed=row["id"],
                                       key_terms=options.get("key_terms") or ())
    mine = ("processing",)
    if result.error:
        prog.status, prog.message, prog.updated_at = "failed", result.error, time.time()
        failed = await store.transition_chunk(row["id"], mine, "failed", error=result.error, duration=result.duration,
                                              expect_attempts=row["attempts"])
        if failed is not None:  # subscribers already heard error + failed
            await lifecycle.fail(services, tid, result.error, publish=False)
        return
    segments = await store.get_segments(tid)
    text = " ".join(s["text"] for s in segments)

    async def chunk_done() -> bool:
        return await store.transition_chunk(row["id"], mine, "transcribed", duration=result.duration, text=text,
                                            progress=100.0, expect_attempts=row["attempts"]) is not None

    prog.status, prog.done, prog.total = "completed", result.duration, result.duration
    prog.message, prog.updated_at = "transcription complete", time.time()
    await lifecycle.complete(services, tid, duration=result.duration, message="transcription complete",
                             key=row["id"], with_rows=chunk_done, fence=fence)


# ------------------------------------------------------------ kiosk chunks


async def _transcribe_chunk(ctx: JobContext[RecordedParts], row: dict[str, Any]) -> None:
    """One kiosk chunk, on its own timeline; its conversation's merge places it."""
    services = ctx.services
    store = services.store
    found: list[dict[str, Any]] = []

    async def collect(msg: Transcription) -> None:
        ctx.alive()
        if msg.is_final and msg.text.strip():
            found.append(segment_row(msg))

    options = row.get("options") or {}
    size = await services.audio.size(row["path"])
    if size is None:
        raise RetryLater(f"chunk {row['index']}'s audio is not in the audio store")
    async with services.audio.local_path(row["path"]) as path:
        result = await transcribe_file(services, row["transcript_id"], path, emit=collect, publish_status=False,
                                       language=options.get("language"),
                                       key_terms=options.get("key_terms") or await project_key_terms(
                                           store, row["transcript_id"]),
                                       max_seconds=services.settings.max_chunk_seconds)
    if result.error:
        fields: dict[str, Any] = {"error": result.error, "duration": result.duration, "segments": [], "text": None}
        state = "failed"
    else:
        fields = {"duration": result.duration, "segments": found, "text": " ".join(s["text"] for s in found),
                  "error": None, "progress": 100.0}
        state = "transcribed"
    async with store.transaction():
        if await store.transition_chunk(row["id"], ("processing",), state, expect_attempts=row["attempts"],
                                        **fields) is not None:
            await services.jobs.stage([settle_job(row["transcript_id"])])


async def project_key_terms(store: Any, conversation_id: str) -> list[str]:
    """The key terms of the project a kiosk conversation records into (none once the project is gone)."""
    conversation = await store.get_conversation(conversation_id)
    project = await store.get_project(conversation["project_id"]) if conversation else None
    return list((project or {}).get("key_terms") or [])


def wants_diarization(services: RecordedParts, options: dict[str, Any]) -> bool:
    """An upload's own ``diarization`` option, else the server's setting."""
    wanted = options.get("diarization")
    return bool(wanted) if wanted is not None else services.settings.diarization == "on"


def job_tasks(attempts: int) -> list[Task]:
    """Uploads' and chunks' transcriptions, in the audio lane."""
    return [Task(TASK, transcribe, max_attempts=attempts, give_up=give_up, lane=AUDIO_LANE)]
