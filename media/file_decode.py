"""Whole-file decoding for uploads: any container FFmpeg reads, out as 16 kHz float32."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from media.audio import SAMPLE_RATE, downmix
from media.errors import DecodeError, describe_av_error
from media.frames import decode_blocks, first_audio_stream


def _open(path: str | os.PathLike[str]) -> av.container.InputContainer:
    name = Path(path).name
    if not Path(path).is_file():
        raise DecodeError(f"{name}: no such file")
    try:
        return av.open(os.fspath(path), mode="r")
    except av.error.FFmpegError as exc:
        raise DecodeError(f"{name} is not a readable audio file: {describe_av_error(exc)}") from exc


def _iter_blocks(path: str | os.PathLike[str], max_seconds: float | None) -> Iterator[np.ndarray]:
    """16 kHz (frames, channels) blocks; raises DecodeError if the file yields no audio at all, AudioTooLong
    once the decoded audio passes ``max_seconds``."""
    what = f"file {Path(path).name}"
    produced = False
    with _open(path) as container:
        stream = first_audio_stream(container, what)
        for block in decode_blocks(container, stream, what, max_seconds=max_seconds):
            produced = True
            yield block
    if not produced:
        raise DecodeError(f"{what} contains no decodable audio")


def decode_file(path: str | os.PathLike[str], split_channels: bool = False, *,
                max_seconds: float | None = None) -> np.ndarray | list[np.ndarray]:
    """Whole file as 16 kHz mono float32, or one such array per channel when ``split_channels``.

    Callers that take files from clients pass ``max_seconds``: past it decoding stops with
    :class:`~media.errors.AudioTooLong`, so a file whose header understates its length is never held whole.
    """
    if not split_channels:
        return np.concatenate([downmix(b) for b in _iter_blocks(path, max_seconds)])
    blocks = list(_iter_blocks(path, max_seconds))
    width = blocks[-1].shape[1]  # a file that changes channel count midway keeps its final layout
    audio = np.concatenate([b for b in blocks if b.shape[1] == width])
    return [np.ascontiguousarray(audio[:, i]) for i in range(width)]


def iter_decode_file(path: str | os.PathLike[str], chunk_seconds: float = 30.0,
                     split_channels: int | None = None, *, max_seconds: float | None = None) -> Iterator[np.ndarray]:
    """Yield 16 kHz mono chunks of ``chunk_seconds`` (last one shorter) so long uploads stay out of RAM.

    With ``split_channels=N`` the chunks are (frames, N) instead, one column per channel: a block with fewer
    channels (a layout change midway) gets silent columns, one with more loses the extra ones.
    With ``max_seconds``, :class:`~media.errors.AudioTooLong` is raised as soon as the decoded audio passes it
    (the container's claimed duration is not trusted); what was yielded before stays within the limit.
    """
    chunk = max(1, round(chunk_seconds * SAMPLE_RATE))
    pending: list[np.ndarray] = []
    held = 0
    for block in _iter_blocks(path, max_seconds):
        pending.append(_fit(block, split_channels) if split_channels else downmix(block))
        held += len(pending[-1])
        if held < chunk:
            continue
        audio = np.concatenate(pending)
        cut = len(audio) - len(audio) % chunk
        for start in range(0, cut, chunk):
            yield audio[start:start + chunk]
        pending = [audio[cut:]] if cut < len(audio) else []
        held = len(audio) - cut
    if held:
        yield np.concatenate(pending)


def _fit(block: np.ndarray, channels: int) -> np.ndarray:
    if block.shape[1] == channels:
        return block
    out = np.zeros((len(block), channels), dtype=np.float32)
    keep = min(channels, block.shape[1])
    out[:, :keep] = block[:, :keep]
    return out


def probe_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Duration (s), sample_rate, channels, codec and container of a file's first audio stream.

    Streamed recordings (MediaRecorder WebM) carry no duration in their header, so it is measured from
    packet timestamps in that case — still far cheaper than decoding.
    """
    what = f"file {Path(path).name}"
    with _open(path) as container:
        stream = first_audio_stream(container, what)
        ctx = stream.codec_context
        try:
            duration = _duration(container, stream)
        except av.error.FFmpegError as exc:
            raise DecodeError(f"could not read {what}: {describe_av_error(exc)}") from exc
        return {
            "duration": duration,
            "sample_rate": ctx.sample_rate,
            "channels": ctx.channels,
            "codec": ctx.name,
            "format": container.format.name,
            "bit_rate": ctx.bit_rate or container.bit_rate or None,
        }


def _duration(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    end = None
    for packet in container.demux(stream):
        if packet.pts is not None and packet.time_base is not None:
            packet_end = (packet.pts + (packet.duration or 0)) * packet.time_base
            end = packet_end if end is None else max(end, packet_end)
    if end is None:
        return None
    start = stream.start_time * stream.time_base if stream.start_time is not None and stream.time_base else 0
    return float(end - start)
