"""A session's events and their wire messages: the session emits plain values (``asr.events``), and the one
converter (``server.pipeline.convert``) must give the very messages the session used to build itself.

Light: a session with no decode running (its state set by hand), the VAD model only, no speech model.
"""

from __future__ import annotations

import asyncio
import json

from asr.events import FailureEvent, SegmentEvent
from asr.policy import TimedWord
from asr.session import Segment, StreamSession
from asr.vad import SileroModel
from protocol import encode
from server.pipeline.convert import failure_message, wire_emit, wire_report


class _NoEngine:
    """The session only asks the engine for decodes; these tests start none."""


def _session(emit, **kw) -> StreamSession:
    return StreamSession(engine=_NoEngine(), vad_model=SileroModel(), emit=emit, **kw)  # type: ignore[arg-type]


def _data(message) -> dict:
    data = json.loads(encode(message))["data"]
    data.pop("timestamp", None)  # the server clock as it goes out
    return data


def test_a_segment_goes_out_in_transcript_time_rounded_once() -> None:
    sent: list = []
    events: list[SegmentEvent] = []

    async def deliver(message) -> None:
        sent.append(message)

    async def keep(event: SegmentEvent) -> None:
        events.append(event)
        await wire_emit(deliver)(event)

    session = _session(keep, offset=10.00049, speaker="Ann", participant_id=0)
    seg = Segment(id="seg1", start=0.5, window_start=0.5)
    seg.hyp.committed = [TimedWord("Hello", 0.51234, 0.90066, 0.500049)]
    seg.hyp.tentative = [TimedWord("world.", 1.0, 1.33333, 1.2)]
    asyncio.run(session.book.emit_segment(seg, final=False))

    assert _data(sent[0]) == {
        "text": "Hello world.", "speaker": "Ann", "confidence": 0.85, "segment_id": "seg1", "is_final": False,
        "start": 10.513, "end": 11.334, "participant_id": 0,
        "words": [{"text": "Hello", "start": 10.513, "end": 10.901, "probability": 0.5, "final": True},
                  {"text": "world.", "start": 11.0, "end": 11.334, "probability": 1.0, "final": False}],
    }  # (the confidence is the mean of the unclamped probabilities, as it always was)
    assert events[0].words[1].probability == 1.0  # clamped and rounded by the session, not by the converter


def test_a_failure_names_the_participant_even_when_it_is_zero() -> None:
    sent: list = []

    async def deliver(message) -> None:
        sent.append(message)

    report = wire_report(deliver)
    asyncio.run(report(FailureEvent("decoding failed", recoverable=True, participant_id=0)))
    asyncio.run(report(FailureEvent("stopped", recoverable=False)))
    assert [_data(m) for m in sent] == [
        {"code": "TRANSCRIPTION_FAILED", "message": "decoding failed", "details": {"participant_id": 0},
         "recoverable": True},
        {"code": "TRANSCRIPTION_FAILED", "message": "stopped", "details": {}, "recoverable": False},
    ]
    assert failure_message(FailureEvent("x", True, "p")).details == {"participant_id": "p"}
