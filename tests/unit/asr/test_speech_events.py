"""When a stream's speech is told started and stopped: from the VAD's probabilities alone, sooner than segments
open and close (barge-in and end of turn), and never for a click."""

from __future__ import annotations

import numpy as np
import pytest

from asr.speech_events import SpeechTeller
from asr.vad import CHUNK_SECONDS, SpeechTracker, VadConfig


def _run(probs: list[float], teller: SpeechTeller | None = None) -> list[tuple[str, float]]:
    """Feed the probabilities one chunk at a time (as frames arrive) and collect what is told."""
    tracker, teller = SpeechTracker(VadConfig()), teller or SpeechTeller(min_silence_s=0.8)
    told = []
    for p in probs:
        told += teller.heard(tracker, tracker.update(np.array([p], np.float32)))
    return told


def chunks(seconds: float) -> int:
    return int(round(seconds / CHUNK_SECONDS))


def test_a_click_is_told_nothing() -> None:
    assert _run([0.0] * 10 + [0.9] * 2 + [0.0] * 40) == []


def test_speech_is_told_started_at_its_onset_a_tenth_of_a_second_in() -> None:
    tracker, teller = SpeechTracker(VadConfig()), SpeechTeller(min_silence_s=0.8)
    onset = chunks(1.0)
    for i, p in enumerate([0.0] * onset + [0.9] * 20):
        told = teller.heard(tracker, tracker.update(np.array([p], np.float32)))
        if told:
            assert told == [("started", pytest.approx(onset * CHUNK_SECONDS))]
            assert (i + 1 - onset) * CHUNK_SECONDS == pytest.approx(0.128), "told after 4 chunks, not 0.2 s"
            return
    pytest.fail("never told started")


def test_stopped_comes_at_the_last_voiced_chunk_once_the_window_of_silence_passed() -> None:
    voiced = chunks(1.0) + 30  # speech, then a tail under the threshold that keeps the VAD's speech going
    probs = [0.0] * chunks(1.0) + [0.9] * 30 + [0.2] * 4 + [0.0] * chunks(1.0)
    told = _run(probs)
    assert [k for k, _ in told] == ["started", "stopped"]
    assert told[1][1] == pytest.approx(voiced * CHUNK_SECONDS)


def test_a_pause_shorter_than_the_window_keeps_the_speech_going() -> None:
    probs = [0.9] * 20 + [0.0] * chunks(0.5) + [0.9] * 20 + [0.0] * chunks(1.0)
    assert [k for k, _ in _run(probs)] == ["started", "stopped"]


def test_a_cut_in_speech_stops_there_and_starts_again_after_it() -> None:
    tracker, teller = SpeechTracker(VadConfig()), SpeechTeller(min_silence_s=0.8)
    teller.heard(tracker, tracker.update(np.full(20, 0.9, np.float32)))
    assert teller.cut(tracker, 0.5) == [("stopped", 0.5)]
    assert teller.heard(tracker, tracker.update(np.full(2, 0.9, np.float32))) == [("started", 0.5)]
