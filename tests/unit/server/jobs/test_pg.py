"""The PostgreSQL queue's own rule beside the queue contract: whose jobs a sweep takes back, on a database of the
test's own that has just started (as one does after an outage)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from server.jobs.pg import PgQueue
from server.services import open_job_queue
from server.settings import Settings
from server.storage import SqlStore
from tests.cluster_support import PrivatePostgres

LEASE_S = 3.0


async def _uptime(store: SqlStore) -> float:
    async with store.connection() as conn:
        return float((await conn.execute(text(
            "SELECT extract(epoch FROM now() - pg_postmaster_start_time())"))).scalar())


@contextlib.asynccontextmanager
async def private_queue(tmp_path: Path) -> AsyncIterator[tuple[PrivatePostgres, SqlStore, PgQueue]]:
    """The queue on a PostgreSQL of the test's own, just started: a test may stop and start it."""
    pg = PrivatePostgres()
    pg.init()
    pg.start()
    store = SqlStore(pg.url)
    try:
        await store.open()
        queue = open_job_queue(Settings(data_dir=str(tmp_path), database_url=pg.url, job_lease_seconds=LEASE_S),
                               store)
        assert isinstance(queue, PgQueue)
        yield pg, store, queue
    finally:
        await store.close()
        pg.remove()


async def test_a_database_just_started_leaves_running_jobs_to_their_workers(tmp_path: Path) -> None:
    async with private_queue(tmp_path) as (pg, store, queue):
        async with store.connection() as conn:  # a worker that wrote its last heartbeat before the outage
            worker = (await conn.execute(text("INSERT INTO procrastinate_workers (last_heartbeat)"
                                              " VALUES (now() - interval '1 minute') RETURNING id"))).scalar()
            await conn.execute(text("INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id)"
                                    " VALUES ('audio', 'transcribe', 'doing', :w)"), {"w": worker})
        assert await _uptime(store) < 2 * LEASE_S, "the database took too long to open for this test to say anything"
        assert await queue.put_back_stalled() == [], "no heartbeat could be written while the database was down"
        await asyncio.sleep(2 * LEASE_S - await _uptime(store) + 0.2)
        assert len(await queue.put_back_stalled()) == 1, "two leases on, a worker still silent is dead"
        async with store.connection() as conn:
            left = (await conn.execute(text("SELECT count(*) FROM procrastinate_workers"))).scalar()
        assert left == 0, "the dead worker's row goes with its jobs, by the sweep's rule, not procrastinate's"


async def test_a_standby_just_promoted_leaves_running_jobs_to_their_workers(tmp_path: Path) -> None:
    """A standby has been up since long before its promotion, so its start time says nothing: the heartbeats it
    holds are the old primary's last, and the sweep settles from the last commit it replayed."""
    primary = PrivatePostgres()
    primary.init()
    primary.start()
    standby = primary.standby()
    store = SqlStore(primary.url)
    try:
        await store.open()
        await store.close()
        await asyncio.sleep(2 * LEASE_S)  # the standby has been up for longer than the sweep's settling
        primary.sql("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 minute')",
                    "INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id)"
                    " SELECT 'audio', 'transcribe', 'doing', max(id) FROM procrastinate_workers")
        primary.stop()
        standby.promote()
        store = SqlStore(standby.url)
        await store.open()
        queue = open_job_queue(Settings(data_dir=str(tmp_path), database_url=standby.url,
                                        job_lease_seconds=LEASE_S), store)
        assert isinstance(queue, PgQueue)
        assert await _uptime(store) > 2 * LEASE_S, "the standby's own start is no guard here"
        assert await queue.put_back_stalled() == [], "no heartbeat could be written during the failover"
        await asyncio.sleep(2 * LEASE_S + 0.2)
        assert len(await queue.put_back_stalled()) == 1, "two leases on, a worker still silent is dead"
    finally:
        await store.close()
        standby.remove()
        primary.remove()


@pytest.mark.parametrize("cancels", [1, 2])
async def test_an_attempt_stopped_with_the_database_away_runs_again_once_it_is_back(tmp_path: Path,
                                                                                  cancels: int) -> None:
    """A lane's worker stops when it loses the database and cancels its attempts; the next attempt cannot be
    written then. It is kept and queued before the lane takes new work, not left to the reconciler (procrastinate
    may have marked the job ``aborted``, which nothing sweeps). Also when the attempt is cancelled a second time
    while it tries to write its next one (the lane's worker stopping on a loaded machine)."""
    from procrastinate.jobs import Job as ProcrastinateJob

    from server.jobs.queue import Claimed, Job

    async with private_queue(tmp_path) as (pg, store, queue):
        await queue.stage([Job("transcribe", {"chunk": 7}, lock="conversation-1", dedupe="chunk-7")])
        async with store.connection() as conn:
            row = (await conn.execute(text("UPDATE procrastinate_jobs SET status = 'doing', attempts = 1"
                                           " RETURNING id, queue_name, lock, queueing_lock"))).one()
        job = ProcrastinateJob(id=row.id, queue=row.queue_name, lock=row.lock, queueing_lock=row.queueing_lock,
                               task_name="transcribe", task_kwargs={"chunk": 7}, attempts=1)
        started = asyncio.Event()

        async def dispatch(claimed: Claimed) -> None:
            assert claimed.attempts == 2
            started.set()
            await asyncio.Event().wait()

        attempt = asyncio.create_task(queue._runner("transcribe", dispatch)(SimpleNamespace(job=job), chunk=7))
        await started.wait()
        pg.stop()  # the database goes away, and the lane's worker stops its attempts
        attempt.cancel()
        for _ in range(cancels - 1):
            await asyncio.sleep(0)  # the attempt is in its next attempt's write
            attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        assert [(j.id, name, args) for j, name, args in queue._unsaved] == [(row.id, "transcribe", {"chunk": 7})]
        pg.start()
        async with store.connection() as conn:  # what procrastinate wrote of the attempt once it could
            await conn.execute(text("UPDATE procrastinate_jobs SET status = 'aborted' WHERE id = :id"),
                               {"id": row.id})
        await queue._put_back_unsaved()
        assert queue._unsaved == []
        async with store.connection() as conn:
            waiting = (await conn.execute(text(
                "SELECT task_name, args, attempts, lock, queueing_lock FROM procrastinate_jobs"
                " WHERE status = 'todo'"))).all()
        assert [tuple(w) for w in waiting] == [("transcribe", {"chunk": 7}, 1, "conversation-1", "chunk-7")], \
            "one next attempt, the stopped one not counted, in the conversation's order"
        await queue._put_back_unsaved()  # a second lane draining the same list: nothing twice
        async with store.connection() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM procrastinate_jobs"
                                            " WHERE status = 'todo'"))).scalar() == 1
