"""Telling a full disk apart from other storage failures.

A full disk (or a user's quota, or a file-size limit) is an operating condition, not a bug: the live
path answers it with a ``STORAGE_FULL`` error and a clean end of the stream, where any other failure
still surfaces as one. The same condition reaches us as an ``OSError`` from file writes and as an
``sqlite3.OperationalError`` ("database or disk is full") from the embedded store.
"""

from __future__ import annotations

import errno
import sqlite3

from protocol import ErrorCode, ProtocolError

STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SQLITE_FULL = getattr(sqlite3, "SQLITE_FULL", 13)


def is_storage_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says there is no room left to store data."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in STORAGE_FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.OperationalError) and (
                getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return False


def storage_full_error(what: str, details: dict | None = None) -> ProtocolError:
    """The one wire error for a full disk: not recoverable by the client, which must wait for an operator."""
    return ProtocolError(ErrorCode.STORAGE_FULL, f"the server's storage is full: {what}", details or {},
                         recoverable=False)
