"""A live stream whose transcript another node took over (server.pipeline.transcripts, on both databases): the
database refuses its next write, nothing of it is stored or heard after that, its client is told to reconnect,
and its end completes nothing. "Another node" is a second store on the same database doing what that node's
stream start or sweep writes; the stream under test runs through the composition root with a stand-in model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from media import SAMPLE_RATE, float_to_s16
from protocol import Error, StartParams
from protocol.close import CLOSE_MOVED
from server import services as composition
from server.cli.live_client import load_pcm16k
from server.pipeline import recovery
from server.services import Services
from server.settings import Settings
from server.storage import SqlStore
from tests.db_support import opened_store
from tests.fake_backend import FakeBackend

pytest_plugins = ("tests.db_support",)
SPEECH = Path(__file__).resolve().parents[5] / "shared" / "audio" / "single" / "jfk_inaugural_1961_excerpt.wav"
FRAME = 3200  # 100 ms of 16-bit PCM


@pytest.fixture
async def node(database_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(data_dir=str(tmp_path / "data"), database_url=database_url, diarization="off",
                        status_interval=0, max_audio_lead_seconds=0, publisher_idle_timeout=0)
    services = await composition.build(settings, backend=FakeBackend())
    try:
        yield services
    finally:
        await composition.close(services)


@pytest.fixture
async def other_node(database_url: str) -> AsyncIterator[SqlStore]:
    async with opened_store(database_url) as store:
        yield store


async def stream_until_stored(node: Services, tid: str, told: list[BaseModel]) -> tuple[object, bytes]:
    """A stream on ``node`` fed until a final of it is stored; the publisher and the audio it has not sent.

    Feeding stops at two thirds of the file to wait for that final: the file is fed as fast as it is taken, and a
    busy machine's pipeline reads it later than it is fed, so the last third is always left to send after the
    other node takes the transcript over."""
    pub = await node.live.get(tid).add_publisher(StartParams(format="pcm_s16le", sample_rate=SAMPLE_RATE,
                                                              channels=1), tell=told.append)
    pcm = float_to_s16(load_pcm16k(SPEECH))
    i, held = 0, len(pcm) * 2 // 3
    while i < held and not await node.store.get_segments(tid):
        await pub.feed_bytes(pcm[i:i + FRAME])
        i += FRAME
    for _ in range(1200):  # a minute at most
        if await node.store.get_segments(tid):
            return pub, pcm[i:]
        await asyncio.sleep(0.05)
    raise AssertionError("no final was stored from two thirds of the file")


async def feed_rest(node: Services, tid: str, pub, rest: bytes) -> None:
    """The rest of the file, then ``stop``; until the stream has left its transcript (a stream ended by the
    refusal is finishing already, and the ``stop`` then returns at once)."""
    for i in range(0, len(rest), FRAME):
        await pub.feed_bytes(rest[i:i + FRAME])
    await pub.finish()
    for _ in range(600):
        if node.live.find(tid) is None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the stream never left its transcript")


def moved_errors(told: list[BaseModel]) -> list[Error]:
    return [m for m in told if isinstance(m, Error) and m.code == "TRANSCRIPT_MOVED"]


async def test_a_stream_fenced_out_by_a_newer_stream_stops_writing_and_completes_nothing(
        node: Services, other_node: SqlStore) -> None:
    tid = (await node.store.create_transcript(name="taken over"))["id"]
    sub = node.hub.subscribe(tid)
    told: list[BaseModel] = []
    pub, rest = await stream_until_stored(node, tid, told)
    stored_before = [s["id"] for s in await node.store.get_segments(tid)]

    newer = await other_node.take_live(tid)  # a publisher that reconnected to another node
    await other_node.save_segment(tid, {"id": "theirs", "text": "the new owner's", "start": 90.0, "end": 91.0},
                                  fence=newer)
    await feed_rest(node, tid, pub, rest)

    stored = [s["id"] for s in await node.store.get_segments(tid)]
    assert stored == [*stored_before, "theirs"], "nothing of the old stream after the other node's start"
    assert len(moved_errors(told)) == 1, told
    assert moved_errors(told)[0].recoverable
    row = await node.store.get_transcript(tid)
    assert row["status"] == "live" and row["live_fence"] == newer, "the old stream's end completes nothing"
    assert node.live.fenced_out == 1 and node.live.find(tid) is None
    messages = []
    while not sub.queue.empty():
        messages.append(sub.queue.get_nowait())
    assert messages[-1] is None and sub.close_code == CLOSE_MOVED, "its subscribers here are told to reconnect"
    heard = [m["data"]["segment_id"] for m in messages[:-1] if m and m["type"] == "transcription"
             and m["data"]["is_final"] and m["data"]["text"]]
    assert heard == stored_before, "nobody hears a final that was refused"

    # the node streams the transcript again once a publisher comes back to it: a fresh fence, past the other's
    again = await node.live.get(tid).add_publisher(StartParams(format="pcm_s16le", sample_rate=SAMPLE_RATE,
                                                                channels=1))
    await again.finish()
    row = await node.store.get_transcript(tid)
    assert row["status"] == "completed" and row["live_fence"] == newer + 1


async def test_a_dead_node_sweep_fences_out_a_stream_that_wakes_up(node: Services, other_node: SqlStore) -> None:
    """The sweep finished the transcript as a stopped node's (that node was stalled past its lease); the node
    wakes up and streams on: its next final is refused and the transcript stays as the sweep completed it."""
    tid = (await node.store.create_transcript(name="swept"))["id"]
    told: list[BaseModel] = []
    pub, rest = await stream_until_stored(node, tid, told)

    class OtherNode:  # what the sweeping node's recovery reads: its own store, hooks, hub and audio store
        store = other_node
        audio = node.audio
        on_completed = ()

        class hub:  # noqa: N801
            @staticmethod
            async def publish(transcript_id: str, body: BaseModel) -> None:
                return None

    assert await recovery.finish_abandoned(OtherNode(), tid)  # type: ignore[arg-type]
    swept = await node.store.get_transcript(tid)
    segments = await node.store.get_segments(tid)
    await feed_rest(node, tid, pub, rest)

    assert await node.store.get_segments(tid) == segments
    assert await node.store.get_transcript(tid) == swept
    assert len(moved_errors(told)) == 1
    assert not await recovery.finish_abandoned(OtherNode(), tid), "completed once"


async def test_a_stream_that_stores_nothing_learns_of_a_take_over_from_the_fence_check(
        node: Services, other_node: SqlStore) -> None:
    """A stream in a long pause (or on a node cut off from Redis) writes nothing for a while: the check that runs
    with every lease renewal finds its fence moved on and ends it the same way as a refused write would."""
    tid = (await node.store.create_transcript(name="quiet"))["id"]
    told: list[BaseModel] = []
    pub = await node.live.get(tid).add_publisher(StartParams(format="pcm_s16le", sample_rate=SAMPLE_RATE,
                                                              channels=1), tell=told.append)
    await pub.feed_bytes(bytes(FRAME * 10))  # a second of silence: no final
    await node.live.check_fences()
    assert not moved_errors(told), "its own fence: nothing to do"
    await other_node.take_live(tid)
    await node.live.check_fences()
    assert len(moved_errors(told)) == 1
    await feed_rest(node, tid, pub, b"")
    assert node.live.fenced_out == 1 and (await node.store.get_transcript(tid))["status"] == "live"
