"""The default audio store: files under ``<data dir>/audio``, laid out as they always were.

A key is a path below that directory, so data written before the store existed is read as it is; so is an
absolute path that an older row holds. Working files are the stored files themselves: a live recording is
synced in place while it grows, exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from server.storage.audio.base import StorageProbe, StoredObject
from server.storage.audio.incoming import claimed

log = logging.getLogger("voxlane.audio")
PIECE = 1 << 16


class LocalAudioStore:
    kind = "local"

    def __init__(self, data_path: Path) -> None:
        self.root = data_path / "audio"

    def path(self, key: str) -> Path:
        """The file of ``key``; an absolute path (a row from before keys) is taken as it is."""
        if os.path.isabs(key):
            return Path(key)
        if not key or key.startswith(("/", "\\")) or ".." in key.replace("\\", "/").split("/"):
            raise ValueError(f"not an audio key: {key!r}")
        return self.root / key

    async def open(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    async def recover(self) -> int:
        """Files are written in place, so nothing waits to be published; bodies that were still arriving when the
        process died were never acknowledged, and go."""
        removed = await asyncio.to_thread(_remove_partial_uploads, self.root)
        if removed:
            log.info("removed %d partial upload(s) left by an interrupted request", removed)
        return 0

    def incoming_dir(self, prefix: str) -> Path:
        return self.path(prefix)

    async def put_file(self, key: str, local_path: Path) -> None:
        await asyncio.to_thread(_put, local_path, self.path(key))

    async def size(self, key: str) -> int | None:
        found = await self.head(key)
        return None if found is None else found.size

    async def head(self, key: str) -> StoredObject | None:
        try:
            info = await asyncio.to_thread(os.stat, self.path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return StoredObject(info.st_size, f"{info.st_mtime_ns:x}-{info.st_size:x}")

    async def move(self, key: str, new_key: str, *, if_version: str) -> bool:
        found = await self.head(key)
        if found is None or found.version != if_version:
            return False
        await asyncio.to_thread(_put, self.path(key), self.path(new_key))
        return True

    async def read_head(self, key: str, n: int) -> bytes:
        return await asyncio.to_thread(_read_at, self.path(key), 0, n)

    async def read_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        path = self.path(key)
        pos = start
        while pos < end:
            data = await asyncio.to_thread(_read_at, path, pos, min(PIECE, end - pos))
            if not data:
                return
            pos += len(data)
            yield data

    @contextlib.asynccontextmanager
    async def local_path(self, key: str) -> AsyncIterator[Path]:
        path = self.path(key)
        if not await asyncio.to_thread(path.is_file):
            raise FileNotFoundError(f"no audio at {key}")
        yield path

    def direct_path(self, key: str) -> Path | None:
        return self.path(key)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self.path(key).unlink)

    async def delete_prefix(self, transcript_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.path(transcript_id), True)

    async def presigned_put(self, key: str, expires_s: int, content_type: str | None) -> str | None:
        return None

    async def probe(self) -> StorageProbe:
        return await asyncio.to_thread(_probe, self.root)

    async def working_file(self, key: str, *, resume: bool = False) -> Path:
        path = self.path(key)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        return path

    async def publish(self, key: str, *, to: str | None = None, fence: int | None = None) -> None:
        return None  # the working file is the stored file, synced by its writer

    async def checkpoint(self, key: str, *, fence: int | None = None) -> None:
        return None  # the same: what its writer synced is stored

    async def settle_parts(self, transcript_id: str) -> int:
        return 0


def _put(source: Path, target: Path) -> None:
    """fsync the file, rename it into place, fsync the folder: on disk before anyone is told."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(source, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if source != target:
        os.replace(source, target)
    fsync_dir(target.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_partial_uploads(root: Path) -> int:
    """Bodies no request holds (:func:`.incoming.claimed`): another process on a shared data dir may be receiving
    the rest of one, and those stay."""
    n = 0
    for pattern in ("*/.incoming-*", "*/chunks/.incoming-*"):
        for p in root.glob(pattern):
            if not claimed(p):
                p.unlink(missing_ok=True)
                n += 1
    return n


def _read_at(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(max(0, n))


def _probe(root: Path) -> StorageProbe:
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f".probe-{secrets.token_hex(4)}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
        writable = True
    except OSError:
        writable = False
    return StorageProbe(writable=writable, free_bytes=shutil.disk_usage(root).free)
