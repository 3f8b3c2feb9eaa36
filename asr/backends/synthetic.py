"""A stand-in for a speech model, for measuring the server's own plumbing (``voxlane bench --queue``) and for tests
where ASR is not what is measured: one word per 0.3 s of audio louder than a whisper, returned at once. It
transcribes nothing: never run a server for users on it.

Each word is named after the samples it stands for (one of sixteen names, by their checksum), so two readings of
the same audio agree on it, as the commit policy needs, and a stream's words do not read as the one word said
again and again, which the session's guard against decoding loops cuts to its first (one name for every word
left each segment of speech one word long). Readings line up at the words' bounds, where the stream's buffer
gives the same samples to every window that starts there.

``rtf`` gives its decodes a model's pace without a model's CPU: each waits that many seconds per second of its
audio, so that a job is still running when a test kills its node, or the queue bench sees jobs that take time.
"""

from __future__ import annotations

import time
import zlib

import numpy as np

from asr.backends.base import DecodedWord, DecodeRequest, DecodeResult

SAMPLE_RATE = 16000
STEP_S = 0.3
LOUD = 0.01  # RMS of float audio in [-1, 1]
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett", "kilo",
         "lima", "mike", "november", "oscar", "papa")


class SyntheticBackend:
    name = "synthetic"
    max_batch = 8
    lanes = 1

    def __init__(self, word: str | None = None, rtf: float = 0.0) -> None:
        """``word``: write it for every word instead of the samples' names (one word said again and again)."""
        self.word, self.rtf = word, rtf
        self.calls = 0

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        self.calls += 1
        if self.rtf:
            time.sleep(self.rtf * sum(len(r.audio) for r in requests) / SAMPLE_RATE)
        return [self._one(r.audio) for r in requests]

    def _one(self, audio: np.ndarray) -> DecodeResult:
        step = int(STEP_S * SAMPLE_RATE)
        words = [DecodedWord(f" {self._name(audio[i:i + step])}", i / SAMPLE_RATE, (i + step) / SAMPLE_RATE, 0.95)
                 for i in range(0, len(audio) - step + 1, step)
                 if float(np.sqrt(np.mean(np.square(audio[i:i + step], dtype=np.float64)))) > LOUD]
        return DecodeResult(words=words, no_speech_prob=0.0 if words else 0.9, avg_logprob=-0.1)

    def _name(self, samples: np.ndarray) -> str:
        if self.word is not None:
            return self.word
        return WORDS[zlib.crc32(np.ascontiguousarray(samples, dtype=np.float32).tobytes()) % len(WORDS)]

    def warm(self) -> None:
        return None

    def close(self) -> None:
        return None
