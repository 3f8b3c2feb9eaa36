"""Databases for tests, on both backends (``pytest_plugins = ("tests.db_support",)``).

``database_url``: a migrated, empty database, once on SQLite and once on PostgreSQL (test ids ``[sqlite]`` and
``[postgresql]``): pass it as ``VOXLANE_DATABASE_URL`` or to ``SqlStore``. ``empty_database_url``: the same
without any table (for migration tests). PostgreSQL: one throwaway database ``voxlane_test_<hex>`` per session,
emptied (TRUNCATE) before each test that takes it and dropped at the end; it is created through
``VOXLANE_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``: a user allowed to
CREATE DATABASE). A missing PostgreSQL fails the tests, it does not skip them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import make_url, text

from server.storage import SqlStore
from server.storage.engine import make_engine
from server.storage.migrate import upgrade
from server.storage.tables import metadata

BACKENDS = ("sqlite", "postgresql")
PG_ADMIN_URL = os.environ.get("VOXLANE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class PgDatabases:
    """Creates throwaway PostgreSQL databases next to the one ``admin_url`` names, and drops them all."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def _dsn(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    async def _admin(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(self._dsn(make_url(self.admin_url).database or "postgres"))
        except (OSError, asyncpg.PostgresError) as exc:
            pytest.fail(f"PostgreSQL for the tests is not reachable at VOXLANE_TEST_PG_URL ({exc})")

    async def create(self) -> str:
        """A new empty database; its URL."""
        name = f"voxlane_test_{secrets.token_hex(6)}"
        conn = await self._admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            # A throwaway database need not wait for the disk at each commit: tests run faster.
            await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit TO off')
        finally:
            await conn.close()
        self.created.append(name)
        return self._dsn(name)

    async def drop_all(self) -> None:
        if not self.created:
            return
        conn = await self._admin()
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.created.clear()


async def truncate_all(url: str) -> None:
    """Empty every table of a migrated PostgreSQL database, voxlane's and the job queue library's (the schema and
    its revision stay)."""
    conn = await asyncpg.connect(url)
    try:
        library = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate%'")]
        await conn.execute(f"TRUNCATE {', '.join([t.name for t in metadata.sorted_tables] + library)} CASCADE")
    finally:
        await conn.close()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.as_posix()}"


@contextlib.asynccontextmanager
async def opened_store(url: str) -> AsyncIterator[SqlStore]:
    """A store on ``url``, open (migrated) for the block: a node's own, beside another node's on one database."""
    store = SqlStore(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def fetch_rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of a query on either database (``:name`` parameters), for tests that look at what a killed server
    left behind without going through the server."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
async def pg_databases() -> AsyncIterator[PgDatabases]:
    databases = PgDatabases(PG_ADMIN_URL)
    try:
        yield databases
    finally:
        await databases.drop_all()


@pytest.fixture(scope="session")
async def migrated_pg_url(pg_databases: PgDatabases) -> str:
    url = await pg_databases.create()
    await upgrade(url)
    return url


@pytest.fixture(scope="session")
async def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrating takes longer than copying: each test gets a copy of this file."""
    path = tmp_path_factory.mktemp("db-template") / "voxlane.db"
    await upgrade(sqlite_url(path))
    return path


async def fresh_database_url(backend: str, tmp_path: Path, pg_databases: PgDatabases) -> str:
    """A new database without any table: a file under ``tmp_path``, or a new PostgreSQL database."""
    if backend == "sqlite":
        return sqlite_url(tmp_path / f"fresh-{secrets.token_hex(4)}.db")
    return await pg_databases.create()


@pytest.fixture
async def clean_pg_url(migrated_pg_url: str) -> str:
    await truncate_all(migrated_pg_url)
    return migrated_pg_url


@pytest.fixture
async def fresh_pg_url(pg_databases: PgDatabases) -> str:
    return await pg_databases.create()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


# Sync fixtures that pick their async dependency by backend: a SQLite-only run (-k sqlite) never needs PostgreSQL.
@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "postgresql":
        return request.getfixturevalue("clean_pg_url")
    template: Path = request.getfixturevalue("migrated_sqlite_template")
    path = tmp_path / "voxlane.db"
    source, target = sqlite3.connect(template), sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return sqlite_url(path)


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "postgresql":
        return request.getfixturevalue("fresh_pg_url")
    return sqlite_url(tmp_path / "empty.db")
