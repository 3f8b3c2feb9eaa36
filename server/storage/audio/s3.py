"""Audio in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...), shared by every node, through aiobotocore.

Objects are named ``VOXLANE_S3_PREFIX + key``. Nothing is held whole in memory: uploads above one part go up as
a multipart upload read part by part off the event loop, downloads stream to disk. This node's disk still holds
two kinds of local files under the data dir: *spool* files (``s3-spool/<key>``), the working files of writers
whose file grows (a live recording), published when closed and after a crash by :meth:`recover`; and *scratch*
files (``s3-scratch/``), bodies being received and copies handed to decoders, removed when done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from server.settings import Settings
from server.storage.audio.base import StorageProbe, StoredObject

log = logging.getLogger("voxlane.audio")
PART_BYTES = 16 << 20
"""Upload part size: a file up to this size is one PUT; S3 takes parts of 5 MiB and more."""
PIECE = 1 << 20
MISSING = ("404", "NoSuchKey", "NotFound")
FENCE_META = "voxlane-fence"
"""A published recording's metadata: the fence of the stream that wrote it (see :meth:`S3AudioStore.publish`)."""


class S3AudioStore:
    kind = "s3"

    def __init__(self, settings: Settings, *, part_bytes: int = PART_BYTES) -> None:
        assert settings.s3_bucket
        self.settings = settings
        self.bucket = settings.s3_bucket
        prefix = settings.s3_prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.spool = settings.data_path / "s3-spool"
        self.scratch = settings.data_path / "s3-scratch"
        self.part_bytes = part_bytes
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._signer: Any = None  # the client whose endpoint goes into presigned URLs
        self._stored: dict[str, int] = {}  # working files -> how many of their bytes the bucket holds
        self._fences: dict[str, int] = {}  # working files -> the fence written beside them (see _fence_path)

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        s = self.settings
        await asyncio.to_thread(self.spool.mkdir, parents=True, exist_ok=True)
        session = get_session()
        stack = contextlib.AsyncExitStack()
        # path-style addressing for a custom endpoint (MinIO and its kin have no per-bucket host names); SigV4,
        # which every S3-compatible store accepts and AWS requires for presigned URLs in newer regions
        config = AioConfig(signature_version="s3v4", connect_timeout=10,
                           retries={"max_attempts": 3, "mode": "standard"},
                           s3={"addressing_style": "path"} if s.s3_endpoint_url else None)
        keys = ({"aws_access_key_id": s.s3_access_key_id, "aws_secret_access_key": s.s3_secret_access_key}
                if s.s3_access_key_id else {})  # else the SDK's credential chain

        async def client(endpoint: str | None) -> Any:
            return await stack.enter_async_context(session.create_client(
                "s3", region_name=s.s3_region, endpoint_url=endpoint, config=config, **keys))

        try:
            self._client = await client(s.s3_endpoint_url)
            public = s.s3_public_endpoint_url
            self._signer = await client(public) if public and public != s.s3_endpoint_url else self._client
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def recover(self) -> int:
        await asyncio.to_thread(shutil.rmtree, self.scratch, True)  # nothing in there was acknowledged
        published = 0
        for path in await asyncio.to_thread(_files, self.spool):
            if path.name.startswith("."):
                kept = path.name.startswith(".fence-")  # a fence beside a spool file: read with that file below
                if not kept or not await asyncio.to_thread(path.with_name(path.name[len(".fence-"):]).exists):
                    await asyncio.to_thread(path.unlink, True)  # a fetch or a merge cut short; a fence alone
                continue
            key = path.relative_to(self.spool).as_posix()
            fence = await asyncio.to_thread(_read_fence, self._fence_path(path))
            try:
                stored_fence, stored_length = await self._in_bucket(key)
                if fence is not None and stored_fence > fence:
                    # its stream was taken over (this node stalled or was cut off, then died): the newer
                    # stream's recording went on from this one's last checkpoint, and this copy is not to go
                    # over it
                    log.warning("%s left by an earlier run was taken over by a newer stream: dropped", key)
                    await asyncio.to_thread(_unlink_with_fence, path, self._fence_path(path))
                    continue
                if stored_length >= (await asyncio.to_thread(os.stat, path)).st_size:
                    # a stream went on from what this node stored (on another node, after this one died): the
                    # bucket holds at least this file's audio, and this copy would overwrite what came after
                    log.warning("%s left by an earlier run is older than the stored recording: dropped", key)
                    await asyncio.to_thread(_unlink_with_fence, path, self._fence_path(path))
                    continue
                await self.put_file(key, path, fence=fence)
                await asyncio.to_thread(self._fence_path(path).unlink, True)
                await self._delete_parts(key)
                published += 1
            except (ClientError, BotoCoreError, OSError) as exc:
                log.error("could not publish %s left by an earlier run (kept for the next start): %s", key, exc)
        return published

    async def _in_bucket(self, key: str) -> tuple[int, int]:
        """What the bucket holds of ``key``: the newest fence that stored audio of it (the published file's, or a
        part's), and how long the file is with the parts :meth:`_assemble` would put after it."""
        found = await self._head_object(key)
        parts = await self._parts(key)
        length = int(found["ContentLength"]) if found is not None else 0
        for _, offset, name in _current(parts, _fence_of(found)):
            got = await self._client.head_object(Bucket=self.bucket, Key=name)
            length = offset + int(got["ContentLength"]) if offset <= length else length
        return max([_fence_of(found), *(fence for fence, _, _ in parts)]), length

    # ------------------------------------------------------------ keys

    def _object(self, key: str) -> str:
        if os.path.isabs(key):  # a row from before the bucket: its file never went to the bucket
            raise FileNotFoundError(f"{key} is a local path, not an object of the bucket")
        if not key or ".." in key.split("/") or key.startswith("/"):
            raise ValueError(f"not an audio key: {key!r}")
        return self.prefix + key

    def _spool_path(self, key: str) -> Path:
        self._object(key)
        return self.spool / key

    @staticmethod
    def _fence_path(spool_file: Path) -> Path:
        """Beside a spool file, the fence of the stream writing it: :meth:`recover` on a node that died holds
        it against the bucket's."""
        return spool_file.with_name(f".fence-{spool_file.name}")

    # ------------------------------------------------------------ writing

    def incoming_dir(self, prefix: str) -> Path:
        self._object(prefix)
        return self.scratch / prefix

    async def put_file(self, key: str, local_path: Path, *, fence: int | None = None) -> None:
        """``fence``: the live stream's that wrote the file, kept as the object's metadata; parts of an older
        fence (a stale node's checkpoints) are never put over it (see :meth:`_assemble`)."""
        name = self._object(key)
        meta = {"Metadata": {FENCE_META: str(fence)}} if fence is not None else {}
        size = (await asyncio.to_thread(os.stat, local_path)).st_size
        if size <= self.part_bytes:
            data = await asyncio.to_thread(local_path.read_bytes)
            await self._client.put_object(Bucket=self.bucket, Key=name, Body=data, **meta)
        else:
            await self._put_parts(name, local_path, meta)
        await asyncio.to_thread(local_path.unlink, True)

    async def _put_parts(self, name: str, local_path: Path, meta: dict[str, Any]) -> None:
        upload = await self._client.create_multipart_upload(Bucket=self.bucket, Key=name, **meta)
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            with open(local_path, "rb") as f:  # noqa: ASYNC230 - each read runs in a thread
                while data := await asyncio.to_thread(f.read, self.part_bytes):
                    number = len(parts) + 1
                    done = await self._client.upload_part(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                                          PartNumber=number, Body=data)
                    part = {"ETag": done["ETag"], "PartNumber": number}
                    if done.get("ChecksumCRC32"):  # the SDK checksums each part: completion names them
                        part["ChecksumCRC32"] = done["ChecksumCRC32"]
                    parts.append(part)
            await self._client.complete_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                                         MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError):
                await self._client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            raise

    async def working_file(self, key: str, *, resume: bool = False) -> Path:
        path = self._spool_path(key)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        self._stored[key] = 0  # a spool file left here may hold more than the bucket: its first part is whole
        if resume and not await asyncio.to_thread(path.exists):
            fetching = path.with_name(f".fetching-{path.name}")
            if await self._assemble(key, fetching) is not None:  # the stored file and the parts added since
                await asyncio.to_thread(os.replace, fetching, path)
                self._stored[key] = (await asyncio.to_thread(os.stat, path)).st_size
        return path

    async def checkpoint(self, key: str, *, fence: int | None = None) -> None:
        """The working file's bytes since the last checkpoint (or since it was fetched) go up as one part,
        ``<key>.parts/<fence>-<offset>``: a node that dies mid-stream loses only what came after. The next
        stream of the key, on any node, continues from the stored file and its parts; :meth:`publish` folds
        them in. The fence in the name is what refuses a stale writer: a node that has not yet heard that
        another took its stream over may still put a part, and :meth:`_assemble` lays the newer fence's parts
        over it."""
        path = self._spool_path(key)
        if fence and self._fences.get(key) != fence:
            await asyncio.to_thread(self._fence_path(path).write_text, str(fence))
            self._fences[key] = fence
        start = self._stored.get(key, 0)
        data = await asyncio.to_thread(_read_from, path, start)
        if not data:
            return
        await self._client.put_object(Bucket=self.bucket, Key=self._part_name(key, start, fence), Body=data)
        self._stored[key] = start + len(data)

    async def settle_parts(self, transcript_id: str) -> int:
        """Fold every recording's parts under the transcript into its stored file (a stream whose node died
        left them): downloads then read one whole file. How many files were folded."""
        folded = 0
        for key in await self._keys_with_parts(transcript_id):
            assembling = self.scratch / f".settle-{secrets.token_hex(8)}" / PurePosixPath(key).name
            try:
                if (fence := await self._assemble(key, assembling)) is not None:
                    await self.put_file(key, assembling, fence=fence)
                    await self._delete_parts(key)
                    folded += 1
            finally:
                await asyncio.to_thread(shutil.rmtree, assembling.parent, True)
        return folded

    async def publish(self, key: str, *, to: str | None = None, fence: int | None = None) -> None:
        path = self._spool_path(key)
        self._stored.pop(key, None)
        self._fences.pop(key, None)
        await asyncio.to_thread(self._fence_path(path).unlink, True)
        if not await asyncio.to_thread(path.exists):
            return
        if to is not None:  # renamed first: an upload that fails leaves it for recover() under its new key
            target = self._spool_path(to)
            await asyncio.to_thread(os.replace, path, target)
            await self.put_file(to, target)
            return
        await self.put_file(key, path, fence=fence)
        await self._delete_parts(key)  # the whole file holds them now

    # ------------------------------------------------------------ a recording's parts

    def _part_name(self, key: str, offset: int, fence: int | None = None) -> str:
        return f"{self._object(key)}.parts/{fence or 0:012d}-{offset:015d}"

    async def _parts(self, key: str) -> list[tuple[int, int, str]]:
        """The parts stored for ``key``: (fence, byte offset in the file, object name), by fence then offset,
        the order they are laid over the stored file in. A part named by its offset alone has fence 0."""
        prefix = f"{self._object(key)}.parts/"
        found = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents") or []:
                fence, _, offset = item["Key"][len(prefix):].rpartition("-")
                if offset.isdigit() and (fence.isdigit() or not fence):
                    found.append((int(fence or 0), int(offset), item["Key"]))
        return sorted(found)

    async def _keys_with_parts(self, transcript_id: str) -> list[str]:
        prefix = self._object(transcript_id).rstrip("/") + "/"
        keys: set[str] = set()
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents") or []:
                name, found, _ = item["Key"].rpartition(".parts/")
                if found:
                    keys.add(name[len(self.prefix):])
        return sorted(keys)

    async def _delete_parts(self, key: str) -> None:
        names = [{"Key": name} for _, _, name in await self._parts(key)]
        for i in range(0, len(names), 1000):
            await self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": names[i:i + 1000],
                                                                          "Quiet": True})

    async def _assemble(self, key: str, path: Path) -> int | None:
        """The stored file of ``key`` followed by its parts, into ``path``: the fence of the newest stream in
        it (0 when none was named), or None when neither exists. A part overwrites the file from its offset on
        (a stream that resumed from an older copy wrote over its tail), and a newer fence's parts go over an
        older one's: what a stale node checkpointed after the stream was taken over from it is cut off where
        the new stream's audio begins. Parts older than the stored file's fence are left out entirely (a stale
        node's last checkpoint landing after the new stream published the whole file)."""
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        parts = await self._parts(key)
        try:
            fence = await self._download(key, path)
        except FileNotFoundError:
            if not parts:
                return None
            fence = 0
            await asyncio.to_thread(path.write_bytes, b"")
        for part_fence, offset, name in _current(parts, fence):
            got = await self._client.get_object(Bucket=self.bucket, Key=name)
            async with got["Body"] as body:
                data = await body.read()
            if not await asyncio.to_thread(_write_at, path, offset, data):
                log.warning("a part of %s at byte %d is past the end of what was stored before it: left out",
                            key, offset)
                continue
            fence = max(fence, part_fence)
        return fence

    async def presigned_put(self, key: str, expires_s: int, content_type: str | None) -> str | None:
        params = {"Bucket": self.bucket, "Key": self._object(key)}
        if content_type:
            params["ContentType"] = content_type
        url: str = await self._signer.generate_presigned_url("put_object", Params=params, ExpiresIn=expires_s)
        return url

    # ------------------------------------------------------------ reading

    async def size(self, key: str) -> int | None:
        found = await self.head(key)
        return None if found is None else found.size

    async def head(self, key: str) -> StoredObject | None:
        found = await self._head_object(key)
        return None if found is None else StoredObject(int(found["ContentLength"]), str(found["ETag"]))

    async def _head_object(self, key: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._client.head_object(Bucket=self.bucket, Key=self._object(key))
        except FileNotFoundError:
            return None
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return found

    async def move(self, key: str, new_key: str, *, if_version: str) -> bool:
        """A server-side copy on the condition that the source still has the ETag that was checked (a PUT racing
        the confirmation fails it), then the source removed. The source is looked at again after the copy, for
        stores that ignore the copy's condition (moto, some S3-compatible servers): unchanged throughout, the
        copy holds the checked bytes; changed, the copy is dropped and the caller asks again."""
        source = {"Bucket": self.bucket, "Key": self._object(key)}
        try:
            await self._client.copy_object(Bucket=self.bucket, Key=self._object(new_key), CopySource=source,
                                           CopySourceIfMatch=if_version)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if _missing(exc) or code in ("PreconditionFailed", "412"):
                return False
            raise
        after = await self.head(key)
        if after is None or after.version != if_version:
            await self.delete(new_key)
            return False
        await self.delete(key)
        return True

    async def read_head(self, key: str, n: int) -> bytes:
        return b"".join([piece async for piece in self.read_range(key, 0, n)])

    async def read_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        if end <= start:
            return
        try:
            got = await self._client.get_object(Bucket=self.bucket, Key=self._object(key),
                                                Range=f"bytes={start}-{end - 1}")
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(f"no audio at {key}") from None
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return  # starts at or past the end
            raise
        async with got["Body"] as body:
            async for piece in body.iter_chunks(PIECE):
                yield piece

    @contextlib.asynccontextmanager
    async def local_path(self, key: str) -> AsyncIterator[Path]:
        directory = self.scratch / f".copy-{secrets.token_hex(8)}"
        path = directory / PurePosixPath(key).name
        try:
            await self._download(key, path)
            yield path
        finally:
            await asyncio.to_thread(shutil.rmtree, directory, True)

    def direct_path(self, key: str) -> Path | None:
        return None

    async def _download(self, key: str, path: Path) -> int:
        """The stored file into ``path``; the fence it was published with (0 when none was named)."""
        try:
            got = await self._client.get_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(f"no audio at {key}") from None
            raise
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        with open(path, "wb") as f:  # noqa: ASYNC230 - each write runs in a thread
            async with got["Body"] as body:
                async for piece in body.iter_chunks(PIECE):
                    await asyncio.to_thread(f.write, piece)
        return _fence_of(got)

    # ------------------------------------------------------------ removing, probing

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await self._client.delete_object(Bucket=self.bucket, Key=self._object(key))

    async def delete_prefix(self, transcript_id: str) -> None:
        prefix = self._object(transcript_id).rstrip("/") + "/"
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            names = [{"Key": item["Key"]} for item in page.get("Contents") or []]
            if names:  # a page holds at most 1,000 keys, as many as one delete takes
                await self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": names, "Quiet": True})
        for local in (self.spool / transcript_id, self.scratch / transcript_id):
            await asyncio.to_thread(shutil.rmtree, local, True)

    async def probe(self) -> StorageProbe:
        name = f"{self.prefix}.probe-{secrets.token_hex(4)}"
        try:
            await self._client.head_bucket(Bucket=self.bucket)
            await self._client.put_object(Bucket=self.bucket, Key=name, Body=b"ok")
            await self._client.delete_object(Bucket=self.bucket, Key=name)
            writable = True
        except (ClientError, BotoCoreError) as exc:
            log.warning("S3 storage probe of bucket %s failed: %s", self.bucket, exc)
            writable = False
        free = (await asyncio.to_thread(shutil.disk_usage, self.settings.data_path)).free
        return StorageProbe(writable=writable, free_bytes=free)


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in MISSING


def _read_from(path: Path, start: int) -> bytes:
    """The file's bytes from ``start`` to its end now (a writer may be appending meanwhile)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read()
    except FileNotFoundError:
        return b""


def _fence_of(found: dict[str, Any] | None) -> int:
    """The fence a HEAD or GET of a published recording names (0: none, or not a recording)."""
    value = ((found or {}).get("Metadata") or {}).get(FENCE_META, "")
    return int(value) if value.isdigit() else 0


def _read_fence(path: Path) -> int | None:
    """The fence written beside a spool file; None when its stream never checkpointed with one."""
    try:
        value = path.read_text().strip()
    except OSError:
        return None
    return int(value) if value.isdigit() else None


def _unlink_with_fence(path: Path, fence_path: Path) -> None:
    path.unlink(missing_ok=True)
    fence_path.unlink(missing_ok=True)


def _current(parts: list[tuple[int, int, str]], stored_fence: int) -> list[tuple[int, int, str]]:
    """The parts that go over a stored file published with ``stored_fence``: none of an older stream's."""
    return [part for part in parts if part[0] >= stored_fence]


def _write_at(path: Path, offset: int, data: bytes) -> bool:
    """``data`` over the file from ``offset`` on (cut there first); False when the file is shorter than that."""
    with open(path, "r+b") as f:
        if offset > f.seek(0, os.SEEK_END):
            return False
        f.truncate(offset)
        f.seek(offset)
        f.write(data)
    return True


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
