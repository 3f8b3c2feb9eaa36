"""What a streaming session tells the world: plain frozen values, with no wire format attached.

``asr/`` decides what was said and when; how that is put on the wire (the ``protocol`` messages, JSON) is the
server's business (``server/pipeline/convert.py``). Keeping the two apart lets a consumer that is not a
WebSocket subscriber (the replay bench, a kiosk job, a test) take a session's output without the wire types,
and lets the wire format change without touching the speech code.

Times are transcript seconds (the session's offset applied) and already rounded as they are sent (times to the
millisecond, probabilities to 1e-4): the session rounds once, so every consumer sees the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class WordEvent:
    text: str
    start: float
    end: float
    probability: float  # within [0, 1]
    final: bool  # never changes or disappears later in its segment


@dataclass(frozen=True, slots=True)
class SegmentEvent:
    """One reading of a segment: a partial (``is_final`` False, sent again as it changes) or its final."""

    segment_id: str
    text: str
    start: float
    end: float
    is_final: bool
    confidence: float  # mean word probability, within [0, 1]
    words: tuple[WordEvent, ...] = ()
    speaker: str | None = None
    participant_id: str | int | None = None  # as the client declared it, its type kept


@dataclass(frozen=True, slots=True)
class FailureEvent:
    """The model failed on this stream's audio (the audio itself is stored by the caller).

    ``recoverable``: decoding goes on and the words read so far are kept; False when the stream's
    transcription stopped for good."""

    message: str
    recoverable: bool
    participant_id: str | int | None = None


@dataclass(frozen=True, slots=True)
class SpeechEvent:
    """The VAD heard speech begin (``started``, ``time`` its onset) or end (``stopped``, ``time`` the end of the
    last speech, told once the silence after it reached the segment-ending pause).

    Voice agents act on these (barge-in, end of turn), so they come from the VAD as the audio arrives, not from
    decodes: a partial or final can come much later than the speech it reads."""

    kind: Literal["started", "stopped"]
    time: float
    participant_id: str | int | None = None
