"""The PostgreSQL job queue, on procrastinate: jobs in the voxlane database, run by every node that takes jobs.

Why procrastinate (measured against PgQueuer, the other asyncio queue on ``SKIP LOCKED``): it has the two
guarantees the handlers need and PgQueuer lacks. Its ``lock`` runs a conversation's merges one at a time across
every node while a later one waits behind the running one (PgQueuer's dedupe key drops a job enqueued while its
twin runs, losing a merge), and a job taken back from a dead worker counts an attempt (PgQueuer re-picks it
with its attempts unchanged, so a job that kills its worker would run forever). PgQueuer moved more no-op jobs a
second; a transcription job takes seconds, so the queue is never the bottleneck here (docs/benchmarks.md).

How it is used:

* **Staging**: a plain ``INSERT`` into ``procrastinate_jobs`` on the store's own connection, so a job commits or
  rolls back with the caller's rows (procrastinate's trigger still wakes the workers with ``NOTIFY``). A job's
  ``dedupe`` key is procrastinate's ``queueing_lock`` (at most one waiting), its ``lock`` is its ``lock``.
* **Running**: one procrastinate worker per lane (its queue) with the lane's concurrency; every task calls the
  node's :class:`~server.jobs.runner.JobRunner`, which decides what an attempt came to. A retry is a new job
  row (the attempt count carried over, scheduled after the backoff) written before the current one ends: a retry
  of a job whose twin is already waiting is covered by the twin, and a conversation's lock keeps the order.
* **Dead nodes**: workers write heartbeats (every fifth of ``VOXLANE_JOB_LEASE_SECONDS``); every node sweeps for
  jobs ``doing`` on a worker whose heartbeat is older than the lease and puts them back with one more attempt,
  row-locked with
  ``SKIP LOCKED`` so two sweeping nodes never put one job back twice; none within two leases of the database's
  own start, when no heartbeat can be fresh. A restart of any node, or of the database, touches no job that a
  live worker holds.
* **Stopping**: running attempts are aborted and queued again without counting; succeeded jobs are deleted.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from server.jobs.queue import Claimed, Dispatch, Job, Lane, run_all, wait_event
from server.storage import Store
from server.storage.engine import LIBPQ_SESSION
from server.storage.outage import until_stored

log = logging.getLogger("voxlane.jobs")
POLL_S = 5.0
"""How often an idle worker looks for work by itself: new jobs wake it through NOTIFY, and jobs scheduled for
later (retries after their backoff) through :meth:`PgQueue._wake_when_due`."""
DUE_CHECK_S = 1.0
RESTART_S = 2.0
LOCK_HANDOVER_S = 0.05

_STAGE = text("""
INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at, attempts)
VALUES (:queue, :task, :priority, :lock, :queueing_lock, CAST(:args AS jsonb), :scheduled_at, :attempts)
ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
""")
# Jobs held by workers whose heartbeat stopped, each put back with one more attempt (procrastinate's own retry);
# one whose twin already waits (same queueing lock) is cancelled instead: the twin does the work. None while the
# database itself started less than :settle ago: no worker could write a heartbeat while it was down or
# recovering, so every heartbeat is old then, the live workers' too. A standby promoted in a failover has been up
# for long; what it last replayed is the old primary's last commit, so it settles from there (the replay time
# is NULL on a database that never recovered, and greatest() passes over a NULL).
_STALLED = text("""
SELECT j.id, j.queueing_lock FROM procrastinate_jobs j
LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
WHERE j.status = 'doing' AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => :stalled))
  AND greatest(pg_postmaster_start_time(), pg_last_xact_replay_timestamp())
      < now() - make_interval(secs => :settle)
FOR UPDATE OF j SKIP LOCKED
""")
# The rows of those workers, once their jobs are back: removed by this sweep, under its guard, and not by
# procrastinate's own pruning, which a lane runs each time it starts with no guard at all. A lane started again
# the moment the database came back removed the rows of every live lane that had not yet written a heartbeat;
# their running jobs lost their worker (ON DELETE SET NULL) and the next sweep ran them a second time.
_PRUNE = text("""
DELETE FROM procrastinate_workers w
WHERE w.last_heartbeat < now() - make_interval(secs => :stalled)
  AND greatest(pg_postmaster_start_time(), pg_last_xact_replay_timestamp())
      < now() - make_interval(secs => :settle)
  AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j WHERE j.worker_id = w.id AND j.status = 'doing')
""")
PRUNED_BY_PROCRASTINATE_S = 7 * 86400.0
"""procrastinate prunes workers silent for this long when a lane starts: in effect never (see ``_PRUNE``)."""
_RETRY = text("SELECT procrastinate_retry_job_v2(:id, now(), NULL, NULL, NULL)")
_COVERED = text("UPDATE procrastinate_jobs SET status = 'cancelled' WHERE id = :id")
# The soonest a job scheduled for later comes due, and the queues holding jobs that can run now but wait: one
# whose time came (a retry after its backoff), or one whose lock another job held (a conversation's next merge).
# procrastinate wakes its workers for new rows only; these would wait for its polling otherwise.
_NEXT_DUE = text("""
SELECT min(scheduled_at) FROM procrastinate_jobs
WHERE status = 'todo' AND scheduled_at > now() AND queue_name = ANY(:queues)
""")
_RIPE = text("""
SELECT DISTINCT queue_name FROM procrastinate_jobs j
WHERE j.status = 'todo' AND queue_name = ANY(:queues)
  AND (j.scheduled_at IS NOT NULL OR j.lock IS NOT NULL) AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
  AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs d WHERE d.lock = j.lock AND d.status = 'doing')
""")
_WAKE = text("""SELECT pg_notify('procrastinate_queue_v1#' || :queue, '{"type": "job_inserted", "job_id": null}')""")


class GivenUp(Exception):
    """The job is out of attempts: its handler recorded why; procrastinate marks it failed."""


class PgQueue:
    """:class:`~server.jobs.queue.JobQueue` on procrastinate, in the store's PostgreSQL database."""

    def __init__(self, store: Store, dsn: str, lane_of: Callable[[str], str], lease_s: float = 10.0) -> None:
        self.store = store
        self.dsn = dsn
        self.lane_of = lane_of
        self.lease_s = lease_s  # a worker whose heartbeat is this old is dead: its jobs run again elsewhere
        self._scheduled = asyncio.Event()  # a job became runnable by time or by a released lock (_wake_when_due)
        self._unsaved: list[tuple[Any, str, dict[str, Any]]] = []  # attempts stopped with no database to say so

    # ------------------------------------------------------------ staging

    async def stage(self, jobs: Sequence[Job]) -> None:
        if jobs:
            async with self.store.connection() as conn:
                await conn.execute(_STAGE, [_row(job, self.lane_of(job.task)) for job in jobs])
            if any(job.run_at is not None for job in jobs):
                self.store.after_commit(self._scheduled.set)

    # ------------------------------------------------------------ serving

    async def serve(self, lanes: Sequence[Lane], dispatch: Dispatch) -> None:
        import procrastinate

        app = procrastinate.App(connector=procrastinate.PsycopgConnector(
            conninfo=self.dsn, min_size=1, max_size=sum(lane.concurrency for lane in lanes) + 4,
            kwargs=LIBPQ_SESSION))
        for lane in lanes:
            for name in sorted(lane.tasks):
                app.task(name=name, queue=lane.name, pass_context=True)(self._runner(name, dispatch))
        loop = asyncio.get_running_loop()
        handler = loop.get_exception_handler()
        loop.set_exception_handler(_quiet_ended_elsewhere(handler))
        try:
            async with app.open_async():
                workers = [asyncio.create_task(self._keep_working(app, lane), name=f"jobs-{lane.name}")
                           for lane in lanes]
                workers.append(asyncio.create_task(self._sweep_stalled(), name="jobs-stalled"))
                workers.append(asyncio.create_task(self._wake_when_due([lane.name for lane in lanes]),
                                                   name="jobs-due"))
                await run_all(workers)
        finally:
            loop.set_exception_handler(handler)

    async def _keep_working(self, app: Any, lane: Lane) -> None:
        """One procrastinate worker for the lane, started again whenever it stops by itself: it does when it loses
        the database (its heartbeat fails), and its jobs were aborted then. Those it could not put back then are
        put back once the database answers again, before the lane takes new work: procrastinate may have marked
        them ``aborted``, which no sweep looks at, and the reconciler would find them only minutes later."""
        while True:
            try:
                await app.run_worker_async(
                    queues=[lane.name], concurrency=lane.concurrency, name=f"voxlane-{lane.name}",
                    update_heartbeat_interval=self.lease_s / 5, stalled_worker_timeout=PRUNED_BY_PROCRASTINATE_S,
                    fetch_job_polling_interval=POLL_S, delete_jobs="successful", shutdown_graceful_timeout=0,
                    install_signal_handlers=False)
                log.warning("the %s job worker stopped; starting it again", lane.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the %s job worker failed (%s); starting it again", lane.name, exc)
            await asyncio.sleep(RESTART_S)
            await self._put_back_unsaved()

    async def _put_back_unsaved(self) -> None:
        while self._unsaved:
            # taken off before the first await: each lane drains this one list, and a job without a queueing
            # lock staged twice would run twice
            job, name, args = self._unsaved.pop(0)
            try:
                await until_stored(f"job {job.id}, stopped with the database away,", functools.partial(
                    self._again, job, name, args, attempts=job.attempts, delay=0.0))
            except Exception as exc:  # not the database: the reconciler finds its work again
                log.warning("job %s could not be queued again (%s)", job.id, exc)
            else:
                log.warning("job %s: stopped while the database was away; it runs again", job.id)

    def _runner(self, name: str, dispatch: Dispatch) -> Callable[..., Any]:
        async def run(context: Any, **args: Any) -> None:
            job = context.job
            claimed = Claimed(id=str(job.id), task=name, args=args, attempts=job.attempts + 1)
            try:
                outcome = await dispatch(claimed)
            except asyncio.CancelledError:  # this node or this lane's worker is stopping: the attempt does not count
                try:
                    await self._again(job, name, args, attempts=job.attempts, delay=0.0)
                except BaseException:  # the database is away (what stops a lane's worker), or the lane cancelled
                    # this attempt again while it waited for it (a loaded machine): once it is back. The row is
                    # written at the commit, which a database that is away never reached
                    self._unsaved.append((job, name, dict(args)))
                raise
            try:
                if outcome.state == "retry":  # written before this job ends, however long the database is away
                    attempts = job.attempts + (1 if outcome.counts else 0)
                    await until_stored(f"the retry of job {job.id}", lambda: self._again(
                        job, name, args, attempts=attempts, delay=outcome.delay))
                elif outcome.state == "failed":
                    raise GivenUp(outcome.error or "given up")
            finally:
                if job.lock is not None:  # its successor may run once procrastinate recorded this end
                    asyncio.get_running_loop().call_later(LOCK_HANDOVER_S, self._scheduled.set)

        run.__name__ = f"voxlane_{name}"
        return run

    async def _again(self, job: Any, name: str, args: Mapping[str, Any], *, attempts: int, delay: float) -> None:
        """The job's next attempt, as a new row written while this one still holds its lock (so it keeps its
        place behind it); nothing when a twin already waits (its queueing lock), which does the work instead."""
        nxt = Job(name, args, lock=job.lock, dedupe=job.queueing_lock, run_at=time.time() + delay,
                  priority=job.priority)
        async with self.store.connection() as conn:
            await conn.execute(_STAGE, [{**_row(nxt, job.queue), "attempts": attempts}])

    async def _wake_when_due(self, queues: list[str]) -> None:
        """Wake the lanes' workers for jobs that became runnable without a new row: a job scheduled for later whose
        time came (a retry after its backoff), a job whose lock was released (a conversation's next merge). One or
        two queries a second on this node, sooner when this node staged or ended such a job; a NOTIFY per queue
        that has one."""
        while True:
            self._scheduled.clear()  # before the queries: a job staged or ended after them sets it again
            soonest: datetime | None = None
            try:
                async with self.store.connection() as conn:
                    params = {"queues": queues}
                    for (queue,) in (await conn.execute(_RIPE, params)).all():
                        await conn.execute(_WAKE, {"queue": queue})
                    soonest = (await conn.execute(_NEXT_DUE, params)).scalar()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: look again later
                log.debug("waking the job workers failed: %s", exc)
            wait = DUE_CHECK_S
            if soonest is not None:
                wait = min(wait, max(0.0, (soonest - datetime.now(UTC)).total_seconds()))
            await wait_event(self._scheduled, wait)

    async def _sweep_stalled(self) -> None:
        """Put back the jobs of dead workers. Not in the first lease after this node could not reach the
        database: an outage stops every worker's heartbeat, and live workers need that long to write one again
        (otherwise every running job of the deployment would be taken for a dead one's)."""
        reachable_since = time.monotonic()
        while True:
            await asyncio.sleep(self.lease_s / 4)
            try:
                if time.monotonic() - reachable_since < self.lease_s:
                    async with self.store.connection() as conn:
                        await conn.execute(text("SELECT 1"))
                    continue
                await self.put_back_stalled()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: the next sweep tries again, a while after it is back
                reachable_since = time.monotonic()
                log.debug("sweeping stalled jobs failed: %s", exc)

    async def put_back_stalled(self) -> list[int]:
        """One sweep: the jobs of workers whose heartbeat is older than the lease, run again (their ids).

        Not within two leases of the database's own start. A node that saw the outage waits a lease by itself;
        one whose queries happened to fall before and after it saw nothing, and swept the moment the database
        was back: it took the jobs of live workers, whose heartbeats had had no database to go to, and a job
        put back while its attempt still ran was deleted when that attempt ended (procrastinate ends a job in
        ``todo`` as well), with the retry the attempt had asked for (deduplicated against the job itself)."""
        from sqlalchemy.exc import DBAPIError

        swept = []
        async with self.store.connection() as conn:
            params = {"stalled": self.lease_s, "settle": 2 * self.lease_s}
            for row in (await conn.execute(_STALLED, params)).all():
                try:
                    async with conn.begin_nested():
                        await conn.execute(_RETRY, {"id": row.id})
                    log.warning("job %s: its worker stopped; it runs again", row.id)
                    swept.append(int(row.id))
                except DBAPIError:  # a twin waits with its queueing lock: it does the work
                    await conn.execute(_COVERED, {"id": row.id})
            await conn.execute(_PRUNE, params)
        return swept

    # ------------------------------------------------------------ reading

    async def counts(self) -> dict[str, int]:
        async with self.store.connection() as conn:
            rows = (await conn.execute(text("SELECT task_name, count(*) FROM procrastinate_jobs"
                                            " WHERE status = 'todo' GROUP BY task_name"))).all()
        return {task: n for task, n in rows}

    async def position(self, task: str, dedupe: str) -> int | None:
        async with self.store.connection() as conn:
            row = (await conn.execute(text(
                "SELECT (SELECT count(*) FROM procrastinate_jobs o WHERE o.status = 'todo' AND o.task_name = :task"
                " AND (o.priority > j.priority OR (o.priority = j.priority AND o.id < j.id))) AS ahead"
                " FROM procrastinate_jobs j WHERE j.queueing_lock = :dedupe AND j.status = 'todo'"),
                {"task": task, "dedupe": dedupe})).first()
        return None if row is None else int(row.ahead) + 1

    async def held(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        async with self.store.connection() as conn:
            rows = (await conn.execute(text(
                "SELECT queueing_lock FROM procrastinate_jobs WHERE queueing_lock = ANY(:keys)"
                " AND status IN ('todo', 'doing', 'aborting')"), {"keys": list(keys)})).scalars()
            return set(rows)

    async def close(self) -> None:
        return None


def _quiet_ended_elsewhere(handler: Callable[..., Any] | None) -> Callable[[asyncio.AbstractEventLoop, dict], None]:
    """The loop's exception handler, but for procrastinate's failing to record the end of an attempt whose job was
    put back and ended by a newer attempt (its node stalled past the lease; the handler saw it superseded and
    wrote nothing): procrastinate finishes a job by id alone, finds it gone, and leaves the exception in a task
    nobody awaits, which asyncio logged with two tracebacks as an error. That is the fencing working: one line."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        task = context.get("future")
        name = task.get_name() if isinstance(task, asyncio.Task) else ""
        if name.startswith("process job") and exc is not None and "Job was not found" in str(exc.__cause__):
            log.info("%s: procrastinate could not record its end: a newer attempt ended the job", name[8:])
            return
        if handler is not None:
            handler(loop, context)
        else:
            loop.default_exception_handler(context)

    return handle


def _row(job: Job, queue: str) -> dict[str, Any]:
    return {"queue": queue, "task": job.task, "priority": job.priority, "lock": job.lock,
            "queueing_lock": job.dedupe, "args": json.dumps(dict(job.args)), "attempts": 0,
            "scheduled_at": None if job.run_at is None else datetime.fromtimestamp(job.run_at, UTC)}
