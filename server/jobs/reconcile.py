"""Housekeeping: recorded work left with no job behind it is queued again.

A chunk is ``uploaded`` or ``processing`` only while a job for it waits or runs: its row and its job commit
together, and the job ends it. A finished kiosk conversation that is not yet ``completed`` has a merge waiting
or running, or a chunk whose end will queue one. Those promises rest on the queue keeping every job until its
handler returns, and a queue can lose one: a job ended while an attempt of it still ran elsewhere (a node
stalled past its lease), an attempt aborted by a stop and never put back, a put-back refused by a dedupe key.
The chunk then stayed ``processing`` for good and its conversation never completed.

So every node that takes jobs looks, once a housekeeping round, for such rows last written more than
:data:`GRACE_S` ago whose dedupe key no waiting or running job holds, and queues their job again. The job itself
is safe to run twice (a chunk's attempt is a compare-and-set on its row; a merge changes nothing the second
time), and the key keeps two nodes that reconcile at once from queueing two.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Protocol

from server.jobs.merge import settle_job
from server.jobs.recorded import transcribe_job
from server.storage.column_types import to_datetime

if TYPE_CHECKING:
    from server.jobs.queue import JobQueue
    from server.storage import Store

log = logging.getLogger("voxlane.jobs")
GRACE_S = 60.0
"""How long a row must have gone unwritten: a job's own writes (its claim, its progress) renew it."""
LIMIT = 500
"""Rows looked at per round; the next round takes the rest."""
OPEN = ("uploaded", "processing")


class ReconcileParts(Protocol):
    store: Store
    jobs: JobQueue


async def requeue_orphans(parts: ReconcileParts, now: float | None = None) -> int:
    """One round: queue again the chunks and merges no job holds; how many were queued."""
    store, queue = parts.store, parts.jobs
    before = (now or time.time()) - GRACE_S
    chunks = await store.list_chunks(statuses=OPEN, updated_before=before, limit=LIMIT)
    jobs = {c["id"]: transcribe_job(c["id"]) for c in chunks}
    held = await queue.held([job.dedupe for job in jobs.values() if job.dedupe])
    lost = [c for c in chunks if jobs[c["id"]].dedupe not in held]
    merges = []
    for conv in (await store.list_unsettled_conversations())[:LIMIT]:
        finished = conv.get("finished_at")
        if finished is None or to_datetime(finished).timestamp() >= before:
            continue
        if any(c["status"] in OPEN for c in await store.list_chunks(transcript_id=conv["id"], kind="chunk")):
            continue  # its chunks' ends queue its merge (and a lost chunk is queued again above)
        merges.append(settle_job(conv["id"]))
    merge_held = await queue.held([job.dedupe for job in merges if job.dedupe])
    merges = [job for job in merges if job.dedupe not in merge_held]
    if not lost and not merges:
        return 0
    await queue.stage([jobs[c["id"]] for c in lost] + merges)
    for c in lost:
        log.warning("chunk %s of %s was %s with no job behind it; queued again", c["id"], c["transcript_id"],
                    c["status"])
    for job in merges:
        log.warning("conversation %s was finished with no merge behind it; queued again", job.args["transcript_id"])
    return len(lost) + len(merges)

