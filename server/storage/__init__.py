"""One storage interface with an embedded backend (SQLite + local files) and a networked one."""

from server.storage.base import Store, TranscriptNotFound, new_id, utcnow

__all__ = ["Store", "TranscriptNotFound", "new_id", "utcnow"]
