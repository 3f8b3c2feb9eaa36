"""Summaries written in the background, as jobs: any node that takes jobs writes them, none is lost to a crash.

``summarize`` runs once a transcript completes (queued in the completion's own transaction): the summary is
stored on the transcript together with its ``conversation.summarized`` webhook deliveries, and then published as
a ``summary`` message. ``summary_request`` runs a ``POST /api/summary/`` request, whose state lives in the
``summary_jobs`` table, so every node answers for it and a restart keeps it.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from server.features.speakers import named_segments
from server.features.summaries.llm import LlmError, summarize_texts
from server.features.summaries.result import SummaryResult, transcript_text
from server.jobs.queue import Job
from server.jobs.runner import Task, in_status
from server.storage.base import isoformat

if TYPE_CHECKING:
    from server.jobs.queue import JobQueue
    from server.jobs.runner import JobContext
    from server.pipeline.hub import Hub
    from server.settings import Settings
    from server.storage import Store

log = logging.getLogger("voxlane.summaries")
SUMMARIZE = "summarize"
SUMMARY_REQUEST = "summary_request"
REQUEST_TTL = timedelta(hours=24)
"""How long a ``POST /api/summary/`` job is kept (it is cheap to ask for again)."""


class SummaryParts(Protocol):
    """What summarizing takes: the rows, the queue (its webhook's outbox), the subscribers, and the LLM's
    settings."""

    settings: Settings
    store: Store
    jobs: JobQueue
    hub: Hub


def summarize_job(transcript_id: str) -> Job:
    return Job(SUMMARIZE, {"transcript_id": transcript_id}, dedupe=f"{SUMMARIZE}:{transcript_id}")


async def summarize_completed(services: SummaryParts, transcript_id: str, *, key: str | None = None) -> None:
    """A completed transcript gets its summary: the job is staged in the transaction that completes it."""
    await services.jobs.stage([summarize_job(transcript_id)])


async def summarize(ctx: JobContext[SummaryParts]) -> None:
    """A completed transcript's summary: stored with its webhook deliveries in one transaction, then published."""
    await summarize_transcript(ctx.services, ctx.args["transcript_id"])


async def summarize_transcript(services: SummaryParts, tid: str) -> dict[str, Any] | None:
    """Write a transcript's summary: stored with its ``conversation.summarized`` deliveries in one transaction,
    then published. The summary as stored; None for a transcript that is gone or has no text."""
    store = services.store
    row = await store.get_transcript(tid)
    if row is None or (row.get("meta") or {}).get("auto_summary") is False:
        return None  # gone, or its meeting room turned automatic summaries off
    segments = await named_segments(store, row)
    texts = [transcript_text([s]) for s in segments]
    if not any(texts):
        return None
    result = await summarize_texts(services.settings, texts)
    stored = result.stored()
    from server.features.webhooks import emit_event  # webhooks import summaries' neighbours; keep the cycle lazy

    async with store.transaction():
        if await store.update_transcript(tid, summary=stored) is None:
            return None  # deleted meanwhile
        await emit_event(services, tid, "conversation.summarized", stored, key="summary")
    await services.hub.publish(tid, result.message())
    return stored


# ---------------------------------------------------------------- summary requests (POST /api/summary/)


async def request_summary(services: SummaryParts, *, owner: str | None, texts: list[str], model_name: str | None,
                          max_words: int, fmt: str, transcript_id: str | None, message: str) -> dict[str, Any]:
    """Store a summary request and queue its job, in one transaction; the stored row."""
    job_id = str(uuid.uuid4())
    request = {"texts": texts, "model_name": model_name, "max_words": max_words, "format": fmt,
               "transcript_id": transcript_id}
    async with services.store.transaction():
        row = await services.store.create_summary_job(job_id=job_id, owner=owner, request=request, message=message)
        await services.jobs.stage([Job(SUMMARY_REQUEST, {"job_id": job_id})])
    return row


async def run_summary_request(ctx: JobContext[SummaryParts]) -> None:
    store, job_id = ctx.services.store, ctx.args["job_id"]
    row = in_status(await store.get_summary_job(job_id), "processing")
    if row is None:
        return
    req = row["request"] or {}
    try:
        result = await summarize_texts(ctx.services.settings, list(req.get("texts") or []),
                                       model_name=req.get("model_name"), max_words=req.get("max_words"),
                                       fallback=False)
    except LlmError as exc:  # the LLM's answer, not ours to retry: the job failed
        await store.update_summary_job(job_id, status="failed", message=str(exc) or type(exc).__name__)
        return
    tid = req.get("transcript_id")
    if tid and await store.update_transcript(tid, summary=result.stored()) is not None:
        await ctx.services.hub.publish(tid, result.message())
    await store.update_summary_job(job_id, status="completed", message="summary ready", progress=100.0,
                                   result=result_body(result, req.get("format") or "paragraph"))


async def give_up_summary_request(ctx: JobContext[SummaryParts], reason: str) -> None:
    await ctx.services.store.update_summary_job(ctx.args["job_id"], status="failed", message=reason)


async def forget_old_requests(services: SummaryParts) -> int:
    """Housekeeping: summary requests older than a day go."""
    return await services.store.delete_summary_jobs(isoformat(datetime.now(UTC) - REQUEST_TTL))


def request_expired(row: dict[str, Any]) -> bool:
    created = datetime.fromisoformat(row["created_at"].replace("Z", "+00:00"))
    return created < datetime.now(UTC) - REQUEST_TTL


def result_body(result: SummaryResult, fmt: str) -> dict[str, Any]:
    """A summary as ``GET /api/summary/{job_id}`` answers it, in the requested format."""
    summary = result.summary
    if fmt == "bullet_points":
        summary = "\n".join(f"- {s}" for s in _sentences(summary))
    elif fmt == "key_points":
        summary = "\n".join(f"- {s}" for s in (result.key_points or _sentences(summary)))
    return {"summary": summary, "topics": result.topics, "length": len(summary.split()),
            "model_used": result.model_used, "action_items": result.action_items, "key_points": result.key_points,
            "format": fmt}


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s]


def job_tasks(attempts: int) -> list[Task]:
    """A completed transcript's summary, and the summaries asked for through the API."""
    return [Task(SUMMARIZE, summarize, max_attempts=attempts),
            Task(SUMMARY_REQUEST, run_summary_request, max_attempts=attempts, give_up=give_up_summary_request)]
