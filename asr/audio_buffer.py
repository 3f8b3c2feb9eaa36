"""Append-only 16 kHz mono buffer addressed by stream time, safe to read from the inference thread."""

from __future__ import annotations

import threading

import numpy as np

from media.audio import SAMPLE_RATE


class AudioBuffer:
    """Starts with room for ``capacity_s`` and grows by half when a window holds more: most of a live stream's
    windows are a sentence or less, and a buffer sized for Whisper's 30 s held 1.9 MB per stream (three quarters
    of a speaking stream's Python memory) that a stream of short sentences never wrote."""

    def __init__(self, capacity_s: float = 10.0) -> None:
        self._buf = np.zeros(int(capacity_s * SAMPLE_RATE), dtype=np.float32)
        self._n = 0  # samples held
        self._base = 0  # stream sample index of _buf[0]
        self._lock = threading.Lock()

    @property
    def end(self) -> float:
        return (self._base + self._n) / SAMPLE_RATE

    @property
    def start(self) -> float:
        return self._base / SAMPLE_RATE

    def append(self, samples: np.ndarray) -> None:
        with self._lock:
            need = self._n + len(samples)
            if need > len(self._buf):
                grown = np.zeros(max(need, len(self._buf) * 3 // 2), dtype=np.float32)
                grown[: self._n] = self._buf[: self._n]
                self._buf = grown
            self._buf[self._n:need] = samples
            self._n = need

    def skip(self, seconds: float) -> None:
        """Advance the clock without keeping audio (paused streams)."""
        with self._lock:
            self._base += self._n + int(round(seconds * SAMPLE_RATE))
            self._n = 0

    def slice(self, t0: float, t1: float) -> np.ndarray:
        with self._lock:
            a = max(0, int(round(t0 * SAMPLE_RATE)) - self._base)
            b = min(self._n, int(round(t1 * SAMPLE_RATE)) - self._base)
            if b <= a:
                return np.zeros(0, dtype=np.float32)
            return self._buf[a:b].copy()

    def discard_before(self, t: float) -> None:
        """Release audio no decode can need any more."""
        with self._lock:
            k = min(self._n, int(t * SAMPLE_RATE) - self._base)
            if k <= SAMPLE_RATE:  # compact in steps of at least a second
                return
            self._buf[: self._n - k] = self._buf[k:self._n]
            self._n -= k
            self._base += k
