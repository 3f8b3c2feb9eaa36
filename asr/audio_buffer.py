"""Append-only 16 kHz mono buffer addressed by stream time, safe to read from the inference thread."""

from __future__ import annotations

import threading

import numpy as np

from media.audio import SAMPLE_RATE, float_to_pcm16, pcm16_to_float


class AudioBuffer:
    """Holds 16-bit samples: every source is 16-bit (PCM frames, WebRTC's Opus, files resampled from theirs), so a
    sample read back is the one that came in, and a window of 28 s (20 s trimmed plus 8 s lent) is 0.9 MB, not
    1.8 MB as float32, which was most of a speaking stream's memory (16 streams on 2 cores: 1.6 MB a buffer).

    It starts with room for ``capacity_s``, grows by half when a window holds more, and gives the room back when
    compaction leaves it mostly empty: a stream of short sentences never writes a long window, and one long
    sentence does not keep its window's memory for the rest of the stream."""

    def __init__(self, capacity_s: float = 10.0) -> None:
        self._initial = int(capacity_s * SAMPLE_RATE)
        self._buf = np.zeros(self._initial, dtype=np.int16)
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
        pcm = float_to_pcm16(samples)
        with self._lock:
            need = self._n + len(pcm)
            if need > len(self._buf):
                grown = np.zeros(max(need, len(self._buf) * 3 // 2), dtype=np.int16)
                grown[: self._n] = self._buf[: self._n]
                self._buf = grown
            self._buf[self._n:need] = pcm
            self._n = need

    def skip(self, seconds: float) -> None:
        """Advance the clock without keeping audio (paused streams)."""
        with self._lock:
            self._base += self._n + int(round(seconds * SAMPLE_RATE))
            self._n = 0

    def slice(self, t0: float, t1: float) -> np.ndarray:
        """The float32 samples of ``[t0, t1)`` that are still held (a new array)."""
        with self._lock:
            a = max(0, int(round(t0 * SAMPLE_RATE)) - self._base)
            b = min(self._n, int(round(t1 * SAMPLE_RATE)) - self._base)
            if b <= a:
                return np.zeros(0, dtype=np.float32)
            return pcm16_to_float(self._buf[a:b])

    def discard_before(self, t: float) -> None:
        """Release audio no decode can need any more."""
        with self._lock:
            k = min(self._n, int(t * SAMPLE_RATE) - self._base)
            if k <= SAMPLE_RATE:  # compact in steps of at least a second
                return
            held = self._n - k
            if len(self._buf) > self._initial and 4 * held < len(self._buf):
                kept = np.zeros(max(self._initial, 2 * held), dtype=np.int16)  # room back to the system
                kept[:held] = self._buf[k:self._n]
                self._buf = kept
            else:
                self._buf[:held] = self._buf[k:self._n]
            self._n = held
            self._base += k

    @property
    def capacity_samples(self) -> int:
        """Samples the buffer has room for now (what it costs in memory, at two bytes each)."""
        return len(self._buf)
