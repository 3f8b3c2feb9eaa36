"""Video platforms a room's meetings are held on: one module per vendor behind :class:`Platform`."""

from server.features.meetings.platforms.base import (
    PLATFORMS,
    Platform,
    PlatformError,
    PlatformRoom,
    Recording,
    RoomRequest,
)
from server.features.meetings.platforms.registry import platform_for

__all__ = ["PLATFORMS", "Platform", "PlatformError", "PlatformRoom", "Recording", "RoomRequest", "platform_for"]
