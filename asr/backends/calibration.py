"""What admission's calibration reads: a live refresh's window of real speech, shipped with the package.

Before the inference loop has timed live decodes of its own, admission sizes a burst of streams on the
backend's calibration (:mod:`asr.capacity`). Faint noise, which the model is warmed on, made the decoder babble
on to its length limit: 5 s of it read hurried took 0.52-0.58 s on each of 2 lanes where 5 s of speech took
0.19-0.24 s, and the first burst on a fresh 2-core server was held to 6 streams where the box serves 8 at
commit p95 1.5 s.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from media.file_decode import decode_file

CALIBRATION_SPEECH = Path(__file__).with_name("calibration_speech.flac")
"""8 s of the 1961 inaugural address (a work of the US federal government, in the public domain), 16 kHz mono."""
CALIBRATION_PROMPT = ("Let the word go forth from this time and place, to friend and foe alike, that the torch has"
                      " been passed to a new generation of Americans.")
"""The committed text before a live window, as its prompt (the same address, some lines earlier)."""


@cache
def calibration_speech() -> np.ndarray:
    audio = decode_file(CALIBRATION_SPEECH)
    assert isinstance(audio, np.ndarray)
    return audio
