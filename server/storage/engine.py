"""Database URLs and the async engine: the only place that knows which driver and connection settings each
database gets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import URL, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

URL_FORMS = "sqlite:/path/file.db, sqlite:///relative.db, sqlite:////absolute.db or postgresql://user@host/db"
# Seconds a SQLite connection waits for another connection's write lock (another engine or process on the file):
# the driver's connect timeout, i.e. SQLite's busy handler.
SQLITE_BUSY_TIMEOUT_S = 30.0
# Execution option for write transactions: SQLite then takes the write lock at BEGIN (see _sqlite_events).
WRITE = {"voxlane_write": True}
STATEMENT_TIMEOUT_S = 120
"""PostgreSQL ends a statement that runs longer (and the client gives up on it a little later): a connection to a
database that failed over, or a lock held by a stalled node, fails the one request or job instead of holding its
connection for good. Every statement voxlane sends takes milliseconds; a lock wait is the long one."""
IDLE_IN_TRANSACTION_S = 300
"""A session that sits in an open transaction this long (a node stalled mid-transaction) is ended by the server,
and its row locks go with it."""
_SERVER_SETTINGS = {"statement_timeout": str(STATEMENT_TIMEOUT_S * 1000),
                    "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_S * 1000)}
LIBPQ_SESSION = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                 "options": " ".join(f"-c {name}={value}" for name, value in _SERVER_SETTINGS.items())}
"""The job queue's libpq connections: the same server timeouts, and TCP keepalives (its LISTEN connection sits
idle, so a peer gone without a FIN, a partition or a failed-over host, is noticed within about 25 s instead of the
kernel's two hours). Passed beside the URL: libpq reads no space in a URL's ``options``."""


def default_url(data_path: Path) -> str:
    """The one-slash form: the path is taken as it is (no URL parsing, so any character in it is fine)."""
    return f"sqlite:{(data_path / 'voxlane.db').as_posix()}"


def async_url(url: str) -> URL:
    """``url`` with its async driver. ``sqlite:/path`` (one slash, the first documented form) names /path;
    the ``sqlite://`` forms follow SQLAlchemy (three slashes: relative, four: absolute). Raises ``ValueError``."""
    if url.startswith("sqlite:") and not url.startswith("sqlite://"):
        path = url[len("sqlite:"):]
        if not path:
            raise ValueError("sqlite: needs a file path")
        return URL.create("sqlite+aiosqlite", database=path)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # a bad port is a ValueError; neither message may echo the URL
        raise ValueError(f"not a database URL ({URL_FORMS})") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "aiosqlite"):
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("an in-memory SQLite database would vanish with its connection: name a file")
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        if "sslmode" in parsed.query:  # libpq's name, as pasted from a provider; asyncpg calls it ssl
            query = dict(parsed.query)
            query["ssl"] = query.pop("sslmode")
            parsed = parsed.set(query=query)
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r} ({URL_FORMS})")


def libpq_dsn(url: str) -> str:
    """A PostgreSQL URL as libpq (psycopg) reads it, for the job queue library's own connections: the driver name
    dropped and asyncpg's ``ssl`` given back its libpq name."""
    target = async_url(url)
    if target.get_backend_name() != "postgresql":
        raise ValueError("not a PostgreSQL URL")
    query = dict(target.query)
    if "ssl" in query:
        query["sslmode"] = query.pop("ssl")
    return target.set(drivername="postgresql", query=query).render_as_string(hide_password=False)


def make_engine(url: str) -> AsyncEngine:
    target = async_url(url)
    if target.get_backend_name() != "sqlite":
        # asyncpg: the server's timeouts on every session, and the client's own bound on a statement whose
        # answer never comes (the server is gone: no timeout of its own can fire then)
        return create_async_engine(target, pool_pre_ping=True, connect_args={
            "server_settings": _SERVER_SETTINGS, "command_timeout": STATEMENT_TIMEOUT_S + 10})
    Path(target.database or "").parent.mkdir(parents=True, exist_ok=True)
    # One connection per engine: SQLite has one writer anyway, and coroutines queueing here for the
    # connection never meet "database is locked"; other engines on the file wait in the busy handler.
    engine = create_async_engine(target, poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0,
                                 pool_timeout=120, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    _sqlite_events(engine)
    return engine


def _sqlite_events(engine: AsyncEngine) -> None:
    """Pragmas on every connection, and BEGIN emitted by us (the sqlite3 driver's own transaction handling
    skips BEGIN before SELECT and DDL). Writes BEGIN IMMEDIATE: a transaction that reads and then writes would
    otherwise fail with SQLITE_BUSY_SNAPSHOT, without waiting, when another connection wrote in between."""

    @event.listens_for(engine.sync_engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
        # Unicode-aware lower(), so search (lower() LIKE lower()) ignores case beyond ASCII as PostgreSQL does.
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("voxlane_write") else "BEGIN")

    @event.listens_for(engine.sync_engine, "handle_error")
    def cancelled(context: Any) -> None:
        """A task cancelled while its statement runs (a client gone, a server stopping) keeps the connection.

        SQLAlchemy takes the cancellation for a lost connection and discards it, and aiosqlite's forced close
        stops its thread without closing the SQLite handle: an open write transaction kept the file's write lock
        until the handle was collected, so every writer waited out the busy timeout and then failed ("database
        is locked"; a job queue test's second runner sat 30 s on it). The statement still finishes on the
        connection's thread, and the rollback that follows is queued behind it, so the connection is sound."""
        if isinstance(context.original_exception, asyncio.CancelledError):
            context.is_disconnect = False


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value
