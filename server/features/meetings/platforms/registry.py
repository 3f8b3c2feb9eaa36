"""Which platform a room's meetings are held on (a vendor's module is imported only when a room names it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.features.meetings.platforms.base import Platform
from server.features.meetings.platforms.voxlane import BuiltinPlatform

if TYPE_CHECKING:
    from server.settings import Settings


def platform_for(name: str, settings: Settings) -> Platform:
    """The platform of a room (only the one named is imported)."""
    if name == "whereby":
        from server.features.meetings.platforms.whereby import WherebyPlatform

        return WherebyPlatform(settings.whereby_api_url, settings.whereby_api_key, timeout=settings.platform_timeout)
    if name == "daily":
        from server.features.meetings.platforms.daily import DailyPlatform

        return DailyPlatform(settings.daily_api_url, settings.daily_api_key, timeout=settings.platform_timeout)
    return BuiltinPlatform()
