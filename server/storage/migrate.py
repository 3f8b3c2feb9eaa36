"""Bring a database to the newest schema: Alembic driven from code, so no alembic.ini ships or is needed.

``SqlStore.open()`` runs :func:`upgrade_engine` at every start; ``voxlane db upgrade`` calls :func:`upgrade_sync`.
Migrating is idempotent, and concurrent starts are serialized (SQLite: the write lock; PostgreSQL: an advisory lock).
"""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.storage.engine import WRITE, make_engine

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
# Databases made by the first SQLite store (its CREATE TABLE script, before migrations existed) hold this revision.
PRE_ALEMBIC_REVISION = "0001"
# Any constant shared by every voxlane process: pg_advisory_xact_lock key held while migrating.
_PG_LOCK_KEY = 0x766F786C  # "voxl"


LIBRARY_PREFIXES = ("procrastinate_",)
"""Objects the job queue library owns in the same database (revision 0004): not voxlane's tables."""


def ours(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Alembic's ``include_name`` hook: schema comparisons leave the queue library's objects out."""
    return not (type_ in ("table", "index") and name is not None and name.startswith(LIBRARY_PREFIXES))


def alembic_config(connection: Connection | None = None) -> Config:
    """A Config for Alembic's commands; with ``connection`` env.py migrates through it, in its transaction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade_engine(engine)
    finally:
        await engine.dispose()


def upgrade_sync(url: str) -> None:
    """For the command line (no event loop running)."""
    asyncio.run(upgrade(url))


async def upgrade_engine(engine: AsyncEngine) -> None:
    async with engine.execution_options(**WRITE).begin() as conn:
        await conn.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables and MigrationContext.configure(connection).get_current_revision() == head_revision():
        return  # the usual start: nothing to do, and no need to load every revision script
    config = alembic_config(connection)
    if "transcripts" in tables and "alembic_version" not in tables:
        command.stamp(config, PRE_ALEMBIC_REVISION)
    command.upgrade(config, "head")
