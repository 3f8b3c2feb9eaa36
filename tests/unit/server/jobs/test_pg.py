"""The PostgreSQL queue's own rule beside the queue contract: whose jobs a sweep takes back, on a database of the
test's own that has just started (as one does after an outage)."""

from __future__ import annotations

import asyncio
from pathlib import Path

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


async def test_a_database_just_started_leaves_running_jobs_to_their_workers(tmp_path: Path) -> None:
    pg = PrivatePostgres()
    pg.init()
    pg.start()
    store = SqlStore(pg.url)
    try:
        await store.open()
        queue = open_job_queue(Settings(data_dir=str(tmp_path), database_url=pg.url, job_lease_seconds=LEASE_S),
                               store)
        assert isinstance(queue, PgQueue)
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
    finally:
        await store.close()
        pg.remove()


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
