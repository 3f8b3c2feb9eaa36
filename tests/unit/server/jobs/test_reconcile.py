"""Recorded work the queue lost is queued again (server.jobs.reconcile), on both databases and their queues: a
chunk left ``uploaded`` or ``processing`` with no job, and a finished conversation with no merge, get their job
once; work a job still holds, or that was written too recently, is left alone."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from server.jobs.reconcile import GRACE_S, requeue_orphans
from server.services import open_job_queue
from server.settings import Settings
from server.storage import SqlStore

pytest_plugins = ("tests.db_support",)


async def test_lost_chunks_and_merges_are_queued_again_once(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), database_url=database_url)
    store = SqlStore(database_url)
    await store.open()
    queue = open_job_queue(settings, store)
    parts = SimpleNamespace(store=store, jobs=queue)
    try:
        upload = await store.create_transcript(status="processing")
        lost = await store.create_chunk(transcript_id=upload["id"], kind="upload", status="processing")
        held_upload = await store.create_transcript(status="processing")
        held = await store.create_chunk(transcript_id=held_upload["id"], kind="upload", status="uploaded")
        from server.jobs.recorded import transcribe_job

        await queue.stage([transcribe_job(held["id"])])
        done = await store.create_transcript(status="completed")
        await store.create_chunk(transcript_id=done["id"], kind="upload", status="transcribed")
        conv = await store.create_transcript(status="processing")
        await store.create_conversation(transcript_id=conv["id"], project_id="p", name=None, email=None, tags=[],
                                        source=None)
        await store.create_chunk(transcript_id=conv["id"], kind="chunk", status="transcribed", index=0)
        await store.update_conversation(conv["id"], finished_at=time.time())

        assert await requeue_orphans(parts) == 0, "nothing is older than the grace period yet"
        later = time.time() + GRACE_S + 1
        assert await requeue_orphans(parts, now=later) == 2  # the lost chunk and the conversation's merge
        assert await queue.counts() == {"transcribe": 2, "settle": 1}
        assert await queue.held([f"transcribe:{lost['id']}", f"settle:{conv['id']}"]) == {
            f"transcribe:{lost['id']}", f"settle:{conv['id']}"}
        assert await requeue_orphans(parts, now=later) == 0, "queued once: now a job holds each"
    finally:
        await queue.close()
        await store.close()
