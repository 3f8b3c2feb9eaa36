"""The storage interface every backend implements.

Rows travel as plain dicts shaped like the REST resources, so routes and the
hub never see a backend's types. Words and other nested data are JSON.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

TRANSCRIPT_STATUSES = ("created", "live", "processing", "completed", "failed")
MUTABLE_FIELDS = ("name", "status", "source_language", "duration", "participants", "summary", "meta")


class TranscriptNotFound(LookupError):
    pass


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create_transcript(self, *, name: str | None = None, source_language: str | None = None,
                                owner: str | None = None, status: str = "created") -> dict[str, Any]: ...

    async def get_transcript(self, transcript_id: str) -> dict[str, Any] | None: ...

    async def list_transcripts(self, *, page: int = 1, size: int = 50, status: str | None = None,
                               search: str | None = None, owner: str | None = None
                               ) -> tuple[list[dict[str, Any]], int]: ...

    async def update_transcript(self, transcript_id: str, **fields: Any) -> dict[str, Any] | None: ...

    async def delete_transcript(self, transcript_id: str) -> bool: ...

    async def save_segment(self, transcript_id: str, segment: dict[str, Any]) -> None:
        """Insert or replace one final segment (keyed by its id)."""

    async def get_segments(self, transcript_id: str) -> list[dict[str, Any]]:
        """Final segments in time order."""
