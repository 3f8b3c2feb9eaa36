"""Stored segment spans widened over the speech around their words."""

from __future__ import annotations

import numpy as np

from asr.diarization.spans import speech_spans


def test_a_span_takes_the_speech_around_its_words_and_never_a_neighbours() -> None:
    """Speech 1.0-3.0 s and 3.2-5.0 s (0.1 s steps). The first segment's words were stamped 1.4-2.6 s: it takes
    1.0-3.0. The second's words 3.5-3.9 s and the third's 4.0-4.6 s share one run of speech: the second takes
    its start (3.2) and runs up to the third's words, which take the rest up to 5.0. A zero-length word at an
    instant in speech gets that speech; one in silence stays as it was."""
    step = 0.1
    speech = np.zeros(80, dtype=bool)
    speech[10:30] = True
    speech[32:50] = True
    speech[60:65] = True
    spans = speech_spans([(1.4, 2.6), (3.5, 3.9), (4.0, 4.6), (6.2, 6.2), (7.5, 7.5)], speech, step)
    assert spans == [(1.0, 3.0), (3.2, 4.0), (4.0, 5.0), (6.0, 6.5), (7.5, 7.5)]


def test_overlapping_words_keep_their_own_span() -> None:
    """Two segments whose words overlap (crosstalk) are never narrowed."""
    speech = np.ones(50, dtype=bool)
    assert speech_spans([(1.0, 2.5), (2.0, 3.0)], speech, 0.1) == [(0.0, 2.5), (2.0, 5.0)]
