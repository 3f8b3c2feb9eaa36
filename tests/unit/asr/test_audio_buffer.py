"""The live stream's audio buffer: addressed by stream time across growth, compaction and skipped stretches."""

from __future__ import annotations

import numpy as np

from asr.audio_buffer import AudioBuffer
from media.audio import SAMPLE_RATE


def ramp(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float32)


def test_a_window_longer_than_the_first_capacity_grows_the_buffer_and_keeps_every_sample() -> None:
    buf = AudioBuffer(capacity_s=1.0)
    for i in range(25):  # 25 s in 1 s pieces, well past the first second's room
        buf.append(ramp(i * SAMPLE_RATE, SAMPLE_RATE))
    assert buf.end == 25.0
    assert np.array_equal(buf.slice(3.0, 24.0), ramp(3 * SAMPLE_RATE, 21 * SAMPLE_RATE))


def test_discarded_audio_keeps_the_clock_and_a_skip_advances_it_without_audio() -> None:
    buf = AudioBuffer(capacity_s=2.0)
    buf.append(ramp(0, 5 * SAMPLE_RATE))
    buf.discard_before(3.0)
    assert buf.start == 3.0 and buf.end == 5.0
    assert len(buf.slice(0.0, 3.0)) == 0
    assert np.array_equal(buf.slice(4.0, 5.0), ramp(4 * SAMPLE_RATE, SAMPLE_RATE))
    buf.skip(2.0)
    buf.append(ramp(0, SAMPLE_RATE))
    assert buf.start == 7.0 and buf.end == 8.0
    assert np.array_equal(buf.slice(7.0, 8.0), ramp(0, SAMPLE_RATE))
