"""A transcript's life after its audio: completed or failed, told once, the same way for every source.

Live streams, uploads and jobs, and kiosk conversations all end here, so subscribers, webhooks and summaries
see one sequence whatever the audio came from. Completing is one transaction: the caller's own rows (a chunk's
state), the transcript's status (a compare-and-set: of two nodes or two attempts completing one transcript,
one does), and its outbox: the ``conversation.transcribed`` deliveries with the jobs that send them, and the
``summarize`` job. So a process killed at any point leaves either none of it or all of it, and a completed
transcript always gets its webhook and its summary. The ``status`` message goes out once that committed (a
reader never sees ``completed`` before the row says so).

What completes with a transcript is not the pipeline's to know: it calls the node's ``on_completed`` hooks inside
the transaction, and the composition root connects them to the webhooks' outbox and the summary job.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from protocol import Status

if TYPE_CHECKING:
    from server.pipeline.hub import Hub
    from server.storage import Store

log = logging.getLogger("voxlane.lifecycle")
COMPLETABLE = ("created", "live", "processing")
"""Statuses a transcript completes from (a failed one is retried through ``processing`` first)."""


class CompletedHook(Protocol):
    """Something that completes with a transcript, in its transaction: ``key`` is what completed it."""

    def __call__(self, transcript_id: str, *, key: str | None) -> Awaitable[Any]: ...


class Recorded(Protocol):
    """Where a transcript's fate is written and told: its rows and its subscribers."""

    store: Store
    hub: Hub


class Completing(Recorded, Protocol):
    """What completing a transcript takes: besides its rows and subscribers, the hooks that complete with it."""

    @property
    def on_completed(self) -> Sequence[CompletedHook]: ...


async def complete(services: Completing, transcript_id: str, *, duration: float, message: str,
                   key: str | None = None, with_rows: Callable[[], Awaitable[bool]] | None = None,
                   fence: int | None = None, claim: bool = False) -> bool:
    """Complete a transcript; False when it was not completable (already completed, failed, deleted), not at
    ``fence`` any more (a live stream's: see ``Store.take_live``), or ``with_rows`` (the caller's part of the
    transaction) said no.

    ``key``: what completed it (a job's id, "chunks merged"), so a completion that runs again emits its webhook
    once. ``claim``: move the fence on, so the stream that held it writes nothing more (a dead node's)."""
    store = services.store
    async with store.transaction():
        if with_rows is not None and not await with_rows():
            return False
        row = await store.transition_transcript(transcript_id, COMPLETABLE, "completed", duration=round(duration, 3),
                                                fence=fence, claim=claim)
        if row is None:
            return False
        for hook in services.on_completed:
            await hook(transcript_id, key=key)
    await services.hub.publish(transcript_id, Status(status="completed", stage="transcription", progress=100.0,
                                                     message=message))
    return True


async def fail(services: Recorded, transcript_id: str, message: str, *, publish: bool = True) -> bool:
    """The transcript failed (``meta.error`` says why); ``publish``: also tell its subscribers (those that heard
    an ``error`` already were told). Returns False when the transcript no longer exists."""
    row = await services.store.merge_transcript_meta(transcript_id, {"error": message}, status="failed")
    if row is None:
        return False
    if publish:
        await services.hub.publish(transcript_id, Status(status="failed", stage="transcription", message=message))
    return True


async def record_event(services: Recorded, transcript_id: str, event: dict[str, Any], *,
                       fence: int | None = None) -> None:
    """A participant event (join, leave, chat, ...) on the transcript's timeline, in ``meta.participant_events``."""
    def appended(meta: dict[str, Any]) -> dict[str, Any]:
        meta["participant_events"] = [*(meta.get("participant_events") or []), event]
        return meta

    await services.store.edit_transcript_meta(transcript_id, appended, fence=fence)
