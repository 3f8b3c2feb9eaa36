"""Network faults between one node and a shared service, with real processes: two ``voxlane serve`` nodes on one
PostgreSQL, Redis and S3-compatible store, node A reaching each of them through a proxy that can cut it off
(tests/fault_proxy.py: a black hole, as a partition is), node B directly. Both take live audio on the synthetic
backend.

- A cut off from Redis mid-stream: its lease lapses, B finishes the transcript after the grace period, and A,
  still streaming, is refused at its next write. Its client goes on through B: one transcript, no overlapping
  segments, nothing A wrote after B's claim.
- A cut off from the store for 30 s mid-stream: the stream goes on without a word lost, and the whole recording
  reaches the store once the store is back.
- A cut off from the database for 10 s mid-stream: its finals wait for it (their audio is on disk), then every
  one is stored and heard once, in order, and the client was never interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
import websockets

from media import float_to_s16
from server.cli.live_client import load_pcm16k, stream_audio, ws_url
from tests.cluster_support import Cluster, Listener, new_transcript
from tests.conftest import AUDIO
from tests.db_support import PgDatabases, fetch_rows
from tests.fault_invariants import assert_invariants
from tests.fault_proxy import FaultProxy
from tests.redis_support import RedisProcess
from tests.s3_support import MotoServer

pytest_plugins = ("tests.db_support", "tests.s3_support", "tests.redis_support")
pytestmark = pytest.mark.faults

LEASE_S = 4.0
GRACE_S = 3.0
PART_S = 2.0
LONG = "single/librivox_shakespeare_sonnet_002.wav"  # 53 s


@pytest.fixture(scope="module")
async def cluster_db(pg_databases: PgDatabases) -> str:
    return await pg_databases.create()


@pytest.fixture(scope="module")
def proxies(module_redis: RedisProcess, s3_server: MotoServer, cluster_db: str) -> Iterator[dict[str, FaultProxy]]:
    made = {name: FaultProxy(*_host_port(url)).start()
            for name, url in (("redis", module_redis.url), ("s3", s3_server.endpoint), ("db", cluster_db))}
    yield made
    for proxy in made.values():
        proxy.close()


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_db: str, s3_server: MotoServer,
                  module_redis: RedisProcess, proxies: dict[str, FaultProxy]) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("faults"), cluster_db, module_redis.url, s3_server,
                s3_server.make_bucket())
    db = urlsplit(cluster_db)
    userinfo = db.netloc.rpartition("@")[0]
    address = f"127.0.0.1:{proxies['db'].port}"
    through_proxy = db._replace(netloc=f"{userinfo}@{address}" if userinfo else address).geturl()
    a = c.live_node("a", LEASE_S, GRACE_S, VOXLANE_LIVE_PART_SECONDS=str(PART_S),
                    VOXLANE_REDIS_URL=proxies["redis"].url("redis"), VOXLANE_S3_ENDPOINT_URL=proxies["s3"].url("http"),
                    VOXLANE_DATABASE_URL=through_proxy)
    b = c.live_node("b", LEASE_S, GRACE_S, VOXLANE_LIVE_PART_SECONDS=str(PART_S))
    for n in (a, b):
        n.wait_ready()
    yield c
    c.close()


async def segment_rows(cluster: Cluster, tid: str) -> list[tuple]:
    return await fetch_rows(cluster.database_url, 'SELECT id, start, "end" FROM segments WHERE transcript_id = :t'
                            " ORDER BY start", t=tid)


def no_overlap(rows: list[tuple]) -> None:
    pairs = zip(rows, rows[1:], strict=False)
    assert all(later[1] >= earlier[2] - 0.05 for earlier, later in pairs), f"overlapping segments: {rows}"


class Publisher:
    """A client streaming a file at real time over the native protocol, keeping what it was told and how far
    it got; a close from the server ends it."""

    def __init__(self, base: str, tid: str, pcm: bytes) -> None:
        self.base, self.tid, self.pcm = base, tid, pcm
        self.received: list[dict] = []
        self.sent = 0
        self.close_code: int | None = None
        self.task: asyncio.Task | None = None

    def start(self) -> Publisher:
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        async with websockets.connect(ws_url(self.base, self.tid), max_size=None) as ws:
            finished = asyncio.Event()  # the stream's own "completed", after its stop

            async def read() -> None:
                with contextlib.suppress(websockets.ConnectionClosed):
                    async for raw in ws:
                        message = json.loads(raw)
                        self.received.append(message)
                        if message["type"] == "status" and message["data"]["status"] == "completed" \
                                and message["data"].get("message") == "stream finished":
                            finished.set()
                finished.set()  # the server closed the connection

            reader = asyncio.create_task(read())
            await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}}))
            started = time.monotonic()
            with contextlib.suppress(websockets.ConnectionClosed):
                for i in range(0, len(self.pcm), 3200):
                    await asyncio.sleep(max(0.0, started + i / 32000 - time.monotonic()))
                    await ws.send(self.pcm[i:i + 3200])
                    self.sent = i + 3200
                await ws.send(json.dumps({"action": "stop"}))
            await asyncio.wait_for(finished.wait(), 60)
            await ws.close()
            await asyncio.wait_for(reader, 10)
            self.close_code = ws.close_code

    def errors(self) -> list[str]:
        return [m["data"]["code"] for m in self.received if m["type"] == "error"]


async def test_a_node_cut_off_from_redis_is_fenced_out_and_its_client_goes_on_elsewhere(
        cluster: Cluster, proxies: dict[str, FaultProxy]):
    a, b = cluster.named("a"), cluster.named("b")
    tid = await new_transcript(b.url, "redis cut")
    on_b = await Listener(b.url, tid).start()
    audio = load_pcm16k(AUDIO / LONG)
    pub = Publisher(a.url, tid, float_to_s16(audio)).start()
    await on_b.until(lambda s: len(s.finals()) >= 1, 60, "a final reaches node B")
    with proxies["redis"].cut_off():
        assert pub.task is not None
        await asyncio.wait_for(pub.task, LEASE_S + GRACE_S + 60)  # A streams on until its write is refused
    assert pub.errors() == ["TRANSCRIPT_MOVED"] and pub.close_code == 1012, (pub.errors(), pub.close_code)
    [(status, fence)] = await fetch_rows(cluster.database_url, "SELECT status, live_fence FROM transcripts"
                                         " WHERE id = :t", t=tid)
    assert (status, fence) == ("completed", 2), "B's sweep finished it once"
    swept = await segment_rows(cluster, tid)
    rest = audio[pub.sent // 2:]
    rec = await stream_audio(b.url, rest, transcript_id=tid, speed=3.0, settle_s=120)
    assert rec.completed is not None and not [m for m in rec.received if m.type == "error"]
    rows = await segment_rows(cluster, tid)
    assert rows[:len(swept)] == swept, "what was stored before stays, and the new stream comes after it"
    no_overlap(rows)
    await assert_invariants(cluster.database_url, [tid], one_timeline=True)
    await on_b.stop()


async def test_a_node_cut_off_from_the_store_mid_stream_loses_nothing(cluster: Cluster,
                                                                       proxies: dict[str, FaultProxy]):
    a = cluster.named("a")
    tid = await new_transcript(a.url, "store cut")
    audio = load_pcm16k(AUDIO / LONG)[:16000 * 45]
    pub = Publisher(a.url, tid, float_to_s16(audio)).start()
    await asyncio.sleep(PART_S * 2)
    with proxies["s3"].cut_off():
        await asyncio.sleep(30)  # the store is away for 30 s: checkpoints wait meanwhile; the stream goes on
        assert pub.task is not None and not pub.task.done()
    assert pub.task is not None
    await asyncio.wait_for(pub.task, 120)
    assert pub.errors() == [] and pub.close_code == 1000, (pub.errors(), pub.close_code)
    key = f"{tid}/recording.wav"
    for _ in range(200):  # published after the stream's end, once its last finals are out
        if key in cluster.s3.objects(cluster.bucket):
            break
        await asyncio.sleep(0.1)
    objects = {k: v for k, v in cluster.s3.objects(cluster.bucket).items() if k.startswith(f"{tid}/")}
    assert objects == {key: 44 + len(audio) * 2}, objects
    [(status, duration)] = await fetch_rows(cluster.database_url, "SELECT status, duration FROM transcripts"
                                            " WHERE id = :t", t=tid)
    assert status == "completed" and abs(duration - len(audio) / 16000) < 0.05
    await assert_invariants(cluster.database_url, [tid], one_timeline=True)


async def test_a_node_cut_off_from_the_database_mid_stream_stores_every_final_once_it_is_back(
        cluster: Cluster, proxies: dict[str, FaultProxy]):
    """Its finals wait for the database (their audio is on disk) and are stored, and heard, once it is back: the
    client is not interrupted, and every final it heard is stored once."""
    a, b = cluster.named("a"), cluster.named("b")
    tid = await new_transcript(b.url, "database cut")
    on_b = await Listener(b.url, tid).start()
    audio = load_pcm16k(AUDIO / LONG)[:16000 * 30]
    pub = Publisher(a.url, tid, float_to_s16(audio)).start()
    await on_b.until(lambda s: len(s.finals()) >= 1, 60, "a final reaches node B")
    with proxies["db"].cut_off():
        await asyncio.sleep(10)
        assert pub.task is not None and not pub.task.done()
    assert pub.task is not None
    await asyncio.wait_for(pub.task, 180)
    assert pub.errors() == [] and pub.close_code == 1000, (pub.errors(), pub.close_code)
    heard = [m["data"]["segment_id"] for m in pub.received if m["type"] == "transcription"
             and m["data"]["is_final"] and m["data"]["text"]]
    rows = await segment_rows(cluster, tid)
    assert [r[0] for r in rows] == heard, "every final heard is stored, once, in order"
    no_overlap(rows)
    await on_b.until(lambda s: "completed" in s.statuses(), 30, "B hears the end")
    assert [f["segment_id"] for f in on_b.finals()] == heard
    [(status, duration)] = await fetch_rows(cluster.database_url, "SELECT status, duration FROM transcripts"
                                            " WHERE id = :t", t=tid)
    assert status == "completed" and abs(duration - len(audio) / 16000) < 0.05
    await assert_invariants(cluster.database_url, [tid], one_timeline=True)
    await on_b.stop()
