"""Session events (``asr.events``), wire messages (``protocol``) and stored segment rows: the one place they meet.

A session emits plain values; everything that hands them to a subscriber, a store or a bench record turns
them into messages here, so a message looks the same whichever path produced it. The values are already in
transcript time and rounded (the session does both, once): this is a field-for-field copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from asr.events import FailureEvent, SegmentEvent, SpeechEvent, WordEvent
from protocol import Error, ErrorCode, Speech, Transcription, Word
from protocol.messages import participant_key
from server.storage.base import StaleFence


class Correction(Protocol):
    """A pass over a segment's words before it is stored and told (key terms, PII redaction: the correction
    feature builds it, :meth:`server.pipeline.parts.StreamParts.correction`). An empty pass is false."""

    @property
    def heavy(self) -> bool: ...  # slow enough for a worker thread

    def __bool__(self) -> bool: ...

    def event(self, event: SegmentEvent) -> SegmentEvent: ...


def word_message(word: WordEvent) -> Word:
    return Word(text=word.text, start=word.start, end=word.end, probability=word.probability, final=word.final)


def segment_message(event: SegmentEvent) -> Transcription:
    """The ``transcription`` message of a segment reading (its ``timestamp``: now, as it goes out)."""
    return Transcription(
        text=event.text,
        speaker=event.speaker,
        confidence=event.confidence,
        segment_id=event.segment_id,
        is_final=event.is_final,
        start=event.start,
        end=event.end,
        words=[word_message(w) for w in event.words],
        participant_id=event.participant_id,
    )


def failure_message(event: FailureEvent) -> Error:
    """A ``TRANSCRIPTION_FAILED`` error; ``details`` names the participant when the stream has one (0 counts)."""
    details: dict[str, Any] = {"participant_id": event.participant_id} if event.participant_id is not None else {}
    return Error(code=ErrorCode.TRANSCRIPTION_FAILED.value, message=event.message, details=details,
                 recoverable=event.recoverable)


def speech_message(event: SpeechEvent) -> Speech:
    return Speech(event=event.kind, time=event.time, participant_id=event.participant_id)


def wire_emit(deliver: Callable[[Transcription], Awaitable[Any]], correction: Correction | None = None,
              keep_original: Callable[[Transcription], Awaitable[Any]] | None = None
              ) -> Callable[[SegmentEvent], Awaitable[None]]:
    """A session's ``emit`` that hands ``deliver`` the message of each segment event, its words corrected first
    by ``correction`` (key terms, PII redaction): what is stored and broadcast is the corrected text. A pass with
    a heavy step runs in a worker thread (the session awaits each emit, so its messages keep their order).
    ``keep_original`` gets a final as the model read it, before the corrected one is delivered, where the pass
    changed it (the unredacted text, where ``VOXLANE_KEEP_UNREDACTED`` keeps it)."""
    heavy = correction is not None and correction.heavy

    async def emit(event: SegmentEvent) -> None:
        if not correction:
            await deliver(segment_message(event))
            return
        fixed = await asyncio.to_thread(correction.event, event) if heavy else correction.event(event)
        if keep_original is not None and event.is_final and fixed.text != event.text:
            await keep_original(segment_message(event))
        await deliver(segment_message(fixed))

    return emit


def wire_report(deliver: Callable[[Error], Awaitable[Any]]) -> Callable[[FailureEvent], Awaitable[None]]:
    """A session's ``report`` that hands ``deliver`` the error message of each failure event."""

    async def report(event: FailureEvent) -> None:
        await deliver(failure_message(event))

    return report


def segment_row(msg: Transcription) -> dict[str, Any]:
    """A final transcription message as it is stored (the REST ``segments`` shape)."""
    return {
        "id": msg.segment_id,
        "text": msg.text,
        "speaker": msg.speaker,
        "participant_id": participant_key(msg.participant_id),  # text in the column; readers put back the type
        "start": msg.start,
        "end": msg.end,
        "confidence": msg.confidence,
        "words": [w.model_dump(mode="json") for w in msg.words],
    }


def stored_message(row: dict[str, Any]) -> Transcription:
    """A stored segment replayed to a late subscriber, in the live message shape."""
    return Transcription(
        text=row["text"], speaker=row.get("speaker"), confidence=row.get("confidence") or 0.0,
        segment_id=row["id"], is_final=True, start=row["start"], end=row["end"],
        words=row.get("words") or [], participant_id=row.get("participant_id"),
    )


def unredacted_keeper(services: Any, transcript_id: str) -> Callable[[Transcription], Awaitable[None]] | None:
    """``wire_emit``'s ``keep_original`` where ``VOXLANE_KEEP_UNREDACTED`` keeps the text as spoken (None
    otherwise): the final as read, stored apart for its owner's ``transcripts:unredacted`` scope."""
    if not services.keeps_originals:
        return None

    async def keep(msg: Transcription) -> None:
        try:
            await services.store.save_unredacted(transcript_id, segment_row(msg),
                                                 fence=services.hub.fence_of(transcript_id))
        except StaleFence:  # another node has the transcript now: this stream ends (see Hub.refused)
            services.hub.refused(transcript_id)

    return keep
