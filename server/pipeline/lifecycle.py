"""A transcript's life after its audio: completed or failed, told once, the same way for every source.

Live streams, uploads and jobs, and kiosk conversations all end here, so subscribers, webhooks and summaries
see one sequence whatever the audio came from: the row first (a reader never sees ``completed`` before the
row says so), then the ``status`` message, then the ``conversation.transcribed`` webhook, then the summary
(in the background, never delaying ``completed``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from protocol import Status
from server.features.summaries import summarize_transcript
from server.features.webhooks import transcript_completed

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("voxlane.lifecycle")


async def complete(services: Services, transcript_id: str, *, duration: float, message: str,
                   key: str | None = None) -> None:
    """``key``: what completed it (a job's id, "chunks merged"), so a retried completion emits its webhook once."""
    await services.store.update_transcript(transcript_id, status="completed", duration=round(duration, 3))
    await services.hub.publish(transcript_id, Status(status="completed", stage="transcription", progress=100.0,
                                                     message=message))
    await transcript_completed(services, transcript_id, key=key)
    await summarize_transcript(services, transcript_id)


async def fail(services: Services, transcript_id: str, message: str, *, publish: bool = True) -> bool:
    """The transcript failed (``meta.error`` says why); ``publish``: also tell its subscribers (those that heard
    an ``error`` already were told). Returns False when the transcript no longer exists."""
    row = await services.store.merge_transcript_meta(transcript_id, {"error": message}, status="failed")
    if row is None:
        return False
    if publish:
        await services.hub.publish(transcript_id, Status(status="failed", stage="transcription", message=message))
    return True


async def record_event(services: Services, transcript_id: str, event: dict[str, Any]) -> None:
    """A participant event (join, leave, chat, ...) on the transcript's timeline, in ``meta.participant_events``."""
    def appended(meta: dict[str, Any]) -> dict[str, Any]:
        meta["participant_events"] = [*(meta.get("participant_events") or []), event]
        return meta

    await services.store.edit_transcript_meta(transcript_id, appended)
