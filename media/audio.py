"""Sample-format helpers shared by every path into the pipeline: the canonical rate and PCM conversions."""

from __future__ import annotations

import numpy as np

from media.errors import DecodeError

SAMPLE_RATE = 16000
"""Everything downstream (VAD, ASR, storage) works on 16 kHz mono float32."""

_S16_SCALE = 32768.0

PCM_SAMPLE_WIDTHS: dict[str, int] = {"pcm_s16le": 2, "pcm_f32le": 4}
_PCM_ALIASES = {"s16le": "pcm_s16le", "s16": "pcm_s16le", "f32le": "pcm_f32le", "f32": "pcm_f32le"}


def normalize_pcm_format(fmt: str) -> str:
    """Accept the short spellings clients tend to send, but fail loudly on anything else."""
    name = fmt.strip().lower()
    name = _PCM_ALIASES.get(name, name)
    if name not in PCM_SAMPLE_WIDTHS:
        raise DecodeError(f"unsupported PCM format {fmt!r}; expected one of {', '.join(PCM_SAMPLE_WIDTHS)}")
    return name


def _check_channels(channels: int) -> None:
    if not 1 <= channels <= 64:
        raise DecodeError(f"invalid channel count {channels}; expected 1 to 64")


def pcm_bytes_to_float(data: bytes, fmt: str, channels: int) -> np.ndarray:
    """Interpret raw interleaved PCM as float32 (frames, channels).

    Bytes past the last whole frame are ignored; streams whose chunks split frames should use
    :class:`PcmFramer`, which keeps that remainder for the next chunk instead of dropping it.
    """
    fmt = normalize_pcm_format(fmt)
    _check_channels(channels)
    frame_bytes = PCM_SAMPLE_WIDTHS[fmt] * channels
    usable = len(data) - len(data) % frame_bytes
    view = memoryview(data)[:usable]
    if fmt == "pcm_s16le":
        samples = np.frombuffer(view, dtype="<i2").astype(np.float32)
        samples *= np.float32(1.0 / _S16_SCALE)
    else:
        samples = np.frombuffer(view, dtype="<f4").astype(np.float32)
        # Client float PCM is untrusted: NaN/inf or overs would poison VAD and ASR statistics.
        np.nan_to_num(samples, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        np.clip(samples, -1.0, 1.0, out=samples)
    return samples.reshape(-1, channels)


class PcmFramer:
    """Turns arbitrarily split PCM byte chunks into whole frames, carrying partial frames forward.

    WebSocket clients chunk by time or buffer size, not by frame, so a chunk may end mid-sample.
    """

    def __init__(self, fmt: str, channels: int) -> None:
        self.fmt = normalize_pcm_format(fmt)
        _check_channels(channels)
        self.channels = channels
        self.frame_bytes = PCM_SAMPLE_WIDTHS[self.fmt] * channels
        self._pending = b""

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def push(self, data: bytes) -> np.ndarray:
        """Return float32 (frames, channels) for every frame completed by ``data``."""
        if self._pending:
            data = self._pending + bytes(data)
        cut = len(data) - len(data) % self.frame_bytes
        self._pending = bytes(data[cut:])
        return pcm_bytes_to_float(data[:cut], self.fmt, self.channels)

    def reset(self) -> None:
        self._pending = b""


def downmix(x: np.ndarray) -> np.ndarray:
    """Average channels so that identical channels keep their level and the result stays in [-1, 1]."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"expected (frames, channels) audio, got shape {x.shape}")
    if x.shape[1] == 1:
        return np.ascontiguousarray(x[:, 0])
    return x.mean(axis=1, dtype=np.float32)


def float_to_pcm16(x: np.ndarray) -> np.ndarray:
    """int16 samples, scaled like :func:`pcm16_to_float` so that 16-bit audio round-trips exactly."""
    scaled = np.asarray(x, dtype=np.float32) * np.float32(_S16_SCALE)
    np.clip(scaled, -_S16_SCALE, _S16_SCALE - 1, out=scaled)
    return np.rint(scaled).astype("<i2")


def pcm16_to_float(samples: np.ndarray) -> np.ndarray:
    """float32 samples in [-1, 1) (a new array)."""
    out = samples.astype(np.float32)
    out *= np.float32(1.0 / _S16_SCALE)
    return out


def float_to_s16(x: np.ndarray) -> bytes:
    """Little-endian int16 bytes (:func:`float_to_pcm16`)."""
    return float_to_pcm16(x).tobytes()


def s16_to_float(b: bytes) -> np.ndarray:
    """Interleaved samples stay interleaved: callers know the channel count, this function does not."""
    usable = len(b) - len(b) % 2
    return pcm16_to_float(np.frombuffer(memoryview(b)[:usable], dtype="<i2"))


def faint_noise(seconds: float = 1.0) -> np.ndarray:
    """The same quiet noise on every call: what a model is warmed on before the first stream reaches it."""
    return (np.random.default_rng(0).standard_normal(int(seconds * SAMPLE_RATE)) * 1e-3).astype(np.float32)
