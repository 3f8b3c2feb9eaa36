"""From an opened PyAV container to 16 kHz float32 (frames, channels) blocks.

Shared by the live :class:`~media.decoders.ContainerDecoder` and the whole-file helpers so both treat
codecs, layouts and damaged packets the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import av
import numpy as np

from media.audio import SAMPLE_RATE
from media.errors import AudioTooLong, DecodeError, describe_av_error

MAX_CONSECUTIVE_BAD_PACKETS = 8
"""A few undecodable packets are normal in real recordings; a run of them means the stream is not audio."""
BUDGET_SLACK_SAMPLES = SAMPLE_RATE // 50
"""20 ms over a budget is forgiven: resampler delay and codec padding make a file of exactly the limit come out
a few samples longer."""


def empty_block(channels: int) -> np.ndarray:
    return np.zeros((0, max(channels, 1)), dtype=np.float32)


class FrameConverter:
    """Resamples decoded frames to 16 kHz planar float while keeping every channel.

    Channels are kept (not mixed by libswresample) because its stereo->mono matrix adds about +3 dB and
    can leave [-1, 1]; callers mix with :func:`media.audio.downmix` or split channels themselves.
    The resampler is rebuilt if the input format changes mid-stream (chained Ogg, codec switches).
    """

    def __init__(self, rate: int = SAMPLE_RATE) -> None:
        self.rate = rate
        self._resampler: av.AudioResampler | None = None
        self._key: tuple[str, str, int] | None = None
        self.channels = 0

    def convert(self, frame: av.AudioFrame) -> np.ndarray:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        blocks: list[np.ndarray] = []
        if key != self._key:
            if self._resampler is not None:
                blocks.extend(self._pull(None))
            self._resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=self.rate)
            self._key = key
            self.channels = frame.layout.nb_channels
        blocks.extend(self._pull(frame))
        return self._join(blocks)

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return empty_block(self.channels)
        blocks = self._pull(None)
        self._resampler = None
        self._key = None
        return self._join(blocks)

    def _pull(self, frame: av.AudioFrame | None) -> list[np.ndarray]:
        assert self._resampler is not None
        return [out.to_ndarray().T for out in self._resampler.resample(frame)]

    def _join(self, blocks: list[np.ndarray]) -> np.ndarray:
        if not blocks:
            return empty_block(self.channels)
        if len({b.shape[1] for b in blocks}) > 1:
            # A channel-count change mid-stream: keep the newest layout, mix older blocks to fit.
            width = blocks[-1].shape[1]
            blocks = [b if b.shape[1] == width else np.repeat(b.mean(axis=1, keepdims=True), width, axis=1)
                      for b in blocks]
        out = np.ascontiguousarray(np.concatenate(blocks, axis=0), dtype=np.float32)
        # Lossy decoders overshoot full scale slightly; downstream code assumes [-1, 1].
        np.clip(out, -1.0, 1.0, out=out)
        return out


def first_audio_stream(container: av.container.InputContainer, what: str) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        raise DecodeError(f"{what} contains no audio stream")
    return container.streams.audio[0]


def decode_blocks(
    container: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    what: str,
    should_stop: Callable[[], bool] = lambda: False,
    max_seconds: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield 16 kHz float32 (frames, channels) blocks until the stream ends, then the resampler tail.

    Isolated bad packets are skipped the way the ffmpeg CLI does; a run of them raises DecodeError.
    With ``max_seconds`` the decoded output is counted and :class:`AudioTooLong` raised before the block that
    would pass it is yielded: the budget is taken from real samples, never from the container's claimed
    duration, so a small file of compressed silence that holds hours stops at the limit.
    """
    converter = FrameConverter()
    budget = Budget(what, max_seconds)
    bad_run = 0
    try:
        for packet in container.demux(stream):
            if should_stop():
                return
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as exc:
                bad_run += 1
                if bad_run > MAX_CONSECUTIVE_BAD_PACKETS:
                    raise DecodeError(f"{what} is corrupt: {describe_av_error(exc)}") from exc
                continue
            bad_run = 0
            for frame in frames:
                block = converter.convert(frame)
                if block.size:
                    budget.spend(len(block))
                    yield block
    except DecodeError:
        raise
    except av.error.FFmpegError as exc:
        raise DecodeError(f"could not decode {what}: {describe_av_error(exc)}") from exc
    tail = converter.flush()
    if tail.size:
        budget.spend(len(tail))
        yield tail


class Budget:
    """Counts decoded 16 kHz frames against a limit of seconds (None: no limit)."""

    def __init__(self, what: str, max_seconds: float | None) -> None:
        self.what = what
        self.max_seconds = max_seconds
        self.limit = int((max_seconds or 0.0) * SAMPLE_RATE) + BUDGET_SLACK_SAMPLES
        self.frames = 0

    def spend(self, frames: int) -> None:
        """Count ``frames`` more; raise AudioTooLong (counting nothing) if they would pass the limit."""
        if self.max_seconds is not None and self.frames + frames > self.limit:
            raise AudioTooLong(self.what, self.max_seconds)
        self.frames += frames
