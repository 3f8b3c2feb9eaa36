"""What the live speaker relay tells subscribers about a final's words."""

from __future__ import annotations

import numpy as np

from asr.diarization import DiarizationConfig
from asr.vad import SileroModel
from protocol import Transcription
from protocol.messages import Diarization, Word
from server.pipeline.speaker_relay import LiveSpeakers


def _w(text: str, start: float, end: float) -> Word:
    return Word(text=text, start=start, end=end, probability=0.9, final=True)


async def test_words_aligned_to_an_instant_are_told_over_a_range_that_is_not_empty() -> None:
    """The aligner gives some words no extent ("I" at 9.024-9.024 s); a voice heard over two such words is still
    told with ``end_time`` after ``start_time``."""
    published: list[Diarization] = []

    async def publish(body: Diarization) -> None:
        published.append(body)

    async def save(_msg: Transcription) -> None:
        return None

    speakers = LiveSpeakers(worker=None, vad_model=SileroModel(), config=DiarizationConfig(), offset=0.0,  # type: ignore[arg-type]
                            publish=publish, save_segment=save)
    d = speakers.diarizer
    # voice 1 over the first second, voice 2 at the two zero-length words at 2.0 s; both long established
    d._centers, d._labels = [0.5, 1.0, 2.0], np.array([1, 1, 2])
    d._next_window = 12
    d.speaker_seconds = lambda: {1: 10.0, 2: 10.0}  # type: ignore[method-assign]
    words = [_w("yes", 0.3, 0.6), _w("I", 0.6, 0.8), _w("agree", 0.8, 1.2), _w("so", 2.0, 2.0), _w("I", 2.0, 2.0)]
    final = Transcription(text="yes I agree so I", confidence=0.9, segment_id="s1", is_final=True,
                          start=0.3, end=2.0, words=words)
    labelled = await speakers.label(final)
    assert labelled.speaker == "Speaker 1"
    assert [(m.speaker_id, m.start_time) for m in published] == [("S2", 2.0)]
    assert published[0].end_time > published[0].start_time
