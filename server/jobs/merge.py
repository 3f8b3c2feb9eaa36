"""The ``settle`` job: a kiosk conversation's chunks merged into one transcript, in index order.

Chunks are transcribed independently (in any order, on any node) on their own timeline; the merge places them,
in index order, at the sum of the durations before them, and publishes their segments through the hub (stored,
broadcast) with ids derived from the chunk, so a merge run twice changes nothing. A conversation's merges run
one at a time on the whole deployment (the job's lock), and every chunk that ends and the ``finish`` call queue
one. A finished conversation whose chunks are all done gets its audio as one recording and is ``completed``.

The merged recording is built from the chunks' audio as stored: a transcribed chunk whose audio cannot be read
fails the merge with a clear error (retried, then the conversation fails) rather than leaving a silent gap that
would shift nothing but hide the loss. A chunk that failed to transcribe keeps its place with the audio that was
decoded of it (none for a file that never decoded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from media import DecodeError, WavAppender, iter_decode_file
from protocol import Status, Transcription, Word
from server.jobs.progress import BLOCK_SECONDS
from server.jobs.queue import Job
from server.jobs.runner import JobContext, RetryLater, Task
from server.pipeline import lifecycle
from server.pipeline.recordings import recording_key
from server.storage.base import UNCONFIRMED

if TYPE_CHECKING:
    from server.settings import Settings
    from server.storage.audio import AudioStore


class MergeParts(lifecycle.Completing, Protocol):
    """What settling a kiosk conversation takes: its rows, the chunks' audio, and the completion's hooks."""

    settings: Settings
    audio: AudioStore

log = logging.getLogger("voxlane.merge")
TASK = "settle"


class MergeError(RetryLater):
    """A chunk's stored audio could not be read (missing from the store, unreadable)."""


def settle_job(conversation_id: str) -> Job:
    """One merge of a conversation; a merge already waiting covers a second request."""
    return Job(TASK, {"transcript_id": conversation_id}, lock=f"conversation:{conversation_id}",
               dedupe=f"{TASK}:{conversation_id}")


async def settle(ctx: JobContext[MergeParts]) -> None:
    await settle_conversation(ctx.services, ctx.args["transcript_id"], ctx)


async def give_up(ctx: JobContext[MergeParts], reason: str) -> None:
    cid = ctx.args["transcript_id"]
    await lifecycle.fail(ctx.services, cid, f"merging the conversation's chunks failed: {reason}")


async def settle_conversation(services: MergeParts, cid: str, ctx: JobContext[MergeParts] | None = None) -> None:
    """Merge what can be merged, in order; complete a finished conversation whose chunks are all done."""
    store, hub = services.store, services.hub
    conv = await store.get_conversation(cid)
    transcript = await store.get_transcript(cid)
    if conv is None or transcript is None or transcript["status"] in ("completed", "failed"):
        return
    finished = conv.get("finished_at") is not None
    rows = await store.list_chunks(transcript_id=cid, kind="chunk")
    now = time.time()
    offset, expected, waiting = 0.0, 0, False
    placed: list[dict[str, Any]] = []
    for ch in rows:
        if ch["status"] in UNCONFIRMED:
            if finished or (ch.get("expires_at") or 0) < now:
                expected = ch["index"] + 1  # abandoned: it will never arrive
                continue
            waiting = True
            break
        if not finished and ch["index"] != expected:
            waiting = True  # an earlier chunk has not even been announced yet
            break
        expected = ch["index"] + 1
        if ch["status"] in ("uploaded", "processing"):
            waiting = True
            break
        if not ch["merged"]:
            for i, seg in enumerate(ch.get("segments") or []):
                await hub.publish(cid, _shifted(seg, f"{ch['id'][:12]}-{i:04d}", offset))
            await store.update_chunk(ch["id"], merged=1, offset=round(offset, 3))
            if ctx is not None:
                ctx.alive()
        placed.append(ch)
        offset += float(ch.get("duration") or 0.0)
    confirmed = [c for c in rows if c["status"] not in UNCONFIRMED]
    done = sum(1 for c in confirmed if c["status"] in ("transcribed", "failed"))
    if not (finished and not waiting):
        if confirmed:
            await store.update_transcript(cid, duration=round(offset, 3))
            await hub.publish(cid, Status(status="processing", stage="transcription",
                                          progress=round(100.0 * done / len(confirmed), 1),
                                          message=f"{done} of {len(confirmed)} chunks transcribed"))
        return
    await _store_merged_audio(services, cid, placed)
    ok = [c for c in placed if c["status"] == "transcribed"]
    abandoned = [c for c in rows if c["status"] in UNCONFIRMED]
    if confirmed and not ok:
        reasons = sorted({c.get("error") or "failed" for c in confirmed})
        await lifecycle.fail(services, cid, "every chunk failed: " + "; ".join(reasons))
        return
    failed = len(confirmed) - len(ok)
    message = "conversation transcribed" + (f" ({failed} chunk(s) failed)" if failed else "")

    async def drop_abandoned() -> bool:
        for chunk in abandoned:  # URLs never confirmed: their rows go with the completion, their bytes after it
            await store.delete_chunk(chunk["id"])
        return True

    if await lifecycle.complete(services, cid, duration=offset, message=message, key="chunks merged",
                                with_rows=drop_abandoned):
        for chunk in abandoned:
            if chunk.get("path"):
                with contextlib.suppress(Exception):
                    await services.audio.delete(chunk["path"])


async def _store_merged_audio(services: MergeParts, cid: str, placed: list[dict[str, Any]]) -> None:
    """The conversation's audio as one 16 kHz WAV in the audio store, on its merged transcript's timeline."""
    scratch = services.audio.incoming_dir(cid)
    await asyncio.to_thread(scratch.mkdir, parents=True, exist_ok=True)
    merged = scratch / f".incoming-merge-{uuid.uuid4().hex}.wav"
    try:
        wav = WavAppender(merged)
        try:
            for ch in placed:
                want = int(round(float(ch.get("duration") or 0.0) * 16000))
                if want <= 0:
                    continue
                if ch["status"] != "transcribed" or not ch.get("path"):
                    await asyncio.to_thread(wav.append, np.zeros(want, dtype=np.float32))  # decoded as nothing
                    continue
                try:
                    async with services.audio.local_path(ch["path"]) as path:
                        got = await asyncio.to_thread(_append_chunk, wav, path, want,
                                                      services.settings.max_chunk_seconds)
                except (OSError, DecodeError, LookupError) as exc:
                    raise MergeError(f"chunk {ch['index']}'s audio could not be read: {exc}") from None
                if got < want:
                    raise MergeError(f"chunk {ch['index']}'s stored audio holds {got / 16000:.2f} s of the"
                                     f" {want / 16000:.2f} s that were transcribed")
            await asyncio.to_thread(wav.sync)
        finally:
            await asyncio.to_thread(wav.close)
        await services.audio.put_file(recording_key(cid), merged)
    finally:
        await asyncio.to_thread(merged.unlink, missing_ok=True)


def _append_chunk(wav: WavAppender, path: Path, want: int, max_chunk_seconds: float) -> int:
    """Append a chunk's decoded audio up to its transcribed length; the samples appended."""
    got = 0
    for block in iter_decode_file(path, chunk_seconds=BLOCK_SECONDS, max_seconds=max_chunk_seconds):
        block = block[:max(0, want - got)]
        wav.append(block)
        got += len(block)
        if got >= want:
            break
    return got


def _shifted(seg: dict[str, Any], segment_id: str, offset: float) -> Transcription:
    return Transcription(
        text=seg["text"], speaker=seg.get("speaker"), confidence=seg.get("confidence") or 0.0,
        segment_id=segment_id, is_final=True, start=round(seg["start"] + offset, 3),
        end=round(seg["end"] + offset, 3), participant_id=seg.get("participant_id"),
        words=[Word(text=w["text"], start=round(w["start"] + offset, 3), end=round(w["end"] + offset, 3),
                    probability=w.get("probability", 0.0), final=True) for w in seg.get("words") or []])


def job_tasks(attempts: int) -> list[Task]:
    """Settling a kiosk conversation: two attempts more than a transcription (it waits on its chunks)."""
    return [Task(TASK, settle, max_attempts=attempts + 2, give_up=give_up)]
