"""The engines: SQLite under cancellation (a task cancelled inside a write transaction leaves the file writable),
and PostgreSQL's sessions bounded (statement and idle-in-transaction timeouts on the store's pool and the job
queue's, keepalives on the queue's)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from sqlalchemy import text

from server.storage.engine import LIBPQ_SESSION, libpq_dsn
from server.storage.sql import SqlStore

pytest_plugins = ("tests.db_support",)


async def test_a_task_cancelled_mid_transaction_leaves_no_write_lock_behind(tmp_path: Path) -> None:
    """Without the engine's cancellation handler the leaked handle of one such task made the next writer wait
    out SQLite's 30 s busy timeout and fail; here it came within a few dozen cancellations."""
    store = SqlStore(f"sqlite:///{tmp_path / 'x.db'}")
    await store.open()
    rng = random.Random(7)
    try:
        async def write_forever() -> None:
            while True:
                async with store.connection() as conn:
                    await conn.execute(text("INSERT INTO jobs (task, args, status, attempts, priority, run_at, "
                                            "created_at) VALUES ('t', '{}', 'queued', 0, 0, 0, 0)"))
                    await conn.execute(text("SELECT count(*) FROM jobs"))

        for _ in range(300):
            task = asyncio.create_task(write_forever())
            await asyncio.sleep(rng.random() * 0.003)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            async with asyncio.timeout(10):
                async with store.connection() as conn:
                    await conn.execute(text("SELECT 1"))
    finally:
        await store.close()


async def test_postgresql_sessions_are_bounded(clean_pg_url: str) -> None:
    """A stalled node or a failed-over database fails one statement instead of holding a connection for good."""
    import psycopg

    store = SqlStore(clean_pg_url)
    await store.open()
    try:
        async with store.connection() as conn:
            assert (await conn.execute(text("SHOW statement_timeout"))).scalar() == "2min"
            assert (await conn.execute(text("SHOW idle_in_transaction_session_timeout"))).scalar() == "5min"
    finally:
        await store.close()
    async with await psycopg.AsyncConnection.connect(libpq_dsn(clean_pg_url), **LIBPQ_SESSION) as conn:
        cur = await conn.execute("SHOW statement_timeout")
        assert (await cur.fetchone()) == ("2min",)
        assert conn.info.get_parameters()["keepalives_idle"] == "10"
