"""The live stream's audio buffer: addressed by stream time across growth, compaction and skipped stretches."""

from __future__ import annotations

import numpy as np

from asr.audio_buffer import AudioBuffer
from media.audio import SAMPLE_RATE


def ramp(start: int, n: int) -> np.ndarray:
    """Samples that tell their position apart: 16-bit values, as float32 in [-1, 1)."""
    return ((np.arange(start, start + n) % 65536) - 32768).astype(np.float32) / 32768


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


def test_a_sample_read_back_is_the_16_bit_sample_that_came_in() -> None:
    buf = AudioBuffer(capacity_s=1.0)
    pcm = np.array([-32768, -1, 0, 1, 12345, 32767], dtype=np.int16)
    buf.append(pcm.astype(np.float32) / 32768)
    buf.append(np.array([1.5, -1.5], dtype=np.float32))  # out of range: clipped, not wrapped
    out = buf.slice(0.0, 1.0)
    assert out.dtype == np.float32
    assert np.array_equal(np.rint(out * 32768).astype(np.int64), [-32768, -1, 0, 1, 12345, 32767, 32767, -32768])


def test_room_a_long_window_took_is_given_back_once_it_is_discarded() -> None:
    buf = AudioBuffer(capacity_s=2.0)
    buf.append(ramp(0, 30 * SAMPLE_RATE))  # one long sentence
    assert buf.capacity_samples >= 30 * SAMPLE_RATE
    buf.discard_before(29.0)
    assert buf.capacity_samples == 2 * SAMPLE_RATE
    assert np.array_equal(buf.slice(29.0, 30.0), ramp(29 * SAMPLE_RATE, SAMPLE_RATE))
    buf.append(ramp(30 * SAMPLE_RATE, SAMPLE_RATE))
    assert np.array_equal(buf.slice(29.5, 31.0), ramp(29 * SAMPLE_RATE + SAMPLE_RATE // 2, SAMPLE_RATE * 3 // 2))
