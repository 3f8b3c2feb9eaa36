"""The meeting settings: how long a meeting's join token lasts, and the external video platforms (Whereby,
Daily) whose REST APIs create a room's meetings."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.settings.base import setting

__all__ = ["PlatformSettings"]


@dataclass
class PlatformSettings:
    meeting_token_ttl: int = field(default=600, metadata=setting(
        "VOXLANE_MEETING_TOKEN_TTL", "seconds a meeting's join token may be used to connect (a connection it"
        " opened stays open)", lo=30, hi=86400))
    whereby_api_key: str | None = field(default=None, metadata=setting(
        "VOXLANE_WHEREBY_API_KEY", "Whereby REST API key: rooms with platform 'whereby' create their meetings"
        " there", secret=True))
    whereby_api_url: str | None = field(default=None, metadata=setting(
        "VOXLANE_WHEREBY_API_URL", "Whereby REST API base (default https://api.whereby.dev/v1)"))
    daily_api_key: str | None = field(default=None, metadata=setting(
        "VOXLANE_DAILY_API_KEY", "Daily REST API key: rooms with platform 'daily' create their meetings there",
        secret=True))
    daily_api_url: str | None = field(default=None, metadata=setting(
        "VOXLANE_DAILY_API_URL", "Daily REST API base (default https://api.daily.co/v1)"))
    platform_timeout: float = field(default=10.0, metadata=setting(
        "VOXLANE_PLATFORM_TIMEOUT", "seconds a video platform's REST API has to answer", lo=0.5, hi=120))
