"""The settings of what nodes share (the database, Redis, an S3-compatible store), checked together at start: a
URL is checked without ever being repeated (it may hold a password), and settings that only mean something
together are refused apart."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from server.settings_platforms import PlatformSettings  # re-exported: a part of Settings

if TYPE_CHECKING:
    from server.settings import Settings


__all__ = ["PlatformSettings", "SettingsError", "check_shared_services"]


class SettingsError(ValueError):
    pass


def _opt(env: str, help: str, choices: tuple[str, ...] | None = None, lo: float | None = None,
         hi: float | None = None, secret: bool = False) -> dict[str, Any]:
    """A setting's metadata: its environment name, help, and the bounds it is checked against."""
    return {"env": env, "help": help, "choices": choices, "lo": lo, "hi": hi, "secret": secret}


def check_shared_services(settings: Settings) -> None:
    """Raises ``SettingsError`` naming the first setting that is wrong."""
    if settings.database_url:
        from server.storage.engine import async_url  # here: settings must not import SQLAlchemy at load

        try:
            async_url(settings.database_url)
        except ValueError as exc:  # the message names the scheme, never the URL (it may hold a password)
            raise SettingsError(f"VOXLANE_DATABASE_URL: {exc}") from None
    if settings.redis_url:
        from server.redis_client import check_url

        try:
            check_url(settings.redis_url)
        except ValueError as exc:  # the message never repeats the URL (it may hold a password)
            raise SettingsError(f"VOXLANE_REDIS_URL: {exc}") from None
    _check_s3(settings)


def _check_s3(settings: Settings) -> None:
    """The S3 settings only mean something together: a stray endpoint or key without a bucket is a mistake
    that would otherwise leave audio on local disk unnoticed."""
    named = {"VOXLANE_S3_ENDPOINT_URL": settings.s3_endpoint_url,
             "VOXLANE_S3_PUBLIC_ENDPOINT_URL": settings.s3_public_endpoint_url,
             "VOXLANE_S3_REGION": settings.s3_region, "VOXLANE_S3_PREFIX": settings.s3_prefix,
             "VOXLANE_S3_ACCESS_KEY_ID": settings.s3_access_key_id,
             "VOXLANE_S3_SECRET_ACCESS_KEY": settings.s3_secret_access_key}
    if not settings.s3_bucket:
        stray = [name for name, value in named.items() if value]
        if stray:
            raise SettingsError(f"{stray[0]} needs VOXLANE_S3_BUCKET (audio stays in the data dir without it)")
        return
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{2,254}", settings.s3_bucket):
        raise SettingsError(f"VOXLANE_S3_BUCKET={settings.s3_bucket!r}: not a bucket name")
    for name in ("VOXLANE_S3_ENDPOINT_URL", "VOXLANE_S3_PUBLIC_ENDPOINT_URL"):
        if named[name] and not str(named[name]).startswith(("http://", "https://")):
            raise SettingsError(f"{name} must start with http:// or https://")
    if bool(settings.s3_access_key_id) != bool(settings.s3_secret_access_key):
        raise SettingsError("VOXLANE_S3_ACCESS_KEY_ID and VOXLANE_S3_SECRET_ACCESS_KEY go together (or set"
                            " neither, for the AWS SDK's credential chain)")
    if settings.s3_prefix.startswith("/") or ".." in settings.s3_prefix.split("/"):
        raise SettingsError(f"VOXLANE_S3_PREFIX={settings.s3_prefix!r}: a relative key prefix, without '..'")
