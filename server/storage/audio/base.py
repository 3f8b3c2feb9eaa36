"""The audio store: where every audio file of a transcript is kept, behind one small interface.

One machine keeps audio in a local directory (:mod:`.local`, the default); several nodes share it through an
S3-compatible bucket (:mod:`.s3`). Callers address audio by *key*, a relative string made by
:mod:`server.pipeline.recordings` (``<transcript id>/recording.wav``, ``<transcript id>/upload.wav``,
``<transcript id>/chunks/000003-<key>.webm``, ...); a row that refers to a file stores its key. Rows written
before keys existed hold an absolute local path: the local store reads those as they are.

Decoders (PyAV) need a file on disk: readers take one from :meth:`AudioStore.local_path`. Writers whose file
grows over time (a live recording, a merged recording, split-channel files) write a local *working file* and
:meth:`AudioStore.publish` it once it is closed; a writer of a whole file hands it over with
:meth:`AudioStore.put_file`.

For the job runner (``server.jobs``): a job reads its chunk with
``async with services.audio.local_path(row["path"]) as path: ...`` (the file itself locally; a scratch copy,
removed after, on S3). It writes a merged or split-channel recording to
``path = await services.audio.working_file(recording_key(tid, pid))`` (starting it afresh: unlink it first,
as today), closes it, then ``await services.audio.publish(recording_key(tid, pid))``. A whole file written
elsewhere (under :meth:`AudioStore.incoming_dir`) is stored with ``await services.audio.put_file(key, path)``,
which consumes it. Nothing else is needed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class StorageProbe:
    """What ``check-s3`` reports: whether a write went through, and the data dir's free space (where uploads
    arrive, and S3 working files and scratch copies live)."""

    writable: bool
    free_bytes: int


@dataclass(frozen=True)
class StoredObject:
    """A stored file's size and version: its ETag on S3, its modification time and size locally. A file written
    again has another version."""

    size: int
    version: str


class AudioStore(Protocol):
    kind: str
    """``local`` or ``s3``: what the participant API's storage check reports."""

    async def open(self) -> None:
        """Connect (S3); nothing is read or written yet."""

    async def close(self) -> None:
        """Release connections; safe when :meth:`open` never ran or failed."""

    async def recover(self) -> int:
        """At server start: put back what a crash left behind: bodies still arriving (never acknowledged) are
        removed; on S3, working files are published and scratch copies removed. Returns how many files were
        published."""

    def incoming_dir(self, prefix: str) -> Path:
        """A local directory for receiving a body that will be :meth:`put_file`'d under ``prefix`` (a key's
        folder, such as ``<tid>`` or ``<tid>/chunks``): locally the stored file's own folder, so storing it is
        one rename on one filesystem, as before the store existed."""

    async def put_file(self, key: str, local_path: Path) -> None:
        """Store ``local_path`` (a closed, complete file) as ``key``, durably before this returns, and consume
        it: locally it is fsynced and renamed into place; on S3 it is uploaded, then removed."""

    async def size(self, key: str) -> int | None:
        """The stored file's size in bytes, or None when there is none."""

    async def head(self, key: str) -> StoredObject | None:
        """The stored file's size and version, or None when there is none."""

    async def move(self, key: str, new_key: str, *, if_version: str) -> bool:
        """Store ``key``'s file as ``new_key`` and remove it, only if it is still at ``if_version``: False (and
        nothing moved) when it was written again meanwhile or is gone. A kiosk chunk PUT straight to the bucket
        is moved so at its confirmation: what was checked is what is transcribed, and its presigned URL, still
        valid, can no longer reach it."""

    async def read_head(self, key: str, n: int) -> bytes:
        """Up to ``n`` first bytes (a format sniff, a WAV header). FileNotFoundError when it is missing."""

    def read_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive, clamped to the file), in pieces: an HTTP Range download
        streams them without holding the file in memory."""

    def local_path(self, key: str) -> AbstractAsyncContextManager[Path]:
        """A readable local file for decoders: the file itself locally, a scratch copy on S3 (named like the key,
        so its suffix survives, and removed on exit). FileNotFoundError when it is missing."""

    def direct_path(self, key: str) -> Path | None:
        """The stored file itself when it is on this machine's disk (the local store), so a response can send it
        with sendfile and conditional headers; None on S3."""

    async def delete(self, key: str) -> None:
        """Remove one file (none is fine)."""

    async def delete_prefix(self, transcript_id: str) -> None:
        """Remove every file of a transcript, with any working file or received body of it on this node."""

    async def presigned_put(self, key: str, expires_s: int, content_type: str | None) -> str | None:
        """A URL a client PUTs ``key``'s bytes to directly, valid ``expires_s`` seconds (with ``content_type``
        signed in, when given), so large bodies never pass through the API. None locally: the server's own
        signed PUT route takes them instead."""

    async def probe(self) -> StorageProbe:
        """Write and remove a small object (S3: after a HEAD of the bucket): is storage usable now?"""

    async def working_file(self, key: str, *, resume: bool = False) -> Path:
        """The local file a writer appends to over time; :meth:`publish` stores it once closed. Locally it is the
        stored file itself (one machine's layout is unchanged, and a crash loses nothing synced). On S3 it is a
        spool file under the data dir; with ``resume`` the stored file is fetched into it first (unless a spool
        file is already there: it is the newer), so a stream that starts again continues one recording."""

    async def checkpoint(self, key: str, *, fence: int | None = None) -> None:
        """Store what the working file of ``key`` holds so far (its writer synced it), while it still grows: a
        node that dies loses at most what came after, and the next :meth:`working_file` with ``resume`` on any
        node starts from it. ``fence``: the live stream's (``Store.take_live``); what a stale writer stored is
        never laid over what a newer fence stored. Locally the working file is the stored file: nothing to do."""

    async def settle_parts(self, transcript_id: str) -> int:
        """Make every recording of the transcript one stored file again, from what checkpoints stored of it (its
        stream's node died before publishing it); how many files were settled."""

    async def publish(self, key: str, *, to: str | None = None, fence: int | None = None) -> None:
        """Store the closed working file of ``key``: nothing to do locally; on S3 it is uploaded, then removed
        (left for :meth:`recover` when the upload fails). ``to``: stored under that key instead (a stream that
        another node took over keeps its audio beside the new owner's recording, not over it). ``fence``: the
        live stream's, kept with the file so that no older fence's checkpoint is ever laid over it."""
