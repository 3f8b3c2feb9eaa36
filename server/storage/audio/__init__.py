"""Audio files behind one interface: a local directory by default, an S3-compatible bucket across nodes."""

from __future__ import annotations

from server.settings import Settings
from server.storage.audio.base import AudioStore, StorageProbe
from server.storage.audio.local import LocalAudioStore


def open_audio_store(settings: Settings) -> AudioStore:
    """The store ``VOXLANE_S3_BUCKET`` names, else the data dir's ``audio`` folder. Not opened yet: ``await
    store.open()`` connects."""
    if settings.s3_bucket:
        from server.storage.audio.s3 import S3AudioStore  # here: aiobotocore loads only where S3 is used

        return S3AudioStore(settings)
    return LocalAudioStore(settings.data_path)


__all__ = ["AudioStore", "LocalAudioStore", "StorageProbe", "open_audio_store"]
