"""The settings of what nodes share (the database, Redis, an S3-compatible store), checked together at start: a
URL is checked without ever being repeated (it may hold a password), and settings that only mean something
together are refused apart."""

from __future__ import annotations

import re

from server.settings.base import SettingsError, check_http_url, reported_as, setting, settings_group

__all__ = ["StorageSettings", "check_shared_services"]


@settings_group
class StorageSettings:
    database_url: str | None = setting(None, "sqlite:/path/file.db or postgresql://user:password@host/db (default:"
        " SQLite file in the data dir); the schema is migrated at start", secret=True)
    redis_url: str | None = setting(None, "redis://host:6379/0 (or rediss://, unix:///path.sock): live messages reach"
        " the subscribers of every node through Redis Streams (default: in-process, one node)", secret=True)
    s3_bucket: str | None = setting(None, "S3-compatible bucket for every audio file (recordings, uploads, kiosk"
        " chunks), shared by the nodes; kiosks PUT chunks straight to it (default: files under the data dir)")
    s3_endpoint_url: str | None = setting(None, "the store's S3 API endpoint as this server reaches it,"
        " http(s)://host[:port] (MinIO, Ceph, R2, ...; default: AWS S3 for the region)")
    s3_public_endpoint_url: str | None = setting(None, "the endpoint written into presigned upload URLs handed to"
        " clients, when they reach the store at another address than this server does (default:"
        " VOXLANE_S3_ENDPOINT_URL)")
    s3_region: str | None = setting(None, "the bucket's region (default: the AWS SDK's configuration, else us-east-1)")
    s3_prefix: str = setting("", "key prefix of voxlane's objects in the bucket, e.g. voxlane/ (default: none)")
    s3_access_key_id: str | None = setting(None, "access key id for the bucket (default: the AWS SDK's usual credential"
        " chain: AWS_* variables, shared config files, instance or task roles)")
    s3_secret_access_key: str | None = setting(None, "secret access key for VOXLANE_S3_ACCESS_KEY_ID", secret=True)


def check_shared_services(settings: StorageSettings) -> None:
    """Raises ``SettingsError`` naming the first setting that is wrong."""
    if settings.database_url:
        from server.storage.engine import async_url  # here: settings must not import SQLAlchemy at load

        with reported_as("VOXLANE_DATABASE_URL"):  # the message names the scheme, not the URL (it may hold a password)
            async_url(settings.database_url)
    if settings.redis_url:
        from server.redis_client import check_url

        with reported_as("VOXLANE_REDIS_URL"):  # the message never repeats the URL (it may hold a password)
            check_url(settings.redis_url)
    _check_s3(settings)


def _check_s3(settings: StorageSettings) -> None:
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
        check_http_url(name, named[name])
    if bool(settings.s3_access_key_id) != bool(settings.s3_secret_access_key):
        raise SettingsError("VOXLANE_S3_ACCESS_KEY_ID and VOXLANE_S3_SECRET_ACCESS_KEY go together (or set"
                            " neither, for the AWS SDK's credential chain)")
    if settings.s3_prefix.startswith("/") or ".." in settings.s3_prefix.split("/"):
        raise SettingsError(f"VOXLANE_S3_PREFIX={settings.s3_prefix!r}: a relative key prefix, without '..'")
