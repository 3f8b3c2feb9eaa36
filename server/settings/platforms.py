"""The meeting settings: how long a meeting's join token lasts, and the external video platforms (Whereby,
Daily) whose REST APIs create a room's meetings."""

from __future__ import annotations

from server.settings.base import setting, settings_group

__all__ = ["PlatformSettings"]


@settings_group
class PlatformSettings:
    meeting_token_ttl: int = setting(600, "seconds a meeting's join token may be used to connect (a connection"
        " it opened stays open)", lo=30, hi=86400)
    whereby_api_key: str | None = setting(None, "Whereby REST API key: rooms with platform 'whereby'"
        " create their meetings there", secret=True)
    whereby_api_url: str | None = setting(None, "Whereby REST API base (default https://api.whereby.dev/v1)")
    daily_api_key: str | None = setting(None, "Daily REST API key: rooms with platform 'daily'"
        " create their meetings there", secret=True)
    daily_api_url: str | None = setting(None, "Daily REST API base (default https://api.daily.co/v1)")
    platform_timeout: float = setting(10.0, "seconds a video platform's REST API has to answer", lo=0.5, hi=120)
