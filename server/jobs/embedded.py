"""The embedded job queue: a table in the SQLite file and a runner in the server's own process.

SQLite is one machine and one writer, so no queue library is needed: a job is a row of ``jobs`` staged in the
caller's transaction, claimed under SQLite's write lock, and leased while it runs. Only one process runs the jobs
of a data directory: it holds an exclusive lock on ``jobs.lock`` there (the operating system releases it when the
process dies, even by SIGKILL). So when a process gets that lock, every job still marked running belongs to a
process that is gone, and it is put back at once instead of waiting for its lease to run out. A second process on
the same data directory (a ``voxlane`` command, a misconfigured second server) stages jobs but runs none.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.jobs.queue import Claimed, Dispatch, Job, Lane, Outcome, run_all, wait_event
from server.storage import Store
from server.storage.tables import jobs

log = logging.getLogger("voxlane.jobs")
J = jobs
LEASE_SECONDS = 30.0
"""A running job's lease, renewed every third of it: only a process that stopped renewing loses it."""
SETTLE_RETRY_MAX_S = 30.0
IDLE_POLL = 5.0
"""Longest sleep with nothing due: jobs staged by this process wake the runner at once."""


class EmbeddedQueue:
    """:class:`~server.jobs.queue.JobQueue` on the store's own database (SQLite)."""

    def __init__(self, store: Store, data_path: Path) -> None:
        self.store = store
        self.lock_path = data_path / "jobs.lock"
        self._wake = asyncio.Event()
        self._running: dict[str, Claimed] = {}
        self._lock_fd: int | None = None
        self._interrupted: set[int] = set()  # jobs a stop interrupted and could not put back (attempt unused)

    # ------------------------------------------------------------ staging

    async def stage(self, jobs_: Sequence[Job]) -> None:
        if not jobs_:
            return
        now = time.time()
        async with self.store.connection() as conn:
            for job in jobs_:
                stmt = _insert(conn).values(task=job.task, args=dict(job.args), lock=job.lock, dedupe=job.dedupe,
                                            priority=job.priority, status="queued", attempts=0,
                                            run_at=job.run_at or now, created_at=now)
                if job.dedupe is not None:
                    stmt = stmt.on_conflict_do_nothing(index_elements=[J.c.dedupe], index_where=J.c.status == "queued")
                await conn.execute(stmt)
        self.store.after_commit(self._wake.set)

    # ------------------------------------------------------------ serving

    async def serve(self, lanes: Sequence[Lane], dispatch: Dispatch) -> None:
        if not await asyncio.to_thread(self._take_process_lock):
            log.warning("another process runs the jobs of %s; this one only queues them", self.lock_path.parent)
            await asyncio.Event().wait()
        try:
            put_back = await self._put_back(self._interrupted)
            self._interrupted.clear()
            if put_back:
                log.info("resuming %d job(s) a stopped process was running", put_back)
            workers = [asyncio.create_task(self._worker(lane, dispatch), name=f"jobs-{lane.name}-{i}")
                       for lane in lanes for i in range(lane.concurrency)]
            workers.append(asyncio.create_task(self._renew_leases(), name="jobs-leases"))
            await run_all(workers)
        finally:
            await asyncio.to_thread(self._release_process_lock)

    async def _worker(self, lane: Lane, dispatch: Dispatch) -> None:
        while True:
            try:
                claimed = await self._claim(lane)
            except Exception:
                log.exception("taking a job failed; trying again")
                await asyncio.sleep(1.0)
                continue
            if claimed is None:
                await self._sleep_until_due(lane)
                continue
            self._running[claimed.id] = claimed
            try:
                try:
                    outcome = await dispatch(claimed)
                except asyncio.CancelledError:  # this process is stopping: the attempt does not count
                    self._interrupted.add(int(claimed.id))  # until it is put back: the next serve() does it else
                    try:
                        await self._settle(claimed, Outcome("retry", 0.0, "interrupted by a stop"), count=False)
                        self._interrupted.discard(int(claimed.id))
                    except Exception:
                        log.warning("putting back job %s failed; done when this process next takes the jobs",
                                    claimed.id, exc_info=True)
                    raise
                await self._settle_until_recorded(claimed, outcome)
            finally:
                self._running.pop(claimed.id, None)

    async def _settle_until_recorded(self, claimed: Claimed, outcome: Outcome) -> None:
        """Record the outcome, trying again until it is recorded: nothing else would (no other process runs these
        jobs, so a job left ``running`` waited for the next start). The job stays this worker's meanwhile, its
        lease renewed."""
        delay = 0.2
        while True:
            try:
                await self._settle(claimed, outcome, count=outcome.counts)
                return
            except Exception as exc:
                if delay == 0.2:
                    log.warning("recording the outcome of job %s failed (%s); trying again", claimed.id, exc)
            await asyncio.sleep(delay)
            delay = min(SETTLE_RETRY_MAX_S, delay * 2)

    async def _sleep_until_due(self, lane: Lane) -> None:
        self._wake.clear()
        due = await self._due(lane)
        delay = IDLE_POLL if due is None else min(IDLE_POLL, max(0.0, due - time.time()))
        if delay > 0:
            await wait_event(self._wake, delay)

    async def _due(self, lane: Lane) -> float | None:
        """When the lane's next job may be taken. A job waiting for its lock (another job with it runs) is not
        due: it was counted due at once, and every worker of the lane spun on claims that took nothing until the
        lock's holder finished (a kiosk conversation's merges: 83,000 claims in two minutes). The holder's
        settling wakes the workers instead."""
        busy = select(J.c.lock).where(J.c.status == "running", J.c.lock.is_not(None))
        async with self.store.connection() as conn:
            value = (await conn.execute(select(func.min(J.c.run_at)).where(
                J.c.status == "queued", J.c.task.in_(lane.tasks),
                or_(J.c.lock.is_(None), J.c.lock.not_in(busy))))).scalar()
        return None if value is None else value.timestamp()

    async def _claim(self, lane: Lane) -> Claimed | None:
        now = time.time()
        busy = select(J.c.lock).where(J.c.status == "running", J.c.lock.is_not(None))
        async with self.store.connection() as conn:  # SQLite's write lock from BEGIN IMMEDIATE: one claimer at once
            row = (await conn.execute(
                select(J.c.id).where(J.c.status == "queued", J.c.run_at <= now, J.c.task.in_(lane.tasks),
                                     or_(J.c.lock.is_(None), J.c.lock.not_in(busy)))
                .order_by(J.c.priority.desc(), J.c.id).limit(1))).first()
            if row is None:
                return None
            claimed = (await conn.execute(
                update(J).where(J.c.id == row.id).values(status="running", attempts=J.c.attempts + 1,
                                                         lease_until=now + LEASE_SECONDS)
                .returning(J.c.id, J.c.task, J.c.args, J.c.attempts))).mappings().one()
        return Claimed(id=str(claimed["id"]), task=claimed["task"], args=dict(claimed["args"] or {}),
                       attempts=claimed["attempts"])

    async def _settle(self, claimed: Claimed, outcome: Outcome, count: bool = True) -> None:
        key = int(claimed.id)
        async with self.store.connection() as conn:
            if outcome.state == "done":
                await conn.execute(delete(J).where(J.c.id == key))
            elif outcome.state == "failed":
                await conn.execute(update(J).where(J.c.id == key).values(status="failed", error=outcome.error,
                                                                          lease_until=None))
            else:
                values: dict[str, Any] = {"status": "queued", "run_at": time.time() + outcome.delay,
                                          "lease_until": None, "error": outcome.error}
                if not count:
                    values["attempts"] = J.c.attempts - 1
                try:
                    async with conn.begin_nested():
                        await conn.execute(update(J).where(J.c.id == key).values(**values))
                except IntegrityError:  # the same work is queued again already: that job does it
                    await conn.execute(delete(J).where(J.c.id == key))
        self._wake.set()

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            ids = [int(i) for i in self._running]
            if not ids:
                continue
            with contextlib.suppress(Exception):
                async with self.store.connection() as conn:
                    await conn.execute(update(J).where(J.c.id.in_(ids), J.c.status == "running")
                                       .values(lease_until=time.time() + LEASE_SECONDS))

    async def _put_back(self, uncounted: set[int]) -> int:
        """Queue again every job marked running (their process is gone: this one holds the lock now). Those in
        ``uncounted`` were interrupted by this process's own stop, so their attempt is given back; a process that
        died running a job used one.

        A dedupe key keeps one job waiting, so a running job whose key already waits (a webhook attempt that
        queued its own retry and died before it was settled), or that shares it with a newer running one, gives
        way to that job, as :meth:`_settle` does; put back as well, it broke the key and stopped the runner."""
        async with self.store.connection() as conn:
            waiting = set((await conn.execute(select(J.c.dedupe).where(
                J.c.status == "queued", J.c.dedupe.is_not(None)))).scalars())
            rows = (await conn.execute(select(J.c.id, J.c.dedupe).where(J.c.status == "running")
                                       .order_by(J.c.id.desc()))).all()
            superseded: set[int] = set()
            for row in rows:  # newest first: of jobs that share a key, the last one staged is kept
                if row.dedupe is None:
                    continue
                if row.dedupe in waiting:
                    superseded.add(row.id)
                waiting.add(row.dedupe)
            if superseded:
                await conn.execute(delete(J).where(J.c.id.in_(sorted(superseded))))
            back = [row.id for row in rows if row.id not in superseded]
            given_back = [i for i in back if i in uncounted]
            if given_back:
                await conn.execute(update(J).where(J.c.id.in_(given_back))
                                   .values(status="queued", lease_until=None, attempts=J.c.attempts - 1))
            rest = [i for i in back if i not in uncounted]
            if rest:
                await conn.execute(update(J).where(J.c.id.in_(rest)).values(status="queued", lease_until=None))
        return len(back)

    # ------------------------------------------------------------ the process lock

    def _take_process_lock(self) -> bool:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _release_process_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    # ------------------------------------------------------------ reading

    async def counts(self) -> dict[str, int]:
        async with self.store.connection() as conn:
            rows = (await conn.execute(select(J.c.task, func.count()).where(J.c.status == "queued")
                                       .group_by(J.c.task))).all()
        return {task: n for task, n in rows}

    async def held(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        async with self.store.connection() as conn:
            return set((await conn.execute(select(J.c.dedupe).where(
                J.c.status.in_(("queued", "running")), J.c.dedupe.in_(list(keys))))).scalars())

    async def position(self, task: str, dedupe: str) -> int | None:
        async with self.store.connection() as conn:
            mine = (await conn.execute(select(J.c.id, J.c.priority).where(J.c.dedupe == dedupe,
                                                                          J.c.status == "queued"))).first()
            if mine is None:
                return None
            ahead = (await conn.execute(select(func.count()).where(
                J.c.status == "queued", J.c.task == task,
                or_(J.c.priority > mine.priority, and_(J.c.priority == mine.priority, J.c.id < mine.id))))).scalar()
        return int(ahead or 0) + 1

    async def close(self) -> None:
        return None


def _insert(conn: AsyncConnection) -> Any:
    """INSERT with the dialect's ON CONFLICT clause (the embedded queue also runs on PostgreSQL in tests of it)."""
    return (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(J)
