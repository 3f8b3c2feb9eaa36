"""The platform interface: create a meeting's room on the platform, delete it when the meeting ends.

``voxlane`` (the built-in browser room) needs no vendor; ``whereby`` and ``daily`` call their REST APIs with the
API key of their setting. A platform that is not configured refuses to create rooms with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

PLATFORMS = ("voxlane", "whereby", "daily")


class PlatformError(Exception):
    """The platform refused or could not be reached; ``status``: what to answer the API caller."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class RoomRequest:
    """What a meeting asks of its platform."""

    meeting_id: str
    room_name: str
    start_date: str  # ISO, UTC
    end_date: str
    record: bool  # the room's recording setting: cloud recording on the platform
    locked: bool
    builtin_urls: dict[str, str | None]  # the voxlane room page's URLs (participant, host, viewer)


@dataclass(frozen=True)
class PlatformRoom:
    """The room a platform made: its id there (to delete it) and the URLs people open."""

    room_url: str
    host_room_url: str
    viewer_room_url: str | None
    external_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recording:
    """A finished cloud recording of a platform room, and a URL it can be fetched from now."""

    id: str
    url: str


class Platform(Protocol):
    name: str

    async def create_room(self, request: RoomRequest) -> PlatformRoom: ...

    async def delete_room(self, external_id: str) -> None: ...

    async def recordings(self, external_id: str, meta: dict[str, Any]) -> list[Recording]:
        """The room's finished recordings (empty while the platform is still processing them)."""
