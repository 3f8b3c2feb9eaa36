"""The SQLite engine under cancellation: a task cancelled inside a write transaction leaves the file writable."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from sqlalchemy import text

from server.storage.sql import SqlStore


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
