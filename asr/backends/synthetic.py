"""A stand-in for a speech model, for measuring the server's own plumbing (``voxlane bench --queue``) and for tests
where ASR is not what is measured: one word per 0.3 s of audio louder than a whisper, the same word every time,
returned at once. Overlapping windows agree on it, so the commit policy commits and closes segments as it does
for real speech. It transcribes nothing: never run a server for users on it.
"""

from __future__ import annotations

import numpy as np

from asr.backends.base import DecodedWord, DecodeRequest, DecodeResult

SAMPLE_RATE = 16000
STEP_S = 0.3
LOUD = 0.01  # RMS of float audio in [-1, 1]


class SyntheticBackend:
    name = "synthetic"
    max_batch = 8
    lanes = 1

    def __init__(self, word: str = "word") -> None:
        self.word = word
        self.calls = 0

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        self.calls += 1
        return [self._one(r.audio) for r in requests]

    def _one(self, audio: np.ndarray) -> DecodeResult:
        step = int(STEP_S * SAMPLE_RATE)
        words = [DecodedWord(f" {self.word}", i / SAMPLE_RATE, (i + step) / SAMPLE_RATE, 0.95)
                 for i in range(0, len(audio) - step + 1, step)
                 if float(np.sqrt(np.mean(np.square(audio[i:i + step], dtype=np.float64)))) > LOUD]
        return DecodeResult(words=words, no_speech_prob=0.0 if words else 0.9, avg_logprob=-0.1)

    def warm(self) -> None:
        return None

    def close(self) -> None:
        return None
