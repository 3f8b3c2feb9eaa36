"""Names of the encoded formats we accept, how FFmpeg calls their demuxers, and how to recognise them.

Browsers label MediaRecorder output loosely (``audio/webm;codecs=opus``, Safari's ``audio/mp4``) and
sometimes wrongly, so the bytes themselves get the final word via :func:`sniff_container`.
"""

from __future__ import annotations

import struct

from media.audio import PCM_SAMPLE_WIDTHS, normalize_pcm_format
from media.errors import DecodeError

# Our format name -> FFmpeg demuxer name (any name in FFmpeg's comma-separated demuxer list works).
DEMUXERS: dict[str, str] = {
    "webm": "matroska",
    "ogg": "ogg",
    "opus": "ogg",
    "mp3": "mp3",
    "wav": "wav",
    "flac": "flac",
    "m4a": "mp4",
    "mp4": "mp4",
    "aac": "aac",
}
CONTAINER_FORMATS: tuple[str, ...] = tuple(DEMUXERS)
PCM_FORMATS: tuple[str, ...] = tuple(PCM_SAMPLE_WIDTHS)

MP4_HEAD_LIMIT = 64 * 1024
"""How far into an MP4 to look for its index before assuming it comes after the audio."""

_ALIASES = {
    "mpeg": "mp3",
    "mpga": "mp3",
    "x-mp3": "mp3",
    "wave": "wav",
    "x-wav": "wav",
    "vnd.wave": "wav",
    "x-flac": "flac",
    "x-m4a": "m4a",
    "aacp": "aac",
    "x-aac": "aac",
    "matroska": "webm",
    "mkv": "webm",
    "x-matroska": "webm",
    "oga": "ogg",
}

SNIFF_BYTES = 12
"""Enough leading bytes to tell every supported container apart."""


def normalize_container_format(fmt: str) -> str:
    """Map a format name or MIME type (``audio/webm;codecs=opus``) to one of :data:`CONTAINER_FORMATS`."""
    name = fmt.strip().lower().split(";", 1)[0].strip()
    if "/" in name:
        name = name.split("/", 1)[1]
    name = _ALIASES.get(name, name)
    if name not in DEMUXERS:
        raise DecodeError(
            f"unsupported audio format {fmt!r}; expected one of {', '.join(PCM_FORMATS + CONTAINER_FORMATS)}"
        )
    return name


def is_pcm_format(fmt: str) -> bool:
    try:
        normalize_pcm_format(fmt)
    except DecodeError:
        return False
    return True


def sniff_container(head: bytes) -> str | None:
    """Name the container from its first bytes, or None when they match nothing we accept."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:3] == b"ID3":
        return "mp3"  # ID3 tags sometimes prefix ADTS AAC too; a declared "aac" is kept in that case.
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"styp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head[:4] == b"ADIF":
        return "aac"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # MPEG audio frame sync; layer bits 00 mean an ADTS (AAC) header rather than MP1/2/3.
        return "aac" if head[1] & 0x06 == 0 else "mp3"
    return None


def mp4_index_first(head: bytes) -> bool | None:
    """Whether an MP4's index (moov) precedes its media, so it can be read front to back as it arrives.

    True for fragmented and "faststart" files, False when media comes first (the index is at the end
    and decoding must wait for it), None when ``head`` is too short to tell.
    """
    pos = 0
    while pos + 8 <= len(head):
        size, kind = struct.unpack(">I4s", head[pos:pos + 8])
        if kind == b"moov":
            return True
        if kind in (b"mdat", b"moof"):
            return False
        if size == 1:  # 64-bit box size follows the type
            if pos + 16 > len(head):
                return None
            (size,) = struct.unpack(">Q", head[pos + 8:pos + 16])
        if size < 8:
            return False  # size 0 means "to end of file": nothing after it, so no moov up front
        pos += size
    return None
