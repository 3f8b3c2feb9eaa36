"""Running claimed jobs: the same attempt, retry, give-up and watchdog rules on every queue.

The queue (embedded or PostgreSQL) decides which node runs a job and keeps its lease; :class:`JobRunner` runs one
attempt of it on this node and says what became of it. Every task declares its lane, its attempts and what giving
up means (:class:`Task`); a handler raises :class:`RetryLater` for a condition that passes (a chunk whose audio is
not in the store yet), anything else is a failed attempt retried with exponential backoff. A job whose attempts
are used up, by errors or by nodes that died running it, is given up: its ``give_up`` records why on the rows it
concerns, so nothing stays ``processing`` forever.

A node that is alive but whose job hangs (a decode that never returns, a read that never ends) keeps renewing
its lease, so the queue cannot notice; the runner's watchdog can: a job whose handler has not called
:meth:`JobContext.alive` for ``stall_seconds`` is cancelled and its attempt counted as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from server.jobs.progress import Progress
from server.jobs.queue import DONE, Claimed, JobQueue, Lane, Outcome
from server.storage.outage import database_unavailable

Parts = TypeVar("Parts")
"""What the node hands its handlers: each handler names, as a Protocol of its own, the parts it reads
(``JobContext[WebhookParts]``); the runner only passes them on."""

log = logging.getLogger("voxlane.jobs")
MAX_BACKOFF = 300.0
OUTAGE_RETRY_S = 5.0
DEPTH_REFRESH_S = 5.0


AUDIO_LANE = "audio"
"""Transcriptions: seconds to minutes each, ``VOXLANE_REST_WORKERS`` at once."""
EVENTS_LANE = "events"
"""Short tasks (merges, summaries, webhook deliveries), ``VOXLANE_EVENT_WORKERS`` at once: a webhook is never
stuck behind an hour of uploads."""
REPORTS_LANE = "reports"
"""Project reports fan out into up to a few hundred summaries at once: a quarter of the event workers (at least
one), so a report never holds up a webhook or a conversation's own summary."""


class RetryLater(Exception):
    """This attempt cannot succeed yet; try again after ``delay`` seconds (it still counts as an attempt)."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class JobStalled(Exception):
    pass


@dataclass(frozen=True)
class Task:
    """A kind of job: its handler, how often it is tried and what giving it up records."""

    name: str
    run: Callable[[JobContext[Any]], Coroutine[Any, Any, None]]
    max_attempts: int = 3
    backoff_s: float = 5.0
    give_up: Callable[[JobContext[Any], str], Awaitable[None]] | None = None
    lane: str = EVENTS_LANE  # the lane (on PostgreSQL, the queue) its jobs wait in


def in_status(row: dict[str, Any] | None, status: str) -> dict[str, Any] | None:
    """The row a job works on, or None once it is deleted or has left ``status``: a job runs at least once (a retry
    after its work committed, a node that died after committing), so a handler acts only from the state that queued
    it and takes any other as its work done."""
    return row if row is not None and row["status"] == status else None


def task_lanes(tasks: Sequence[Task], *, audio_workers: int, event_workers: int) -> list[Lane]:
    """The lanes ``tasks`` wait in, each with the jobs it runs at once on a node."""
    workers = {AUDIO_LANE: audio_workers, EVENTS_LANE: event_workers, REPORTS_LANE: max(1, event_workers // 4)}
    return [Lane(name, frozenset(t.name for t in tasks if t.lane == name), n) for name, n in workers.items()]


class JobContext(Generic[Parts]):
    """What a handler gets: the node's parts, the job's arguments and attempt, and its watchdog."""

    def __init__(self, services: Parts, claimed: Claimed, progress: dict[str, Progress] | None = None) -> None:
        self.services = services
        self.progress = progress  # the runner's board of its files' progress (None: nobody reads it)
        self.job = claimed
        self.args = claimed.args
        self.attempt = claimed.attempts
        self.last_alive = time.monotonic()
        self.transcript_id: str | None = claimed.args.get("transcript_id")

    def alive(self) -> None:
        """The handler is making progress (the watchdog leaves it alone for another ``stall_seconds``)."""
        self.last_alive = time.monotonic()

    def concerns(self, transcript_id: str) -> None:
        """Which transcript this job works on: deleting it cancels the job on this node at once."""
        self.transcript_id = transcript_id


class JobRunner:
    """Runs this node's share of the queue's jobs (a node that takes jobs has one)."""

    def __init__(self, services: object, queue: JobQueue, tasks: Sequence[Task], lanes: Sequence[Lane],
                 stall_seconds: float) -> None:
        self.services = services
        self.queue = queue
        self.tasks: Mapping[str, Task] = {t.name: t for t in tasks}
        self.lanes = list(lanes)
        self.stall_seconds = stall_seconds
        self.running: dict[str, tuple[JobContext, asyncio.Task]] = {}  # job id -> its attempt on this node
        self.progress: dict[str, Progress] = {}  # transcript id -> its file's progress, for jobs running here
        self.queued = 0  # jobs waiting, on the whole queue (refreshed every DEPTH_REFRESH_S, for /metrics)
        self._tasks: list[asyncio.Task] = []
        self._cancelled: set[str] = set()  # job ids cancelled because their transcript went away

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._serve(), name="job-runner"),
                       asyncio.create_task(self._count_queued(), name="job-depth")]

    async def _serve(self) -> None:
        """Serve the queue for the node's lifetime: a queue that fails (a write refused at start) is served again
        after a pause and said so, instead of leaving a node that answers as if it ran jobs and runs none."""
        while True:
            try:
                await self.queue.serve(self.lanes, self.dispatch)
            except Exception:
                log.exception("the job queue stopped; serving it again in %g s", OUTAGE_RETRY_S)
            await asyncio.sleep(OUTAGE_RETRY_S)

    async def stop(self) -> None:
        """Stop taking jobs; attempts still running are interrupted (they do not count) and run again later."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _count_queued(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.queued = sum((await self.queue.counts()).values())
            await asyncio.sleep(DEPTH_REFRESH_S)

    def running_for(self, transcript_id: str) -> list[JobContext]:
        return [ctx for ctx, _ in self.running.values() if ctx.transcript_id == transcript_id]

    async def cancel(self, transcript_id: str) -> None:
        """Stop this node's jobs on a transcript that is being deleted (other nodes notice from the rows)."""
        found = [(job_id, task) for job_id, (ctx, task) in self.running.items() if ctx.transcript_id == transcript_id]
        for job_id, task in found:
            self._cancelled.add(job_id)
            task.cancel()
        await asyncio.gather(*(task for _, task in found), return_exceptions=True)

    async def dispatch(self, claimed: Claimed) -> Outcome:
        task = self.tasks.get(claimed.task)
        if task is None:
            log.error("job %s: no task %r on this node", claimed.id, claimed.task)
            return Outcome("failed", error=f"unknown task {claimed.task!r}")
        ctx = JobContext(self.services, claimed, self.progress)
        if claimed.attempts > task.max_attempts:  # the last attempts' nodes died running it
            return await self._give_up(task, ctx, f"gave up after {claimed.attempts - 1} interrupted attempts")
        attempt = asyncio.create_task(task.run(ctx), name=f"job-{claimed.task}-{claimed.id}")
        self.running[claimed.id] = (ctx, attempt)
        try:
            await self._watch(ctx, attempt)
            return DONE
        except asyncio.CancelledError:
            if claimed.id in self._cancelled and not _cancelling():
                return DONE  # the transcript was deleted: nothing left to do
            raise  # this node is stopping
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            if database_unavailable(exc):  # not the job's fault: it runs again once the database is back
                log.warning("job %s (%s): the database went away (%s); again in %.0f s", claimed.id, claimed.task,
                            reason, OUTAGE_RETRY_S)
                return Outcome("retry", OUTAGE_RETRY_S, reason[:500], counts=False)
            if not isinstance(exc, RetryLater | JobStalled):
                log.exception("job %s (%s, attempt %d) failed", claimed.id, claimed.task, claimed.attempts)
            if claimed.attempts >= task.max_attempts:
                return await self._give_up(task, ctx, f"gave up after {claimed.attempts} attempts: {reason}")
            return self._retry(task, ctx, reason, exc.delay if isinstance(exc, RetryLater) else None)
        finally:
            self.running.pop(claimed.id, None)
            self._cancelled.discard(claimed.id)

    async def _watch(self, ctx: JobContext, attempt: asyncio.Task) -> None:
        """Wait for the attempt; cancel it once its handler has shown no progress for ``stall_seconds``."""
        try:
            while True:
                left = ctx.last_alive + self.stall_seconds - time.monotonic()
                if left <= 0:
                    attempt.cancel()
                    with contextlib.suppress(BaseException):
                        await attempt
                    raise JobStalled(f"no progress for {self.stall_seconds:g} s")
                done, _ = await asyncio.wait({attempt}, timeout=left)
                if done:
                    return attempt.result()
        except asyncio.CancelledError:
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await attempt
            raise

    def _retry(self, task: Task, ctx: JobContext, reason: str, delay: float | None) -> Outcome:
        wait = delay if delay is not None else min(MAX_BACKOFF, task.backoff_s * 2 ** max(0, ctx.attempt - 1))
        log.info("job %s (%s) attempt %d: %s; again in %.1f s", ctx.job.id, task.name, ctx.attempt, reason, wait)
        return Outcome("retry", wait, reason[:500])

    async def _give_up(self, task: Task, ctx: JobContext, reason: str) -> Outcome:
        log.error("job %s (%s): %s", ctx.job.id, task.name, reason)
        if task.give_up is not None:
            try:
                await task.give_up(ctx, reason)
            except Exception:
                log.exception("job %s: recording that it was given up failed; retrying", ctx.job.id)
                return Outcome("retry", task.backoff_s, reason[:500])
        return Outcome("failed", error=reason[:500])


def _cancelling() -> bool:
    """Whether the current task itself is being cancelled (this node is stopping)."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0

