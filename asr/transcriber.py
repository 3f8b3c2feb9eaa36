"""What transcribes a node's streams, and the one place a stream's session is made for it.

A node runs either the inference loop over a window-decoding backend (faster-whisper: the session cuts windows
and the loop schedules them) or a streaming recognizer that endpoints itself (NVIDIA Riva). Every ingest path
asks :func:`open_session` and gets the session that fits; both take the same arguments and emit the same
events, so the publisher, the recorded-file job and the replay bench do not know which it is.
"""

from __future__ import annotations

from typing import Any

from asr.backends.streaming import StreamingRecognizer
from asr.inference import InferenceLoop
from asr.recognizer_session import RecognizerSession
from asr.session import StreamSession

Transcriber = InferenceLoop | StreamingRecognizer
Session = StreamSession | RecognizerSession


def open_session(engine: Transcriber, **kwargs: Any) -> Session:
    """A stream's session on ``engine``; ``kwargs`` are :class:`~asr.session.StreamSession`'s (``vad_model``,
    ``emit``, ``config``, ``offset``, ``speaker``, ``participant_id``, ``listener``, ``report``,
    ``segment_ids``)."""
    if isinstance(engine, InferenceLoop):
        return StreamSession(engine=engine, **kwargs)
    return RecognizerSession(recognizer=engine, **kwargs)
