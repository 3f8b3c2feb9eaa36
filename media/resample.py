"""Streaming sample-rate conversion for mono float audio, backed by libswresample via PyAV."""

from __future__ import annotations

import av
import numpy as np

from media.audio import SAMPLE_RATE

_EMPTY = np.zeros(0, dtype=np.float32)


class Resampler:
    """Keeps filter state between calls so a stream resampled chunk by chunk equals one resampled whole.

    libswresample compensates its own filter delay, so after :meth:`flush` the total output length is
    ``round(n_in * out_rate / in_rate)`` and output sample 0 lines up with input sample 0.
    """

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._resampler: av.AudioResampler | None = None

    @property
    def passthrough(self) -> bool:
        return self.in_rate == self.out_rate

    def process(self, mono: np.ndarray) -> np.ndarray:
        """Return whatever output the new input completes; some of it may only appear on a later call."""
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if mono.ndim != 1:
            raise ValueError(f"Resampler takes mono 1-D audio, got shape {mono.shape}")
        if self.passthrough:
            return mono
        if mono.size == 0:
            return _EMPTY
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.out_rate)
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.in_rate
        return _collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """Drain the filter tail; afterwards the object starts a fresh stream on the next :meth:`process`."""
        if self._resampler is None:
            return _EMPTY
        tail = _collect(self._resampler.resample(None))
        self._resampler = None
        return tail


def _collect(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return _EMPTY
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)
