"""Where the speech tracker puts speech, from sequences of VAD probabilities (32 ms chunks)."""

import numpy as np

from asr.vad import CHUNK_SECONDS, SpeechTracker, VadConfig


def run(probs: list[float]) -> tuple[SpeechTracker, list[tuple[str, float]]]:
    tracker = SpeechTracker(VadConfig())
    return tracker, tracker.update(np.array(probs, np.float32))


def test_a_click_is_not_speech():
    tracker, events = run([0.0] * 10 + [0.9] * 3 + [0.02] * 20)
    assert events == [] and tracker.speech_end is None


def test_a_whisper_dipping_between_its_peaks_is_speech():
    # peaks above the threshold for under the minimum length, the rest between the two thresholds
    whisper = [0.57, 0.63, 0.76, 0.55, 0.33, 0.36, 0.31, 0.26, 0.37, 0.23, 0.18, 0.15, 0.2]
    tracker, events = run([0.0] * 10 + whisper + [0.0] * 5)
    assert [kind for kind, _ in events] == ["speech_start"]
    assert abs(events[0][1] - 10 * CHUNK_SECONDS) < 1e-6
    assert abs(tracker.speech_end - 23 * CHUNK_SECONDS) < 1e-6


def test_speech_after_a_short_pause_resumes_at_once():
    # a 0.3 s pause inside an utterance, then one chunk of speech: it counts, where a new onset would not
    tracker, _ = run([0.9] * 10 + [0.0] * 10 + [0.8] + [0.0] * 3)
    assert abs(tracker.speech_end - 21 * CHUNK_SECONDS) < 1e-6
    # after a long pause a single chunk is a click again
    tracker, _ = run([0.9] * 10 + [0.0] * 40 + [0.8] + [0.0] * 3)
    assert abs(tracker.speech_end - 10 * CHUNK_SECONDS) < 1e-6
