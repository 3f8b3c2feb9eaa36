"""The job queue interface: every piece of background work is a job, written in the same transaction as the row
it concerns, and run by whichever node takes jobs.

Two implementations sit behind :class:`JobQueue`: the embedded one (:mod:`server.jobs.embedded`, a table in the
SQLite file and an in-process runner) and the PostgreSQL one (:mod:`server.jobs.pg`, on a maintained queue
library). Both give the same guarantees, which the handlers (:mod:`server.jobs.tasks`) rely on:

* a job staged inside ``store.transaction()`` exists if and only if that transaction commits;
* a running job holds a lease its node renews; a node that dies loses its leases and its jobs run again
  elsewhere (never because another node restarted);
* every run counts as an attempt, a failed attempt is retried after a backoff, and a job out of attempts is
  given up (its handler's ``give_up`` records why);
* jobs with the same ``lock`` run one at a time, in order; a ``dedupe`` key keeps one such job waiting at most
  (one may wait while another with the key runs).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Job:
    """One piece of work to do: a task name and its JSON arguments."""

    task: str
    args: Mapping[str, Any]
    lock: str | None = None
    dedupe: str | None = None
    run_at: float | None = None  # epoch seconds; None: now
    priority: int = 0  # higher first


@dataclass
class Claimed:
    """A job a node took: its queue id, what to run, and which attempt this is (1 for the first)."""

    id: str
    task: str
    args: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt: done, to be retried after ``delay`` seconds, or failed for good."""

    state: str  # done | retry | failed
    delay: float = 0.0
    error: str | None = None
    counts: bool = True  # False: the attempt was cut short by something outside the job (the database went away)


DONE = Outcome("done")


@dataclass(frozen=True)
class Lane:
    """Tasks that share a number of concurrent runs on one node: long transcriptions must never hold up a
    webhook or a merge, so they get a lane of their own."""

    name: str
    tasks: frozenset[str]
    concurrency: int


Dispatch = Callable[[Claimed], Awaitable[Outcome]]
"""Runs one claimed job and says what became of it (server.jobs.runner.JobRunner.dispatch)."""


class JobQueue(Protocol):
    """Where jobs wait between the transaction that staged them and the node that runs them."""

    async def stage(self, jobs: Sequence[Job]) -> None:
        """Write ``jobs`` in the store's current transaction (see ``Store.transaction``), or in one of their own."""

    async def serve(self, lanes: Sequence[Lane], dispatch: Dispatch) -> None:
        """Take and run jobs until cancelled: each lane's tasks, up to its concurrency at once."""

    async def counts(self) -> dict[str, int]:
        """Jobs waiting (due or not), by task."""

    async def position(self, task: str, dedupe: str) -> int | None:
        """1-based place among the waiting jobs of ``task`` of the one staged with ``dedupe`` (None: not waiting)."""

    async def held(self, keys: Sequence[str]) -> set[str]:
        """Those of the dedupe ``keys`` that a job waiting or running holds: work the queue still has."""

    async def close(self) -> None: ...


async def run_all(tasks: list[asyncio.Task]) -> None:
    """Run a queue's worker tasks until one of them ends or this is cancelled, then see each one out. Cancelling
    the gather cancelled each task once; a second cancel would interrupt one that is putting its job back, so only
    tasks still untouched (a sibling ended) are cancelled here."""
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            if not task.done() and not task.cancelling():
                task.cancel()
        await asyncio.wait(tasks)


async def wait_event(event: asyncio.Event, seconds: float) -> None:
    """Wait for ``event`` at most ``seconds``. Not ``asyncio.wait_for``: on Python 3.11 it can swallow a
    cancellation that arrives as the event is set, and a queue's worker would then never stop."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
