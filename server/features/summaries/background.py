"""Summaries written when a transcript completes (in the background, never delaying ``completed``), and the
in-memory jobs of ``POST /api/summary/``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from server.features.speakers import named_segments
from server.features.summaries.llm import LlmError, summarize_texts
from server.features.summaries.result import SummaryResult, transcript_text

log = logging.getLogger("voxlane.summaries")


_tasks: dict[int, set[asyncio.Task]] = {}


async def summarize_transcript(services: Any, transcript_id: str) -> asyncio.Task:
    """Summarize a completed transcript in the background (stored, then published as a ``summary`` message);
    returns the task at once, so the caller's ``completed`` is never delayed."""
    task = asyncio.create_task(_summarize_stored(services, transcript_id), name=f"summary-{transcript_id}")
    running = _tasks.setdefault(id(services), set())
    running.add(task)
    task.add_done_callback(running.discard)
    return task


async def _summarize_stored(services: Any, transcript_id: str) -> SummaryResult | None:
    try:
        row = await services.store.get_transcript(transcript_id)
        segments = await named_segments(services.store, row or {"id": transcript_id})
        texts = [transcript_text([s]) for s in segments]
        if not any(texts):
            return None
        result = await summarize_texts(services.settings, texts)
        if await services.store.update_transcript(transcript_id, summary=result.stored()) is None:
            return None  # deleted meanwhile
        await services.hub.publish(transcript_id, result.message())
        from server.features.webhooks import emit_event  # webhooks import summaries' neighbours; keep the cycle lazy

        await emit_event(services, transcript_id, "conversation.summarized", result.stored(), key="summary")
        return result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("summarizing transcript %s failed", transcript_id)
        return None


async def stop(services: Any) -> None:
    """Cancel the summaries still running for these services (the app is stopping)."""
    tasks = list(_tasks.pop(id(services), ()))
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def wait_idle(services: Any) -> None:
    """Wait for the running summaries of these services (tests, CLI)."""
    tasks = list(_tasks.get(id(services), ()))
    if tasks:
        await asyncio.wait(tasks)


# ---------------------------------------------------------------- summary jobs (POST /api/summary/)


@dataclass
class SummaryJob:
    id: str
    owner: str | None
    status: str = "processing"  # processing | completed | failed
    message: str = "summarizing"
    progress: float = 0.0
    result: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    task: asyncio.Task | None = None


class SummaryJobs:
    """Summary jobs in memory: the newest ``keep`` for ``ttl`` seconds (a job is cheap to ask for again)."""

    def __init__(self, keep: int = 1000, ttl: float = 24 * 3600) -> None:
        self.keep = keep
        self.ttl = ttl
        self._jobs: OrderedDict[str, SummaryJob] = OrderedDict()

    def get(self, job_id: str) -> SummaryJob | None:
        self._expire()
        return self._jobs.get(job_id)

    def start(self, services: Any, owner: str | None, work) -> SummaryJob:
        self._expire()
        job = SummaryJob(id=str(uuid.uuid4()), owner=owner)
        self._jobs[job.id] = job
        while len(self._jobs) > self.keep:
            _, old = self._jobs.popitem(last=False)
            if old.task is not None and not old.task.done():
                old.task.cancel()

        async def run() -> None:
            try:
                job.result = await work()
                job.status, job.message, job.progress = "completed", "summary ready", 100.0
            except asyncio.CancelledError:
                job.status, job.message = "failed", "cancelled"
                raise
            except Exception as exc:
                job.status, job.message = "failed", str(exc) or type(exc).__name__
                if not isinstance(exc, LlmError):
                    log.exception("summary job %s failed", job.id)

        job.task = asyncio.create_task(run(), name=f"summary-job-{job.id}")
        running = _tasks.setdefault(id(services), set())
        running.add(job.task)
        job.task.add_done_callback(running.discard)
        return job

    def _expire(self) -> None:
        cutoff = time.time() - self.ttl
        while self._jobs:
            job = next(iter(self._jobs.values()))
            if job.created >= cutoff:
                break
            self._jobs.popitem(last=False)
            with contextlib.suppress(Exception):
                if job.task is not None and not job.task.done():
                    job.task.cancel()
