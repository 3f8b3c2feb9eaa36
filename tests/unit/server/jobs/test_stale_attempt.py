"""An attempt at an upload that lost its job to another node (its node stalled past the job's lease) and wakes
up while the newer attempt has finished (server.jobs.recorded, on both databases): the database refuses its
next segment, it stops, and the transcript holds the newer attempt's segments only, completed once. Two nodes
on one database, each built by the composition root with a stand-in model; the older attempt is held at its
first final the way a stalled node would be."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server import services as composition
from server.jobs.queue import Claimed
from server.jobs.recorded import TASK, transcribe
from server.jobs.runner import JobContext
from server.pipeline.recordings import upload_key
from server.services import Services
from server.settings import Settings
from tests.fake_backend import FakeBackend

pytest_plugins = ("tests.db_support",)
SPEECH = Path(__file__).resolve().parents[5] / "shared" / "audio" / "single" / \
    "librivox_sense_and_sensibility_ch01_5utt.wav"


@pytest.fixture
async def nodes(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Services, Services]]:
    """Two nodes on one database and one audio directory (the shared store several nodes need)."""
    built: list[Services] = []
    try:
        for _ in range(2):
            settings = Settings(data_dir=str(tmp_path / "data"), database_url=database_url, diarization="off",
                                jobs="off")
            built.append(await composition.build(settings, backend=FakeBackend()))
        yield built[0], built[1]
    finally:
        for services in built:
            await composition.close(services)


def attempt(node: Services, chunk_id: str, n: int) -> JobContext:
    return JobContext(node, Claimed(id=f"job-{n}", task=TASK, args={"chunk_id": chunk_id}, attempts=n))


async def test_a_stale_attempt_is_refused_and_the_newer_one_s_segments_stand(
        nodes: tuple[Services, Services], tmp_path: Path) -> None:
    stalled, other = nodes
    tid = (await stalled.store.create_transcript(name="upload", status="processing"))["id"]
    key = upload_key(tid, "wav")
    local = tmp_path / "upload.wav"
    shutil.copy(SPEECH, local)
    await stalled.audio.put_file(key, local)
    chunk = await stalled.store.create_chunk(transcript_id=tid, kind="upload", status="uploaded", path=key,
                                             format="wav")

    held, reached = asyncio.Event(), asyncio.Event()
    store_final = stalled.hub.store_final
    stored: list[bool] = []  # what the database said to each of the older attempt's finals

    async def stalls_at_its_first_final(transcript_id, msg):  # the node stops here, past the job's lease
        reached.set()
        await held.wait()
        stored.append(await store_final(transcript_id, msg))
        return stored[-1]

    stalled.hub.store_final = stalls_at_its_first_final  # type: ignore[method-assign]
    older = asyncio.create_task(transcribe(attempt(stalled, chunk["id"], 1)))
    await asyncio.wait_for(reached.wait(), 60)

    await transcribe(attempt(other, chunk["id"], 2))  # the job, swept back to the queue, ran on the other node
    newer = await other.store.get_segments(tid)
    done = await other.store.get_transcript(tid)
    assert newer and done["status"] == "completed"

    held.set()
    await asyncio.wait_for(older, 60)  # it stops without an error: its job is done already
    assert stored and not any(stored), f"every final of the older attempt was refused: {stored}"
    assert await stalled.store.get_segments(tid) == newer, "not one segment of the older attempt"
    assert await stalled.store.get_transcript(tid) == done
    row = await stalled.store.get_chunk(chunk["id"])
    assert row["status"] == "transcribed" and row["attempts"] == 2
