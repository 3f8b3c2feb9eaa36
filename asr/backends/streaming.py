"""The interface of a streaming recognizer: a service that takes a stream's audio and endpoints it itself.

:class:`~asr.backends.base.AsrBackend` decodes windows the session cuts: the session's VAD and commit policy
decide what a segment is and when its words are final, and the inference loop decides when the model runs.
A streaming recognizer (NVIDIA Riva's ``StreamingRecognize``, :mod:`asr.backends.riva`) does all of that on its
side: it is fed audio chunks as they arrive and answers with *interim* results, each replacing the last for the
utterance being spoken, and one *final* result per utterance once its own endpointer heard the utterance end. No
window is cut and no decode is scheduled, so such a backend cannot sit behind the inference loop; a session built
on it maps utterances to segments and results to segment events instead.

It mirrors Riva's client (``ASRServiceAsync.streaming_recognize``:
an async iterator of audio chunks in, an async iterator of ``StreamingRecognizeResponse`` out, configured by a
``StreamingRecognitionConfig`` with ``interim_results``) while keeping its protobuf types out of ``asr``: an
implementation converts its responses to :class:`StreamingResult` (Riva gives word times in milliseconds from
the stream's start and a ``stability`` for interims).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from media.audio import SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class StreamingOptions:
    """One stream's recognition settings (Riva: ``RecognitionConfig`` inside ``StreamingRecognitionConfig``)."""

    sample_rate: int = SAMPLE_RATE  # the audio is the pipeline's own: 16 kHz mono float32
    language: str | None = None  # None: the recognizer's default
    interim_results: bool = True  # False: finals only (a file's transcription has no listener waiting)
    word_timestamps: bool = True
    punctuation: bool = True
    phrases: tuple[str, ...] = ()  # vocabulary to favour (Riva: word boosting), as Whisper's prompt is for it


@dataclass(frozen=True, slots=True)
class StreamedWord:
    text: str
    start: float  # seconds from the start of the stream's audio
    end: float
    confidence: float  # within [0, 1]


@dataclass(frozen=True, slots=True)
class StreamingResult:
    """The recognizer's current reading of one utterance.

    Interim results of an utterance replace each other (each holds the whole utterance so far, not a delta);
    the final one closes it, and the next result belongs to the next utterance. ``stability`` says how likely an
    interim is to stay as it reads (1.0 for a final); ``audio_end`` is how much of the stream the recognizer had
    heard when it gave this result, which bounds what a final may still be waiting for."""

    text: str
    is_final: bool
    words: tuple[StreamedWord, ...] = ()
    confidence: float = 0.0
    stability: float = 1.0
    audio_end: float = 0.0


class StreamingRecognizer(Protocol):
    """A streaming recognition service; one instance serves every stream (a connection shared by them all)."""

    name: str

    def recognize(self, audio: AsyncIterator[np.ndarray],
                  options: StreamingOptions) -> AsyncIterator[StreamingResult]:
        """Results for one stream as they come, until ``audio`` ends and the recognizer has read it all.

        ``audio`` yields 16 kHz mono float32 chunks in stream order (any length; the recognizer converts and
        re-chunks them as its service wants). The caller consumes the results while it feeds the audio; ending
        ``audio`` is the stream's end, after which the last final comes. An error of the service ends the
        iteration with an exception (the session reports it as a failure event)."""
        ...

    async def close(self) -> None:
        """Release the connection; streams still running end with an error."""
        ...
