"""The interface every ASR backend implements, and the request/result shapes the loop passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(slots=True)
class DecodeRequest:
    """One window of 16 kHz mono audio to transcribe, with the committed text before it as prompt."""

    audio: np.ndarray
    prompt: str = ""
    language: str | None = None
    # key terms (names, jargon) the model is to favour, given to it before the prompt on every window: the prompt
    # holds recent text and loses them as the transcript grows (faster-whisper's ``hotwords``)
    hotwords: str = ""
    word_timestamps: bool = True
    # set by the inference loop when live work waits for the model (other streams, or a lone stream on a
    # machine whose full decodes take longer than its step): the backend may trade a little accuracy for time
    # (faster-whisper encodes the window and a pad of silence, not a full 30 s input)
    hurried: bool = False


@dataclass(slots=True)
class DecodedWord:
    text: str  # as the model wrote it, leading space included
    start: float  # seconds from the start of the request's audio
    end: float
    probability: float


# a window whose text compresses better than this is a repetition loop (Whisper's own threshold): the
# backend decodes it again without its prompt, the session cuts what is left of it
LOOP_COMPRESSION_RATIO = 2.4


@dataclass(slots=True)
class DecodeResult:
    words: list[DecodedWord] = field(default_factory=list)
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 1.0
    compute_seconds: float = 0.0
    encode_seconds: float = 0.0  # of compute_seconds, the encoder's (its features included), where a backend says
    passes: int = 1  # model passes this result took (a re-decoded tail or a retry without prompt adds one)
    error: str | None = None

    def add_cost(self, other: DecodeResult) -> None:
        """Count another pass's work into this result: the loop and the replay charge what ran."""
        self.compute_seconds += other.compute_seconds
        self.encode_seconds += other.encode_seconds
        self.passes += other.passes


class AsrBackend(Protocol):
    """Backends are called from the inference loop's threads only, with up to ``max_batch`` requests; up to
    ``lanes`` calls run at once, each from its own thread (one lane: never two at a time)."""

    name: str
    max_batch: int
    lanes: int

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]: ...

    def warm(self) -> None:
        """Run what the first decode would load (kernels, allocators), so that no live stream waits for it."""

    def close(self) -> None: ...
