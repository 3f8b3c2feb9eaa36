"""The speech-events bench's spaced stream: every reference utterance keeps its audio and gets exact times."""

from __future__ import annotations

import numpy as np

from bench.speech_events import latencies, spaced


def test_utterances_are_spaced_by_the_gap_with_their_audio_whole() -> None:
    samples = np.arange(16000 * 3, dtype=np.float32)
    audio, times = spaced(samples, [{"start": 0.5, "end": 1.0}, {"start": 1.25, "end": 2.5}], gap_s=1.5)
    assert times == [(1.5, 2.0), (3.5, 4.75)]
    assert len(audio) == int(4.75 * 16000)
    assert np.array_equal(audio[24000:32000], samples[8000:16000])
    assert not audio[32000:56000].any()


def test_latency_is_the_arrival_after_the_reference_time_of_the_nearest_event() -> None:
    lat = latencies([(1.5, 2.0)], [("started", 1550, 1.71), ("stopped", 2010, 2.9), ("started", 9000, 9.1)])
    assert lat["started"] == [0.21] and lat["stopped"] == [0.9]
    assert not lat["missed_started"] and not lat["missed_stopped"]
