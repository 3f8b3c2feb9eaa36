"""Stream decoders: bytes as they arrive from a client in, 16 kHz mono float32 out.

Two shapes of input exist: raw PCM whose format the client declared (decoded inline, no latency) and
encoded containers such as MediaRecorder's WebM/Opus, which FFmpeg demuxes on a worker thread so that
``feed()`` never blocks the event loop waiting for a complete page or cluster.
"""

from __future__ import annotations

import threading
import time
import weakref
from abc import ABC, abstractmethod

import av
import numpy as np

from media.audio import SAMPLE_RATE, PcmFramer, downmix, normalize_pcm_format
from media.byte_streams import ByteStream, RetainedByteStream
from media.errors import DecodeError, describe_av_error
from media.file_decode import decode_file, iter_decode_file, probe_file
from media.formats import (
    DEMUXERS,
    MP4_HEAD_LIMIT,
    SNIFF_BYTES,
    is_pcm_format,
    mp4_index_first,
    normalize_container_format,
    sniff_container,
)
from media.frames import decode_blocks, first_audio_stream
from media.resample import Resampler

__all__ = [
    "ContainerDecoder",
    "DecodeError",
    "PcmDecoder",
    "StreamDecoder",
    "decode_file",
    "iter_decode_file",
    "make_decoder",
    "probe_file",
]

_EMPTY = np.zeros(0, dtype=np.float32)

# Live streams want the first samples as soon as the header is in, not after FFmpeg has buffered
# seconds of data to "analyze" parameters the container header already states.
_LOW_LATENCY_OPTIONS = {"probesize": "32", "analyzeduration": "0"}


class StreamDecoder(ABC):
    """One client stream's decoder. Not thread-safe: one producer calls feed/flush/close in order."""

    @abstractmethod
    def feed(self, data: bytes) -> np.ndarray:
        """Push bytes; return the 16 kHz mono float32 samples that became available (maybe none)."""

    @abstractmethod
    def flush(self) -> np.ndarray:
        """End of stream: return every remaining sample."""

    @abstractmethod
    def close(self) -> None:
        """Release resources without waiting for remaining output; safe to call more than once."""

    @property
    @abstractmethod
    def input_sample_rate(self) -> int | None:
        """Rate of the incoming audio, or None while the stream header has not been parsed yet."""

    @property
    @abstractmethod
    def input_channels(self) -> int | None:
        """Channel count of the incoming audio, or None while unknown."""

    def __enter__(self) -> StreamDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcmDecoder(StreamDecoder):
    """Raw interleaved PCM with a client-declared format: framing, downmix, resample — all inline."""

    def __init__(self, fmt: str, sample_rate: int, channels: int, split_channels: bool = False) -> None:
        if not 8000 <= int(sample_rate) <= 384000:
            raise DecodeError(f"unsupported sample rate {sample_rate}; expected 8000 to 384000 Hz")
        self.fmt = normalize_pcm_format(fmt)
        self._framer = PcmFramer(self.fmt, channels)
        self._rate = int(sample_rate)
        self._channels = int(channels)
        self.split_channels = split_channels
        self._mono = Resampler(self._rate)
        self._per_channel = [Resampler(self._rate) for _ in range(channels)] if split_channels else []
        self._closed = False

    @property
    def input_sample_rate(self) -> int:
        return self._rate

    @property
    def input_channels(self) -> int:
        return self._channels

    def feed(self, data: bytes) -> np.ndarray:
        if self.split_channels:
            return _mix(self.feed_channels(data))
        self._check_open()
        frames = self._framer.push(data)
        return self._mono.process(downmix(frames)) if len(frames) else _EMPTY

    def flush(self) -> np.ndarray:
        if self.split_channels:
            return _mix(self.flush_channels())
        self._check_open()
        self._framer.reset()  # a trailing partial frame is not audio
        return self._mono.flush()

    def feed_channels(self, data: bytes) -> list[np.ndarray]:
        """One 16 kHz mono array per input channel, for speaker-per-channel recordings."""
        self._check_split()
        frames = self._framer.push(data)
        if not len(frames):
            return [_EMPTY for _ in self._per_channel]
        return [r.process(frames[:, i]) for i, r in enumerate(self._per_channel)]

    def flush_channels(self) -> list[np.ndarray]:
        self._check_split()
        self._framer.reset()
        return [r.flush() for r in self._per_channel]

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("decoder is closed")

    def _check_split(self) -> None:
        self._check_open()
        if not self.split_channels:
            raise RuntimeError("feed_channels() needs a PcmDecoder created with split_channels=True")


def _mix(channels: list[np.ndarray]) -> np.ndarray:
    # Resampling is linear, so the mean of resampled channels equals resampling the downmix.
    if len(channels) == 1:
        return channels[0]
    return np.stack(channels).mean(axis=0, dtype=np.float32)


class _SampleBuffer:
    """Hand-off from the decode thread to the caller's thread, bounded: a few hundred bytes of compressed
    silence can hold an hour of audio, so the decode thread waits while ``limit`` frames are already waiting
    for the caller instead of inflating the whole stream into memory (a decompression bomb on the live path)."""

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition()
        self._blocks: list[np.ndarray] = []
        self._held = 0
        self.limit = limit
        self._closed = False

    def put(self, block: np.ndarray) -> None:
        """(decode thread) Waits while the caller has ``limit`` frames to take; never after :meth:`close`."""
        with self._cond:
            while self._held >= self.limit and not self._closed:
                self._cond.wait()
            self._blocks.append(block)
            self._held += len(block)

    def close(self) -> None:
        """Nobody will drain any more: a waiting decode thread goes on (and sees that it was stopped)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self) -> np.ndarray:
        with self._cond:
            blocks, self._blocks = self._blocks, []
            self._held = 0
            self._cond.notify_all()
        if not blocks:
            return _EMPTY
        if len({b.shape[1:] for b in blocks}) > 1:  # split channels: (frames, channels) blocks of one width
            raise DecodeError("the stream's channel layout changed mid-stream; its channels cannot be kept apart")
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


class _DecodeJob:
    """What the decode thread touches. It holds no reference to the decoder, so a decoder its owner
    forgot to close can still be garbage-collected, and its finalizer then stops this thread."""

    def __init__(self, source: ByteStream | RetainedByteStream, demuxer: str, what: str,
                 split_channels: bool = False, max_buffered: int = 60 * SAMPLE_RATE) -> None:
        self.source = source
        self.split_channels = split_channels
        self.demuxer = demuxer
        self.what = what
        self.samples = _SampleBuffer(max_buffered)
        self.error: Exception | None = None
        self.stopped = False
        self.rate: int | None = None
        self.channels: int | None = None
        self.thread = threading.Thread(target=self._run, name=f"decode-{what}", daemon=True)

    def stop(self) -> None:
        self.stopped = True
        self.source.abort()
        self.samples.close()

    def _run(self) -> None:
        try:
            try:
                container = av.open(self.source, mode="r", format=self.demuxer, options=_LOW_LATENCY_OPTIONS)
            except av.error.EOFError as exc:
                raise DecodeError(f"{self.what} ended before its header was complete") from exc
            except av.error.FFmpegError as exc:
                raise DecodeError(f"could not read {self.what}: {describe_av_error(exc)}") from exc
            with container:
                stream = first_audio_stream(container, self.what)
                self.rate = stream.codec_context.sample_rate or None
                self.channels = stream.codec_context.channels or None
                for block in decode_blocks(container, stream, self.what, lambda: self.stopped):
                    self.samples.put(block if self.split_channels else downmix(block))
        except Exception as exc:  # everything must reach the caller's thread
            if not self.stopped:
                self.error = exc
        finally:
            self.source.abort()  # stop buffering input that nobody will read


class ContainerDecoder(StreamDecoder):
    """Progressive decoder for encoded audio arriving in arbitrary chunks (e.g. MediaRecorder blobs).

    The first bytes are checked against the declared format: a different supported container is
    decoded as what it really is (browsers mislabel), while unrecognisable bytes fail on the spot
    instead of after the whole stream. Decoding then runs on a daemon thread, so ``feed()`` never
    blocks; failures are stored and raised as :class:`DecodeError` from the next ``feed()``/``flush()``.
    """

    def __init__(self, fmt: str, flush_timeout: float = 30.0, split_channels: int | None = None,
                 max_buffered_seconds: float = 60.0) -> None:
        self.fmt = normalize_container_format(fmt)
        self.flush_timeout = flush_timeout
        # Most decoded audio waiting for the caller (one feed() returns at most about this much, and flush() at
        # most this much more): the decode thread waits for the caller beyond it. Live callers take a frame's
        # samples before reading the next frame, so memory stays bounded whatever the bytes inflate to.
        self.max_buffered = max(1, round(max_buffered_seconds * SAMPLE_RATE))
        self.split_channels = split_channels  # the channel count the client declared, when it wants them apart
        self.detected_format: str | None = None
        self._head = b""
        self._job: _DecodeJob | None = None
        self._error: DecodeError | None = None
        self._ended = False
        self._closed = False

    @property
    def input_sample_rate(self) -> int | None:
        return self._job.rate if self._job else None

    @property
    def input_channels(self) -> int | None:
        return self._job.channels if self._job else None

    def feed(self, data: bytes) -> np.ndarray:
        if self.split_channels:
            return _mix(self.feed_channels(data))
        return self._feed(data)

    def flush(self) -> np.ndarray:
        if self.split_channels:
            return _mix(self.flush_channels())
        return self._flush()

    def feed_channels(self, data: bytes) -> list[np.ndarray]:
        """One 16 kHz mono array per declared channel (the stream must have that many)."""
        return self._split(self._feed(data))

    def flush_channels(self) -> list[np.ndarray]:
        return self._split(self._flush())

    def _split(self, block: np.ndarray) -> list[np.ndarray]:
        n = self.split_channels
        if not n:
            raise RuntimeError("feed_channels() needs a ContainerDecoder created with split_channels")
        if block.ndim == 1 or len(block) == 0:
            return [_EMPTY for _ in range(n)]
        if block.shape[1] != n:
            self._error = DecodeError(f"the {self.fmt} stream has {block.shape[1]} channel(s), but split_channels"
                                      f" was declared with channels={n}")
            raise self._error
        return [np.ascontiguousarray(block[:, i]) for i in range(n)]

    def _feed(self, data: bytes) -> np.ndarray:
        self._raise_if_failed()
        if self._ended or self._closed:
            raise RuntimeError("feed() after flush() or close()")
        if self._job is None:
            self._head += bytes(data)
            if self._can_start():
                self._start()
            return _EMPTY
        self._job.source.push(data)
        return self._job.samples.drain()

    def _flush(self) -> np.ndarray:
        self._raise_if_failed()
        if self._closed:
            raise RuntimeError("flush() after close()")
        if not self._ended:
            self._ended = True
            if self._job is None and self._head:
                self._start()  # a tiny stream: judge it by what there is
        if self._job is None:
            return _EMPTY
        job = self._job
        job.source.end()
        deadline = time.monotonic() + self.flush_timeout
        pieces: list[np.ndarray] = []
        taken = 0
        while job.thread.is_alive():
            job.thread.join(0.05)
            piece = job.samples.drain()  # lets a decode thread waiting on a full hand-off go on
            if len(piece):
                pieces.append(piece)
                taken += len(piece)
            if taken >= self.max_buffered:  # the rest of a stream that inflates without end is dropped
                job.stop()
                job.thread.join(1.0)
                break
            if time.monotonic() > deadline:
                job.stop()
                self._error = DecodeError(f"{self.fmt} decoding did not finish within {self.flush_timeout:g} s")
                break
        self._raise_if_failed()
        pieces.append(job.samples.drain())
        pieces = [p for p in pieces if len(p)]
        if len({p.shape[1:] for p in pieces}) > 1:
            raise DecodeError("the stream's channel layout changed mid-stream; its channels cannot be kept apart")
        if not pieces:
            return _EMPTY
        # the thread may have put up to another hand-off's worth between the last drain and its stop
        out = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        return out[:self.max_buffered]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._job is not None:
            self._job.stop()
            self._job.thread.join(1.0)

    def _raise_if_failed(self) -> None:
        if self._error is None and self._job is not None and self._job.error is not None:
            exc = self._job.error
            message = exc.message if isinstance(exc, DecodeError) else (
                f"could not decode {self.fmt} audio: {describe_av_error(exc)}"
            )
            self._error = DecodeError(message)
            self._error.__cause__ = exc
        if self._error is not None:
            raise self._error

    def _can_start(self) -> bool:
        if len(self._head) < SNIFF_BYTES:
            return False
        if sniff_container(self._head) != "mp4":
            return True
        return mp4_index_first(self._head) is not None or len(self._head) >= MP4_HEAD_LIMIT

    def _start(self) -> None:
        head, self._head = self._head, b""
        sniffed = sniff_container(head)
        if sniffed is None:
            self._error = DecodeError(
                f"data does not look like {self.fmt} audio or any other supported format "
                f"(starts with {head[:SNIFF_BYTES].hex(' ')})"
            )
            raise self._error
        if DEMUXERS[sniffed] == DEMUXERS[self.fmt] or (head[:3] == b"ID3" and self.fmt == "aac"):
            sniffed = self.fmt
        self.detected_format = sniffed
        # Only an MP4 with its index at the end needs seeking, and so has to be held in memory whole.
        needs_seek = DEMUXERS[sniffed] == "mp4" and not mp4_index_first(head)
        source = RetainedByteStream() if needs_seek else ByteStream()
        source.push(head)
        self._job = _DecodeJob(source, DEMUXERS[sniffed], f"{sniffed} stream", bool(self.split_channels),
                               self.max_buffered)
        weakref.finalize(self, self._job.stop)
        self._job.thread.start()


def make_decoder(fmt: str, sample_rate: int, channels: int, split_channels: bool = False) -> StreamDecoder:
    """Pick the decoder for a declared format; rate and channels only matter for raw PCM, and channels for
    ``split_channels`` (one mono output per channel: ``feed_channels``/``flush_channels``)."""
    if is_pcm_format(fmt):
        return PcmDecoder(fmt, sample_rate, channels, split_channels=split_channels)
    return ContainerDecoder(fmt, split_channels=int(channels) if split_channels else None)

