"""The small stand-in for the speech model, for tests where ASR is not what is tested (the REST plumbing, storage,
the live pipeline's bookkeeping): the server's own synthetic backend (asr.backends.synthetic), which a real
``voxlane serve`` or ``voxlane worker`` process also runs with ``VOXLANE_ASR_BACKEND=synthetic``."""

from __future__ import annotations

from asr.backends.synthetic import LOUD, STEP_S, WORDS
from asr.backends.synthetic import SyntheticBackend as FakeBackend

__all__ = ["LOUD", "STEP_S", "WORDS", "FakeBackend"]
