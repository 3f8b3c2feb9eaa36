"""One storage interface on SQLAlchemy Core: SQLite (a file in the data dir, the default) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from server.storage.base import StaleFence, Store, TranscriptNotFound, new_id, utcnow
from server.storage.engine import default_url
from server.storage.sql import SqlStore


def open_store(url: str | None, data_path: Path) -> Store:
    """The store for ``VOXLANE_DATABASE_URL`` (None: SQLite file ``data_path / "voxlane.db"``). Not opened yet:
    ``await store.open()`` connects and migrates the schema to the newest revision."""
    return SqlStore(url or default_url(data_path))


__all__ = ["SqlStore", "StaleFence", "Store", "TranscriptNotFound", "new_id", "open_store", "utcnow"]
