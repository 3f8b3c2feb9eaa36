"""The default audio store: files under ``<data dir>/audio``, laid out as they always were.

A key is a path below that directory, so data written before the store existed is read as it is; so is an
absolute path that an older row holds. Working files are the stored files themselves: a live recording is
synced in place while it grows, exactly as before.

Several nodes may share the directory (one volume mounted on each). A stream that one node takes over from a node
that stalled past its lease must not share a file with the stale writer, which appends until it hears it lost the
stream: the taker resumes a copy put in the file's place (the stale writer's descriptor keeps the old file), and
each writer keeps a hidden link to its own file, so a stale one can put its audio aside (``publish(to=...)``)
rather than over the taker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

from server.storage.audio.base import StorageProbe, StoredObject
from server.storage.audio.incoming import claimed

log = logging.getLogger("voxlane.audio")
PIECE = 1 << 16
STALE_COPY_S = 600.0
"""A resume's copy older than this was left by a process that died making it (an hour's recording takes seconds)."""


class LocalAudioStore:
    kind = "local"

    def __init__(self, data_path: Path) -> None:
        self.root = data_path / "audio"
        # key -> this node's hidden link to the file its live writer appends to, and a descriptor locking it (the
        # lock tells a sweep on any node sharing the directory that the writer lives)
        self._writers: dict[str, tuple[Path, int]] = {}

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
        for _, fd in self._writers.values():  # writers that never finished: their links wait for a sweep
            os.close(fd)
        self._writers.clear()

    async def recover(self) -> int:
        """Files are written in place, so nothing waits to be published; bodies that were still arriving when the
        process died were never acknowledged, and go."""
        removed = await asyncio.to_thread(_remove_partial_uploads, self.root)
        if removed:
            log.info("removed %d partial upload(s) left by an interrupted request", removed)
        dropped = await asyncio.to_thread(_remove_writer_links, self.root)
        if dropped:
            log.info("dropped %d recording(s) of stream(s) another node took over before this one stopped", dropped)
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
        """The stored file itself. With ``resume`` (a live recording) it is first replaced by a copy of itself: a
        writer elsewhere that still holds it (a node that has not yet heard its stream was taken over) goes on
        into the old file, not into this one; and this writer keeps a hidden link to its own."""
        path = self.path(key)
        if not resume:
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
            return path
        link = path.with_name(f".{path.name}.writer-{secrets.token_hex(4)}")
        earlier = self._writers.pop(key, None)
        if earlier is not None:  # one writer per key on a node: that one never got to publish (its start failed)
            await asyncio.to_thread(_drop_writer, *earlier)
        self._writers[key] = (link, await asyncio.to_thread(_own_file, path, link))
        return path

    async def publish(self, key: str, *, to: str | None = None, fence: int | None = None) -> None:
        """The working file is the stored file, synced by its writer: only its hidden link goes, or, with ``to``
        (a stream another node took over), the writer's own file is stored under that key."""
        writer = self._writers.pop(key, None)
        if writer is None:
            return
        link, fd = writer
        if to is None:
            await asyncio.to_thread(_drop_writer, link, fd)
            return
        try:
            await asyncio.to_thread(_put, link, self.path(to))
        finally:
            os.close(fd)

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


def _own_file(path: Path, link: Path) -> int:
    """A file of this writer's own at ``path`` (a copy of what is there), linked at ``link``; a descriptor that
    holds a lock on it until the writer is done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size > 0:
        copy = path.with_name(f".{path.name}.resumed-{secrets.token_hex(4)}")
        try:
            shutil.copyfile(path, copy)
            _put(copy, path)
        except BaseException:  # no room for the copy: the start is refused and leaves nothing behind
            copy.unlink(missing_ok=True)
            raise
    else:
        path.touch()
    os.link(path, link)
    fd = os.open(link, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # shared: a sweep's probe for an exclusive lock fails while it is held
    return fd


def _drop_writer(link: Path, fd: int) -> None:
    link.unlink(missing_ok=True)
    os.close(fd)


def _remove_writer_links(root: Path) -> int:
    """Hidden links of live writers that never published (their process died: a live one, on any node sharing the
    directory, holds its lock), and copies a resume left half-made. A link to the stored file itself goes with
    nothing lost, and so does one whose stored file was deleted (the audio stays deleted); one to another file is
    a stale writer's recording of a stream taken over, which goes as on S3 (the taker's file holds the stream).
    How many of the latter there were."""
    dropped = 0
    for link in root.glob("*/.*.writer-*"):
        if claimed(link):
            continue
        stored = link.with_name(link.name[1:].rsplit(".writer-", 1)[0])
        with contextlib.suppress(OSError):
            if stored.exists() and not os.path.samefile(link, stored):
                dropped += 1
        link.unlink(missing_ok=True)
    for copy in root.glob("*/.*.resumed-*"):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - copy.stat().st_mtime > STALE_COPY_S:  # not one another node is making now
                copy.unlink()
    return dropped


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
