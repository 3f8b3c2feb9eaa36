"""Telling a database that is away from one that refused a statement, and riding out the first.

A networked database can be down for a while (a restart, a failover). Requests that need it are answered
``503`` with ``Retry-After`` (server.http.errors), and the live pipeline, whose audio keeps being recorded, waits
for it to store what it must store (finals, a transcript's completion) instead of dropping it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger("voxlane.storage")
T = TypeVar("T")
OUTAGE_S = 600.0
"""How long the live pipeline waits for the database to come back before it gives up what it wanted to store."""
RETRY_AFTER_S = 5


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the database cannot be reached now, as opposed to a
    statement it refused."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, asyncpg.PostgresConnectionError | asyncpg.exceptions.CannotConnectNowError
                      | asyncpg.exceptions.AdminShutdownError | asyncpg.exceptions.CrashShutdownError
                      | asyncpg.exceptions.ConnectionDoesNotExistError | asyncpg.InterfaceError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, OperationalError | InterfaceError) and "postgres" in type(current.orig).__module__:
            return True
        if isinstance(current, ConnectionError | TimeoutError):  # refused, reset, or the pool's connect timed out
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


async def until_stored(what: str, store: Callable[[], Awaitable[T]], *, within: float = OUTAGE_S) -> T:
    """``store()``, tried again while the database is away (backing off to 5 s), for at most ``within`` seconds."""
    deadline = time.monotonic() + within
    delay = 0.2
    warned = False
    while True:
        try:
            return await store()
        except Exception as exc:
            if not database_unavailable(exc) or time.monotonic() + delay > deadline:
                raise
            if not warned:
                warned = True
                log.warning("the database is not reachable; %s waits for it (%s)", what, type(exc).__name__)
        await asyncio.sleep(delay)
        delay = min(5.0, delay * 2)
