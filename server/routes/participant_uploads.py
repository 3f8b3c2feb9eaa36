"""Where kiosk chunk bytes go: through this server's own signed PUT route into the audio store, or, when the
store is an S3 bucket, straight to the bucket with a presigned URL, so large bodies never pass through the API.

A presigned upload is not seen by the server until the kiosk confirms it, so the checks the PUT route makes while
a body streams in (size limit, audio container) are made at confirm on the stored object instead; a refused
object is removed and its URL may be used again until it expires. Expiry and unknown keys are checked on this
side of the flow, from the chunk's row: the bucket is not asked to.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from media import sniff_container
from server.http.errors import ApiError
from server.http.uploads import EXTENSIONS, MEDIA_TYPES, SNIFF_BYTES, too_large, unsupported
from server.pipeline.recordings import sealed_chunk_key
from server.routes.participant_schemas import StorageCheck

if TYPE_CHECKING:
    from server.routes.parts import NodeParts

_BY_MEDIA_TYPE = {**{v: k for k, v in MEDIA_TYPES.items()}, "audio/x-wav": "wav", "audio/wave": "wav",
                  "audio/mp3": "mp3", "audio/x-m4a": "m4a", "audio/m4a": "m4a", "audio/x-flac": "flac"}


def chunk_extension(content_type: str | None, filename: str | None) -> str:
    """The extension of a chunk's key, named before its bytes exist (a presigned URL names its object): from the
    declared content type, else the file name, else ``bin``. Decoders read the bytes, not the name."""
    by_type = _BY_MEDIA_TYPE.get((content_type or "").split(";")[0].strip().lower())
    suffix = PurePosixPath(filename or "").suffix.lstrip(".").lower()
    return by_type or (suffix if suffix in EXTENSIONS.values() else "bin")


async def check_direct_upload(svc: NodeParts, row: dict[str, Any]) -> dict[str, Any]:
    """The stored object of a chunk PUT straight to the bucket, checked and sealed: there (409 otherwise), not
    empty (422), within ``VOXLANE_MAX_UPLOAD_MB`` (413) and audio in an accepted container (415), then moved
    where its presigned URL, valid until it expires, cannot overwrite it, on the condition that it is still the
    object that was checked (a second PUT racing the confirmation: 409, confirm again). Its format, size and
    sealed key, for the row; the presigned key is kept in its options until the URL expires
    (:mod:`server.jobs.expired_uploads` then removes whatever a later PUT left there)."""
    audio, key = svc.audio, row["path"]
    sealed = sealed_chunk_key(key)
    found = await audio.head(key)
    if found is None:
        done = await audio.head(sealed)  # a confirmation that sealed it and then died before its row: go on
        if done is not None:
            return {"format": sniff_container(await audio.read_head(sealed, SNIFF_BYTES)) or "unknown",
                    "size": done.size, "path": sealed, "options": {**row["options"], "presigned": key}}
        raise ApiError(409, "nothing was uploaded with this key yet: PUT the chunk to its URL first", "NOT_UPLOADED",
                       {"key": row["upload_key"]})
    limit = svc.settings.max_upload_mb << 20
    try:
        if found.size == 0:
            raise ApiError(422, "the file is empty", "EMPTY_FILE")
        if found.size > limit:
            raise too_large(limit)
        kind = sniff_container(await audio.read_head(key, SNIFF_BYTES))
        if kind is None:
            raise unsupported("the file is not audio in a supported format")
    except ApiError:
        await audio.delete(key)  # refused: the URL can still take the right bytes until it expires
        raise
    if await audio.head(sealed) is not None:  # a confirmation running beside this one sealed it already
        raise ApiError(409, "this chunk was already confirmed", "ALREADY_CONFIRMED", {"key": row["upload_key"]})
    if not await audio.move(key, sealed, if_version=found.version):
        if await audio.head(sealed) is not None:  # another confirmation of it moved it first
            raise ApiError(409, "this chunk was already confirmed", "ALREADY_CONFIRMED", {"key": row["upload_key"]})
        raise ApiError(409, "the chunk was uploaded again while it was being confirmed: confirm it again",
                       "UPLOAD_CHANGED", {"key": row["upload_key"]})
    return {"format": kind, "size": found.size, "path": sealed, "options": {**row["options"], "presigned": key}}


async def storage_check(svc: NodeParts) -> StorageCheck:
    """A write probe of the audio store. Locally the disk must also hold one more upload; chunks PUT to a bucket
    do not touch this node's disk."""
    probe = await svc.audio.probe()
    roomy = svc.audio.kind == "s3" or probe.free_bytes > svc.settings.max_upload_mb << 20
    return StorageCheck(ok=probe.writable and roomy, storage=svc.audio.kind, writable=probe.writable,
                        free_bytes=probe.free_bytes)
