"""A stored WAV's layout without fetching the file: the length of a participant's recording for an export, the
bytes of a time range to transcribe again.

A file on this machine's disk is read as :func:`media.wavfile.read_wav_layout` reads any recording, a growing
one included. In a bucket only closed recordings exist (a working file is published once its writer closed it,
so its header is exact): the layout comes from the first bytes and the object's size.
"""

from __future__ import annotations

import asyncio
import os
import struct

from media import DecodeError
from media.wavfile import WavLayout, read_wav_layout
from server.storage.audio.base import AudioStore

HEAD_BYTES = 4096
"""Enough for the header of any recording voxlane writes (44 bytes) and of most others."""


async def stored_wav_layout(audio: AudioStore, key: str) -> WavLayout | None:
    """The layout of the 16-bit PCM WAV stored as ``key``; None when there is none, or it is no such WAV."""
    path = audio.direct_path(key)
    if path is not None:
        return await asyncio.to_thread(_local_layout, path)
    size = await audio.size(key)
    if size is None:
        return None
    try:
        return parse_head(await audio.read_head(key, HEAD_BYTES), size)
    except FileNotFoundError:
        return None


def _local_layout(path: os.PathLike[str]) -> WavLayout | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return read_wav_layout(fd, path)
    except DecodeError:
        return None
    finally:
        os.close(fd)


def parse_head(head: bytes, size: int) -> WavLayout | None:
    """The layout of a 16-bit PCM WAV of ``size`` bytes from its first bytes (its data chunk must start in them)."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        chunk_id, chunk_size = struct.unpack("<4sI", head[pos:pos + 8])
        body = pos + 8
        if chunk_id == b"fmt " and chunk_size >= 16 and body + 16 <= len(head):
            fmt = struct.unpack("<HHIIHH", head[body:body + 16])
        elif chunk_id == b"data":
            if fmt is None or fmt[0] not in (1, 0xFFFE) or fmt[5] != 16 or fmt[1] < 1:
                return None
            block = fmt[1] * 2
            last = chunk_size in (0, 0xFFFFFFFF) or body + chunk_size >= size
            present = size - body if last else chunk_size
            return WavLayout(fmt[2], fmt[1], 2, body, present - present % block, last)
        pos = body + chunk_size + (chunk_size & 1)
    return None
