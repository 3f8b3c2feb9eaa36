"""Live transcripts whose node stopped: finished from what was stored, so no transcript stays ``live`` forever.

A node killed while it streams leaves its transcripts ``live``, their finals stored up to the last one sent and
their recordings on disk up to the last frame written. Without Redis a node is the only one taking live audio,
so every ``live`` transcript it finds at start was its own: it finishes them all. With Redis the node that owned
a transcript holds a lease on it (:mod:`server.pipeline.ownership`), and any node finishes a transcript whose
lease lapsed. Finishing completes the transcript with the duration of what was stored, which tells every
subscriber (``completed``, with the reason as its message), queues its webhook and summary, and lets later
uploads and streams use it again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol

from server.pipeline import lifecycle

if TYPE_CHECKING:
    from server.storage import Store
    from server.storage.audio import AudioStore

log = logging.getLogger("voxlane.recovery")
PAGE = 1000
ABANDONED = "the node that was streaming this transcript stopped; it was finished from what was stored"


class Finishing(lifecycle.Completing, Protocol):
    """What finishing a stopped node's transcript takes: completing it, and the audio store its recording's
    checkpoints are in."""

    audio: AudioStore


async def finish_abandoned(services: Finishing, transcript_id: str) -> bool:
    """Complete one ``live`` transcript nobody streams any more; False when it is not ``live`` (any more). Its
    recordings are settled first: the checkpoints its node stored while it streamed become one file again."""
    store = services.store
    row = await store.get_transcript(transcript_id)
    if row is None or row["status"] != "live":
        return False
    await services.audio.settle_parts(transcript_id)
    ends = [float(row.get("duration") or 0.0), *(float(s["end"]) for s in await store.get_segments(transcript_id))]
    # one conditional write claims and completes it: at the fence read here (a stream that started since, on a
    # node that took it over, keeps it), moved on (the stalled node's later writes are refused)
    done = await lifecycle.complete(services, transcript_id, duration=max(ends), message=ABANDONED,
                                    fence=int(row.get("live_fence") or 0), claim=True)
    if done:
        log.warning("transcript %s was left live by a stopped node: finished from what was stored", transcript_id)
    return done


async def live_transcripts(store: Store, page: int | None = None) -> AsyncIterator[list[str]]:
    """Every ``live`` transcript, a page at a time: a sweep never stops at the first thousand."""
    page = page or PAGE
    after: str | None = None
    while True:
        ids = await store.list_transcript_ids(status="live", limit=page, after=after)
        if ids:
            yield ids
        if len(ids) < page:
            return
        after = ids[-1]


async def finish_all_abandoned(services: Finishing, streams: Callable[[str], bool]) -> int:
    """At the start of the only node taking live audio: every ``live`` transcript is one it left behind (unless
    ``streams`` says this node streams it already). One that cannot be finished now is left for the next start,
    and does not stop the others."""
    finished = 0
    async for ids in live_transcripts(services.store):
        for transcript_id in ids:
            if streams(transcript_id):
                continue
            try:
                finished += await finish_abandoned(services, transcript_id)
            except Exception:
                log.exception("finishing transcript %s failed; the others go on", transcript_id)
    return finished
