"""Crash-tolerant WAV recording of live streams, and range reads for replaying stored audio.

Audio bytes are written as they arrive; only the two size fields in the header are rewritten on
:meth:`WavAppender.sync`. A crash between syncs therefore loses nothing but header accuracy, and
reopening the file recovers the true length from the file size.
A write that fails (a full disk) is undone before the error is raised: the file stays a valid
recording of everything appended before it.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from media.audio import SAMPLE_RATE, downmix, float_to_s16, s16_to_float
from media.errors import DecodeError

_HEADER_BYTES = 44
_SAMPLE_WIDTH = 2
_MAX_CHUNK = 0xFFFFFFFF


@dataclass(frozen=True)
class WavLayout:
    sample_rate: int
    channels: int
    sample_width: int
    data_offset: int
    data_bytes: int
    """Bytes of audio actually present (from the file size when the data chunk is last)."""
    data_is_last: bool


def read_wav_layout(fd: int, path: str | os.PathLike[str]) -> WavLayout:
    """Find fmt and data chunks; trust the file size over a data-size field that may lag after a crash."""
    name = Path(path).name
    size = os.fstat(fd).st_size
    head = os.pread(fd, 12, 0)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise DecodeError(f"{name} is not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= size:
        chunk_id, chunk_size = struct.unpack("<4sI", os.pread(fd, 8, pos))
        body = pos + 8
        if chunk_id == b"fmt ":
            if chunk_size < 16:
                raise DecodeError(f"{name} has a malformed fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", os.pread(fd, 16, body))
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise DecodeError(f"{name} has its data chunk before the fmt chunk")
            tag, channels, rate, bits = fmt
            if tag not in (1, 0xFFFE) or bits != 16 or channels < 1:
                raise DecodeError(f"{name} is not 16-bit PCM (format tag {tag}, {bits} bits)")
            block = channels * _SAMPLE_WIDTH
            on_disk = size - body
            # A streaming writer may leave 0 or 0xFFFFFFFF here, a crashed one a stale size: unless a
            # real chunk follows the declared end, everything up to the end of the file is audio.
            declared_end = body + chunk_size + (chunk_size & 1)
            is_last = chunk_size in (0, _MAX_CHUNK) or not _chunk_at(fd, declared_end, size)
            present = on_disk if is_last else min(chunk_size, on_disk)
            return WavLayout(rate, channels, _SAMPLE_WIDTH, body, present - present % block, is_last)
        pos = body + chunk_size + (chunk_size & 1)
    raise DecodeError(f"{name} has no data chunk")


def _chunk_at(fd: int, pos: int, size: int) -> bool:
    """Whether a plausible RIFF chunk header (printable id, size within the file) starts at ``pos``."""
    if pos + 8 > size:
        return False
    chunk_id, chunk_size = struct.unpack("<4sI", os.pread(fd, 8, pos))
    printable = all(chr(c).isascii() and (chr(c).isalnum() or c == 0x20) for c in chunk_id)
    return printable and pos + 8 + chunk_size <= size


def _header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    block = channels * _SAMPLE_WIDTH
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", min(36 + data_bytes, _MAX_CHUNK), b"WAVE",
        b"fmt ", 16, 1, channels, sample_rate, sample_rate * block, block, 16,
        b"data", min(data_bytes, _MAX_CHUNK),
    )


class WavAppender:
    """A 16-bit PCM WAV that grows while a stream is live and is a valid, replayable file after each sync.

    Opening an existing file continues it (a resumed session keeps one recording). Not meant for more
    than one writer; the lock only makes ``sync()`` from another thread safe.
    """

    def __init__(
        self, path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE, channels: int = 1
    ) -> None:
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self._block = self.channels * _SAMPLE_WIDTH
        self._lock = threading.Lock()
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
        created = False
        try:
            if os.fstat(self._fd).st_size == 0:
                created = True
                self._data_offset = _HEADER_BYTES
                self._data_bytes = 0
                self._size_fields = (4, _HEADER_BYTES - 4)
                self._write_at(0, _header(self.sample_rate, self.channels, 0))
                os.fsync(self._fd)
            else:
                self._resume()
        except BaseException:
            if created:  # a torn header (disk full) would make the next open refuse the file: leave it empty
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None
            raise

    def _resume(self) -> None:
        assert self._fd is not None
        layout = read_wav_layout(self._fd, self.path)
        if (layout.sample_rate, layout.channels) != (self.sample_rate, self.channels):
            raise DecodeError(
                f"{self.path.name} holds {layout.channels} ch at {layout.sample_rate} Hz; "
                f"cannot append {self.channels} ch at {self.sample_rate} Hz"
            )
        if not layout.data_is_last:
            raise DecodeError(f"{self.path.name} has chunks after its audio data; cannot append")
        self._data_offset = layout.data_offset
        self._data_bytes = layout.data_bytes
        self._size_fields = (4, layout.data_offset - 4)
        # Drop a half-written trailing frame left by a crash so new audio stays frame-aligned.
        os.ftruncate(self._fd, self._data_offset + self._data_bytes)

    @property
    def frames(self) -> int:
        return self._data_bytes // self._block

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    @property
    def closed(self) -> bool:
        return self._fd is None

    def append(self, samples: np.ndarray) -> None:
        """Write float32 samples ((n,) or (n, channels)); durable only after the next :meth:`sync`."""
        samples = np.asarray(samples, dtype=np.float32)
        if self.channels == 1 and samples.ndim == 2:
            samples = downmix(samples)
        elif self.channels > 1 and (samples.ndim != 2 or samples.shape[1] != self.channels):
            raise ValueError(f"expected (frames, {self.channels}) samples, got shape {samples.shape}")
        data = float_to_s16(samples)
        if not data:
            return
        with self._lock:
            end = self._data_offset + self._data_bytes
            try:
                self._write_at(end, data)
            except OSError:
                # A disk that fills mid-write (ENOSPC, EDQUOT, EFBIG) leaves part of the chunk behind: cut it
                # off, so the file ends on the last whole chunk that was written and the next sync() describes
                # exactly that. Truncating frees space, so it works on a full disk.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._require_open(), end)
                raise
            self._data_bytes += len(data)

    def sync(self) -> None:
        """Make the header describe every byte appended so far and force it all to disk."""
        with self._lock:
            fd = self._require_open()
            riff_field, data_field = self._size_fields
            riff_size = self._data_offset - 8 + self._data_bytes
            self._write_at(riff_field, struct.pack("<I", min(riff_size, _MAX_CHUNK)))
            self._write_at(data_field, struct.pack("<I", min(self._data_bytes, _MAX_CHUNK)))
            os.fsync(fd)

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.sync()
        finally:
            with self._lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None

    def __enter__(self) -> WavAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_open(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path.name} is closed")
        return self._fd

    def _write_at(self, offset: int, data: bytes) -> None:
        fd = self._require_open()
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written


def read_wav_range(path: str | os.PathLike[str], start_s: float, end_s: float) -> np.ndarray:
    """Mono float32 audio between two times, clamped to what the file holds (which may still be growing)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        layout = read_wav_layout(fd, path)
        block = layout.channels * layout.sample_width
        total = layout.data_bytes // block
        first = min(total, max(0, round(start_s * layout.sample_rate)))
        last = min(total, max(first, round(end_s * layout.sample_rate)))
        data = os.pread(fd, (last - first) * block, layout.data_offset + first * block)
    finally:
        os.close(fd)
    samples = s16_to_float(data[: len(data) - len(data) % block])
    return downmix(samples.reshape(-1, layout.channels))
