"""Audio files behind one interface: a local directory by default, an S3-compatible bucket across nodes."""

from __future__ import annotations

from server.settings import Settings
from server.storage.audio.base import AudioStore, StorageProbe, StoredObject
from server.storage.audio.local import LocalAudioStore


def open_audio_store(settings: Settings) -> AudioStore:
    """The store ``VOXLANE_S3_BUCKET`` names, else the data dir's ``audio`` folder. Not opened yet: ``await
    store.open()`` connects."""
    if settings.s3_bucket:
        from server.storage.audio.s3 import S3AudioStore  # here: aiobotocore loads only where S3 is used

        return S3AudioStore(settings)
    return LocalAudioStore(settings.data_path)


def describe_audio_store(settings: Settings) -> str:
    """The store :func:`open_audio_store` opens, in words an operator recognises (its bucket, or its folder)."""
    if settings.s3_bucket:
        prefix = settings.s3_prefix.strip("/")
        return f"the bucket s3://{settings.s3_bucket}/{prefix + '/' if prefix else ''}"
    return f"the local directory {settings.data_path / 'audio'}"


__all__ = ["AudioStore", "LocalAudioStore", "StorageProbe", "StoredObject", "describe_audio_store", "open_audio_store"]
