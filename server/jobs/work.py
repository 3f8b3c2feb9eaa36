"""Durable background transcription of recorded audio: uploads, transcription jobs and kiosk chunks.

The store is the queue. Every piece of audio is a *chunk* row (a whole upload, a job's file, or one kiosk
chunk) written, with its bytes fsynced on disk, before the client is acknowledged. A chunk moves
``uploaded -> processing -> transcribed|failed`` through compare-and-set transitions, so a chunk confirmed
twice, or resumed while a worker holds it, is transcribed once. On startup the server puts back what a
crash left ``processing`` and resumes everything ``uploaded``: nothing acknowledged is lost on kill -9.

A bounded pool of workers (``VOXLANE_REST_WORKERS``) runs :func:`server.jobs.file_jobs.transcribe_file`, the same
session pipeline as live audio, at BULK priority in the one inference loop, so live streams go first.

Kiosk chunks of a conversation are transcribed independently (in any order, at once) on their own
timeline; :meth:`WorkQueue.settle` then places them, in index order, at the sum of the durations before
them, and publishes their segments through the hub (stored, broadcast) with ids derived from the chunk,
so merging twice changes nothing. A finished conversation whose chunks are all done is ``completed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from media import DecodeError, WavAppender, iter_decode_file
from protocol import Status, Transcription, Word
from server.jobs.file_jobs import BLOCK_SECONDS, transcribe_file
from server.pipeline import lifecycle
from server.pipeline.convert import segment_row
from server.pipeline.recordings import RECORDING

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("voxlane.work")
MAX_ATTEMPTS = 3
"""A chunk that was being transcribed when the server died this many times is failed, not retried."""
PROGRESS_WRITE_SECONDS = 2.0


@dataclass
class Progress:
    """What a job is doing right now (kept in memory; the store has the durable status)."""

    status: str = "processing"
    message: str = "queued"
    done: float = 0.0
    total: float = 0.0
    updated_at: float = field(default_factory=time.time)
    written_at: float = 0.0

    @property
    def percent(self) -> float:
        if self.status == "completed":
            return 100.0
        return round(min(99.0, 100.0 * self.done / self.total), 1) if self.total > 0 else 0.0

    def chunk_info(self) -> dict[str, Any]:
        """The file is fed in blocks of ``BLOCK_SECONDS``; which one is being transcribed."""
        total = max(1, int(np.ceil(self.total / BLOCK_SECONDS))) if self.total > 0 else 0
        if self.status == "completed":
            return {"current_chunk": total, "total_chunks": total, "chunk_progress": 100.0}
        current = min(total, int(self.done // BLOCK_SECONDS) + 1) if total else 0
        part = (self.done % BLOCK_SECONDS) / BLOCK_SECONDS * 100 if total else 0.0
        return {"current_chunk": current, "total_chunks": total, "chunk_progress": round(part, 1)}


class WorkQueue:
    def __init__(self, services: Services, workers: int) -> None:
        self.services = services
        self.store = services.store
        self.workers = workers
        self.progress: dict[str, Progress] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._tasks: list[asyncio.Task] = []
        self._running: dict[str, dict[str, asyncio.Task]] = {}  # transcript id -> chunk id -> task
        self._locks: dict[str, asyncio.Lock] = {}
        self._stopping = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.resume()
        self._tasks = [asyncio.create_task(self._worker(i), name=f"rest-worker-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        """Stop taking work; what is in flight stays ``processing`` in the store and resumes next start."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def resume(self) -> None:
        removed = await asyncio.to_thread(_remove_partial_uploads, self.services.settings.data_path / "audio")
        if removed:
            log.info("removed %d partial upload(s) left by an interrupted request", removed)
        for row in await self.store.list_chunks(statuses=("processing",)):
            await self.store.transition_chunk(row["id"], ("processing",), "uploaded")
            log.info("resuming %s %s of transcript %s", row["kind"], row["id"], row["transcript_id"])
        pending = await self.store.list_chunks(statuses=("uploaded",))
        for row in reversed(pending):  # oldest first
            if row["attempts"] >= MAX_ATTEMPTS:
                await self._give_up(row)
            else:
                self.submit(row["id"])
        for conv in await self.store.list_unsettled_conversations():
            await self.settle(conv["id"])

    def submit(self, chunk_id: str) -> None:
        if chunk_id not in self._queued and not self._stopping:
            self._queued.add(chunk_id)
            self._queue.put_nowait(chunk_id)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def position(self, chunk_id: str) -> int | None:
        """1-based place in the queue (None: not waiting)."""
        for i, cid in enumerate(list(self._queue._queue)):  # type: ignore[attr-defined]
            if cid == chunk_id:
                return i + 1
        return None

    async def cancel(self, transcript_id: str) -> None:
        """Stop work on a transcript that is being deleted."""
        tasks = list(self._running.pop(transcript_id, {}).values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.progress.pop(transcript_id, None)
        self._locks.pop(transcript_id, None)

    # ------------------------------------------------------------ workers

    async def _worker(self, n: int) -> None:
        while True:
            chunk_id = await self._queue.get()
            self._queued.discard(chunk_id)
            row = await self.store.get_chunk(chunk_id)
            if row is None:
                continue
            claimed = await self.store.transition_chunk(chunk_id, ("uploaded",), "processing",
                                                        attempts=row["attempts"] + 1)
            if claimed is None:
                continue  # someone else has it, or it is done
            tid = claimed["transcript_id"]
            task = asyncio.create_task(self._run(claimed), name=f"transcribe-{chunk_id}")
            self._running.setdefault(tid, {})[chunk_id] = task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done():  # the worker itself is stopping: stop the item, queue it for next start
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    with contextlib.suppress(Exception):  # a clean stop is not a failed attempt
                        await self.store.transition_chunk(chunk_id, ("processing",), "uploaded",
                                                          attempts=claimed["attempts"] - 1)
                    raise
            except Exception:
                log.exception("transcribing %s %s failed", claimed["kind"], chunk_id)
                with contextlib.suppress(Exception):
                    await self._failed(claimed, "internal error while transcribing")
            finally:
                running = self._running.get(tid)
                if running is not None:
                    running.pop(chunk_id, None)
                    if not running:
                        self._running.pop(tid, None)

    async def _run(self, row: dict[str, Any]) -> None:
        if row["kind"] == "chunk":
            await self._transcribe_chunk(row)
        else:
            await self._transcribe_file(row)

    async def _transcribe_file(self, row: dict[str, Any]) -> None:
        """An upload or a job: the file is the transcript's whole audio."""
        tid = row["transcript_id"]
        store = self.store
        await store.delete_segments(tid)  # a retried file starts from a clean transcript
        await store.update_transcript(tid, status="processing")
        prog = self.progress[tid] = Progress(message="transcribing", total=float(row.get("duration") or 0.0))

        async def on_progress(done: float, total: float) -> None:
            prog.done, prog.total, prog.updated_at = done, total, time.time()
            prog.message = f"transcribed {done:.0f} s of {total:.0f} s"
            if prog.updated_at - prog.written_at >= PROGRESS_WRITE_SECONDS:
                prog.written_at = prog.updated_at
                await store.update_chunk(row["id"], progress=prog.percent)

        options = row.get("options") or {}
        result = await transcribe_file(self.services, tid, row["path"], on_progress=on_progress,
                                       language=options.get("language"),
                                       split_channels=bool(options.get("split_channels")),
                                       channel_names=options.get("channel_names"),
                                       diarize=_wants_diarization(self.services, options),
                                       max_seconds=self.services.settings.max_audio_seconds)
        if result.error:
            prog.status, prog.message, prog.updated_at = "failed", result.error, time.time()
            await store.transition_chunk(row["id"], ("processing",), "failed", error=result.error,
                                         duration=result.duration)
            await self._transcript_failed(tid, result.error)  # subscribers already heard error + failed
            return
        segments = await store.get_segments(tid)
        text = " ".join(s["text"] for s in segments)
        await store.transition_chunk(row["id"], ("processing",), "transcribed", duration=result.duration,
                                     text=text, progress=100.0)
        prog.status, prog.done, prog.total = "completed", result.duration, result.duration
        prog.message, prog.updated_at = "transcription complete", time.time()
        await lifecycle.complete(self.services, tid, duration=result.duration, message="transcription complete",
                                 key=row["id"])

    async def _transcribe_chunk(self, row: dict[str, Any]) -> None:
        """One kiosk chunk, on its own timeline; :meth:`settle` places it in the conversation."""
        found: list[dict[str, Any]] = []

        async def collect(msg: Transcription) -> None:
            if msg.is_final and msg.text.strip():
                found.append(segment_row(msg))

        options = row.get("options") or {}
        result = await transcribe_file(self.services, row["transcript_id"], row["path"], emit=collect,
                                       publish_status=False, language=options.get("language"),
                                       max_seconds=self.services.settings.max_chunk_seconds)
        if result.error:
            await self.store.transition_chunk(row["id"], ("processing",), "failed", error=result.error,
                                              duration=result.duration, segments=[], text=None)
        else:
            await self.store.transition_chunk(
                row["id"], ("processing",), "transcribed", duration=result.duration, segments=found,
                text=" ".join(s["text"] for s in found), error=None, progress=100.0)
        await self.settle(row["transcript_id"])

    async def _failed(self, row: dict[str, Any], message: str) -> None:
        await self.store.transition_chunk(row["id"], ("processing", "uploaded"), "failed", error=message)
        if row["kind"] == "chunk":
            await self.settle(row["transcript_id"])
        else:
            await self._transcript_failed(row["transcript_id"], message, publish=True)

    async def _give_up(self, row: dict[str, Any]) -> None:
        message = f"gave up after {row['attempts']} interrupted attempts"
        log.error("%s %s: %s", row["kind"], row["id"], message)
        await self._failed(row, message)

    async def _transcript_failed(self, tid: str, message: str, publish: bool = False) -> None:
        if not await lifecycle.fail(self.services, tid, message, publish=publish):
            return
        prog = self.progress.get(tid)
        if prog is not None:
            prog.status, prog.message, prog.updated_at = "failed", message, time.time()

    # ------------------------------------------------------------ kiosk conversations

    def lock(self, conversation_id: str) -> asyncio.Lock:
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = self._locks[conversation_id] = asyncio.Lock()
        return lock

    async def settle(self, conversation_id: str) -> None:
        """Merge what can be merged, in order; complete a finished conversation whose chunks are all done."""
        async with self.lock(conversation_id):
            await self._settle(conversation_id)

    async def _settle(self, cid: str) -> None:
        store, hub = self.store, self.services.hub
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
            if ch["status"] in ("issued", "received"):
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
            placed.append(ch)
            offset += float(ch.get("duration") or 0.0)
        confirmed = [c for c in rows if c["status"] not in ("issued", "received")]
        done = sum(1 for c in confirmed if c["status"] in ("transcribed", "failed"))
        if not (finished and not waiting):
            if confirmed:
                await store.update_transcript(cid, duration=round(offset, 3))
                await hub.publish(cid, Status(status="processing", stage="transcription",
                                              progress=round(100.0 * done / len(confirmed), 1),
                                              message=f"{done} of {len(confirmed)} chunks transcribed"))
            return
        ok = [c for c in placed if c["status"] == "transcribed"]
        for abandoned in [c for c in rows if c["status"] in ("issued", "received")]:
            await store.delete_chunk(abandoned["id"])  # URLs never confirmed: their bytes go too
            if abandoned.get("path"):
                await asyncio.to_thread(_unlink, Path(abandoned["path"]))
        audio_dir = self.services.audio_dir(cid)
        await asyncio.to_thread(_write_merged_audio, audio_dir / RECORDING, placed,
                                self.services.settings.max_chunk_seconds)
        if confirmed and not ok:
            reasons = sorted({c.get("error") or "failed" for c in confirmed})
            await self._transcript_failed(cid, "every chunk failed: " + "; ".join(reasons))
            await hub.publish(cid, Status(status="failed", stage="transcription", message="every chunk failed"))
            return
        failed = len(confirmed) - len(ok)
        message = "conversation transcribed" + (f" ({failed} chunk(s) failed)" if failed else "")
        await lifecycle.complete(self.services, cid, duration=offset, message=message, key="chunks merged")
        self._locks.pop(cid, None)


def _remove_partial_uploads(audio_root: Path) -> int:
    """Bodies that were still arriving when the server died were never acknowledged: drop them."""
    n = 0
    for pattern in ("*/.incoming-*", "*/chunks/.incoming-*"):
        for p in audio_root.glob(pattern):
            _unlink(p)
            n += 1
    return n


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _shifted(seg: dict[str, Any], segment_id: str, offset: float) -> Transcription:
    return Transcription(
        text=seg["text"], speaker=seg.get("speaker"), confidence=seg.get("confidence") or 0.0,
        segment_id=segment_id, is_final=True, start=round(seg["start"] + offset, 3),
        end=round(seg["end"] + offset, 3), participant_id=seg.get("participant_id"),
        words=[Word(text=w["text"], start=round(w["start"] + offset, 3), end=round(w["end"] + offset, 3),
                    probability=w.get("probability", 0.0), final=True) for w in seg.get("words") or []])


def _write_merged_audio(path: Path, chunks: list[dict[str, Any]], max_chunk_seconds: float) -> None:
    """The conversation's audio as one 16 kHz WAV, on the same timeline as its merged transcript.

    Each chunk is decoded only as far as its transcribed duration (never past ``max_chunk_seconds``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".merging")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    wav = WavAppender(tmp)
    try:
        for ch in chunks:
            want = int(round(float(ch.get("duration") or 0.0) * 16000))
            got = 0
            if ch["status"] == "transcribed":
                with contextlib.suppress(DecodeError):
                    for block in iter_decode_file(ch["path"], chunk_seconds=BLOCK_SECONDS,
                                                  max_seconds=max_chunk_seconds):
                        block = block[:max(0, want - got)]
                        wav.append(block)
                        got += len(block)
                        if got >= want:
                            break
            if got < want:  # a failed chunk keeps its place on the timeline as silence
                wav.append(np.zeros(want - got, dtype=np.float32))
        wav.sync()
    finally:
        wav.close()
    tmp.replace(path)


def _wants_diarization(services: Any, options: dict[str, Any]) -> bool:
    """An upload's own ``diarization`` option, else the server's setting."""
    wanted = options.get("diarization")
    return bool(wanted) if wanted is not None else services.settings.diarization == "on"
