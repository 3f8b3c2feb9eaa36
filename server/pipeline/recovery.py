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
from collections.abc import Callable

from server.pipeline import lifecycle

log = logging.getLogger("voxlane.recovery")
ABANDONED = "the node that was streaming this transcript stopped; it was finished from what was stored"


async def finish_abandoned(services: lifecycle.Completing, transcript_id: str) -> bool:
    """Complete one ``live`` transcript nobody streams any more; False when it is not ``live`` (any more)."""
    store = services.store
    row = await store.get_transcript(transcript_id)
    if row is None or row["status"] != "live":
        return False
    ends = [float(row.get("duration") or 0.0), *(float(s["end"]) for s in await store.get_segments(transcript_id))]
    done = await lifecycle.complete(services, transcript_id, duration=max(ends), message=ABANDONED)
    if done:
        log.warning("transcript %s was left live by a stopped node: finished from what was stored", transcript_id)
    return done


async def finish_all_abandoned(services: lifecycle.Completing, streams: Callable[[str], bool]) -> int:
    """At the start of the only node taking live audio: every ``live`` transcript is one it left behind (unless
    ``streams`` says this node streams it already)."""
    finished = 0
    for transcript_id in await services.store.list_transcript_ids(status="live"):
        if not streams(transcript_id):
            finished += await finish_abandoned(services, transcript_id)
    return finished
