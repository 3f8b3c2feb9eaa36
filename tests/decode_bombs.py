"""Decompression bombs for the decode-budget tests: small files whose header claims a short duration but that
decode to much more audio (long silence compresses to almost nothing).

Each builder writes real, valid-looking media (FFmpeg reads it without complaint) and patches the one header
field a prober trusts for the duration:

* FLAC: STREAMINFO's total-samples field says ``claimed`` seconds; the frames hold ``seconds``.
* WAV: the ``data`` chunk's size is left open (as a streaming writer leaves it), so the duration comes from
  the header's byte rate, which is inflated; the RIFF size claims ``claimed`` seconds too.
* Ogg/Opus: every page's granule position is capped at ``claimed`` seconds, so the duration a prober reads from
  the last page is short (each page's CRC is recomputed so the pages stay valid).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import av
import numpy as np


def _encode(container: str, codec: str, rate: int, seconds: float, audio: np.ndarray | None = None) -> bytes:
    """Mono s16 ``audio`` at ``rate`` (default: ``seconds`` of silence), encoded a second at a time so a long
    silence is never held in memory."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        total = len(audio) if audio is not None else int(round(seconds * rate))
        pts = 0
        while pts < total:
            n = min(rate, total - pts)
            samples = audio[pts:pts + n] if audio is not None else np.zeros(n, np.int16)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.int16)[None, :], format="s16",
                                               layout="mono")
            frame.sample_rate = rate
            frame.pts = pts
            pts += n
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def flac_bomb(path: Path, seconds: float, claimed: float = 1.0, rate: int = 16000,
              audio: np.ndarray | None = None) -> Path:
    """A FLAC of ``seconds`` of silence (or of the s16 ``audio``) whose STREAMINFO claims ``claimed`` seconds."""
    data = bytearray(_encode("flac", "flac", rate, seconds, audio))
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "STREAMINFO is the first metadata block"
    info = 8  # 'fLaC' + the block header
    # bytes 10..17 of STREAMINFO: 20 bits rate, 3 bits channels-1, 5 bits bits-per-sample-1, 36 bits samples
    packed = int.from_bytes(data[info + 10:info + 18], "big")
    packed = (packed & ~((1 << 36) - 1)) | int(round(claimed * rate))
    data[info + 10:info + 18] = packed.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def wav_bomb(path: Path, seconds: float, claimed: float = 1.0, rate: int = 8000) -> Path:
    """A 16-bit mono WAV of ``seconds`` of silence whose header claims ``claimed`` seconds: the ``data`` chunk
    has the size a streaming writer leaves (0xFFFFFFFF: "until the end of the file"), so the duration is
    worked out from the header's byte rate, which is inflated to make it come out short."""
    size = int(round(seconds * rate)) * 2
    byte_rate = int(round(size / claimed))
    fmt = struct.pack("<HHIIHH", 1, 1, rate, byte_rate, 2, 16)
    header = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(header) + int(round(claimed * rate)) * 2) + header)
        piece = 1 << 20
        while size > 0:
            f.write(bytes(min(piece, size)))
            size -= piece
    return path


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def opus_bomb(path: Path, seconds: float, claimed: float = 1.0) -> Path:
    """An Ogg/Opus file of ``seconds`` of silence whose page granule positions never pass ``claimed``
    seconds, so its duration (read from the last page) is short."""
    data = bytearray(_encode("ogg", "libopus", 48000, seconds))
    cap = int(round(claimed * 48000))
    pos = 0
    while pos < len(data):
        assert data[pos:pos + 4] == b"OggS", "a page starts here"
        segments = data[pos + 26]
        size = 27 + segments + sum(data[pos + 27:pos + 27 + segments])
        granule = struct.unpack_from("<q", data, pos + 6)[0]
        if granule > cap:
            struct.pack_into("<q", data, pos + 6, cap)
        struct.pack_into("<I", data, pos + 22, 0)
        struct.pack_into("<I", data, pos + 22, _ogg_crc(bytes(data[pos:pos + size])))
        pos += size
    path.write_bytes(bytes(data))
    return path
