"""The built-in platform: voxlane's own browser room (``/room``)."""

from __future__ import annotations

from typing import Any

from server.features.meetings.platforms.base import PlatformRoom, Recording, RoomRequest


class BuiltinPlatform:
    """voxlane's own browser room: the room page's URLs, nothing to create or delete elsewhere."""

    name = "voxlane"

    async def create_room(self, request: RoomRequest) -> PlatformRoom:
        urls = request.builtin_urls
        return PlatformRoom(room_url=urls["room_url"] or "", host_room_url=urls["host_room_url"] or "",
                            viewer_room_url=urls.get("viewer_room_url"))

    async def delete_room(self, external_id: str) -> None:
        return None

    async def recordings(self, external_id: str, meta: dict[str, Any]) -> list[Recording]:
        return []  # each participant's stream is recorded as it arrives
