"""Alembic's entry point. voxlane hands in a connection (``config.attributes["connection"]``) already inside a
transaction; without one (Alembic's own command line with ``sqlalchemy.url`` set) it opens the async engine
itself. Offline SQL scripts are not supported: a revision may convert data in Python."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from server.storage.engine import WRITE, make_engine
from server.storage.migrate import ours
from server.storage.tables import metadata


def _migrate(connection: Connection) -> None:
    # render_as_batch: SQLite alters a column by copying its table; compare_type: autogenerate sees type changes;
    # include_name: the job queue library's tables are not ours to compare.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True,
                      include_name=ours)
    with context.begin_transaction():
        context.run_migrations()


async def _migrate_url(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.execution_options(**WRITE).begin() as conn:
            await conn.run_sync(_migrate)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("voxlane migrations run against a database, not as an SQL script (drop --sql)")
_connection = context.config.attributes.get("connection")
if _connection is not None:
    _migrate(_connection)
else:
    asyncio.run(_migrate_url(context.config.get_main_option("sqlalchemy.url") or ""))
