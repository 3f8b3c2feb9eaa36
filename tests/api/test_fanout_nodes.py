"""Two API nodes on one Redis and one database, as behind a load balancer: a dashboard on node B follows a
transcript streamed to node A over the real WebSocket routes (real HTTP servers, real speech, a stand-in model).

B's subscriber hears what A's hears, in the same order; a late joiner on B gets the stored finals, the status
(from Redis: B has no publisher of its own), then the live messages, each final once; a Redis killed and
restarted mid-stream interrupts nothing on A and costs B no final.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import websockets

from server.app import create_app
from server.cli.live_client import Received, create_transcript, load_pcm16k, stream_audio, ws_url
from server.fanout.redis import RedisBroker
from server.settings import Settings
from tests.fake_backend import FakeBackend
from tests.rest_support import AUDIO, Api

if TYPE_CHECKING:
    from tests.redis_support import RedisProcess

pytest_plugins = ("tests.db_support", "tests.redis_support")

SPEECH = AUDIO / "single" / "librivox_sense_and_sensibility_ch01_5utt.wav"


@contextlib.asynccontextmanager
async def node(name: str, tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[str]:
    """One node: the whole app, served over real HTTP; yields its base URL. The nodes of one database share its
    audio store (server.storage.audio.identity): here, one data dir both see."""
    settings = Settings(data_dir=str(tmp_path / "shared"), database_url=database_url, redis_url=redis_url,
                        diarization="off", ping_interval=0, status_interval=1, max_audio_lead_seconds=0)
    app = create_app(settings, backend=FakeBackend())
    async with app.router.lifespan_context(app):
        assert isinstance(app.state.services.hub.broker, RedisBroker)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            api = Api(app=app, client=client, settings=settings, private=False)
            try:
                yield await api.serve()
            finally:
                await api.close_server()


class Listener:
    """A dashboard: one WebSocket subscribed to a transcript, every message recorded."""

    def __init__(self, base: str, tid: str) -> None:
        self.base, self.tid = base, tid
        self.received: list[Received] = []
        self._ws: Any = None
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Listener:
        self._ws = await websockets.connect(ws_url(self.base, self.tid), max_size=None)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._ws.close()

    async def _read(self) -> None:
        async for raw in self._ws:
            self.received.append(Received(time.monotonic(), json.loads(raw)))

    async def send(self, action: str) -> None:
        await self._ws.send(json.dumps({"action": action, "params": {}}))

    async def wait(self, pred: Callable[[dict[str, Any]], bool], within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not any(pred(r.msg) for r in self.received):
            assert time.monotonic() < deadline, f"not heard within {within} s: {[r.msg for r in self.received][-5:]}"
            await asyncio.sleep(0.02)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [r.msg for r in self.received]


def done(msg: dict[str, Any]) -> bool:
    return msg["type"] == "status" and msg["data"]["status"] == "completed" and msg["data"]["progress"] == 100.0


def is_final(msg: dict[str, Any]) -> bool:
    return msg["type"] == "transcription" and msg["data"]["is_final"]


def statuses_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "status"]


def finals(messages: list[dict[str, Any]]) -> list[str]:
    return [m["data"]["segment_id"] for m in messages if is_final(m)]


def said_after_final(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Transcription messages of a segment whose final came before them (a segment has one final and nothing
    after it)."""
    closed: set[str] = set()
    late = []
    for m in messages:
        if m["type"] != "transcription":
            continue
        if m["data"]["segment_id"] in closed:
            late.append(m)
        if m["data"]["is_final"]:
            closed.add(m["data"]["segment_id"])
    return late


@contextlib.asynccontextmanager
async def streaming_to_both(a: str, b: str, name: str, speed: float
                            ) -> AsyncIterator[tuple[str, Listener, Listener, asyncio.Task]]:
    """A transcript made on A, a subscriber on each node told its status, and a stream published on A that B
    has heard a final of: the transcript, the two subscribers and the publisher's task."""
    tid = await create_transcript(a, name)
    async with Listener(a, tid) as on_a, Listener(b, tid) as on_b:
        for listener in (on_a, on_b):
            await listener.wait(lambda m: m["type"] == "status")
        publisher = asyncio.create_task(stream_audio(a, load_pcm16k(SPEECH), transcript_id=tid, speed=speed,
                                                     settle_s=30))
        await on_b.wait(is_final)
        yield tid, on_a, on_b, publisher


async def test_a_dashboard_on_node_b_follows_a_stream_published_on_node_a(database_url: str, redis_url: str,
                                                                           tmp_path: Path):
    async with node("a", tmp_path, database_url, redis_url) as a, node("b", tmp_path, database_url, redis_url) as b:
        async with streaming_to_both(a, b, "two nodes", speed=3.0) as (tid, on_a, on_b, publisher):
            async with Listener(b, tid) as late:
                rec = await publisher
                for listener in (on_a, on_b, late):
                    await listener.wait(done)
                for listener in (on_a, on_b):  # the transcript's summary comes last, after its completion
                    await listener.wait(lambda m: m["type"] == "summary")
                statuses = len(statuses_of(late.messages))
                await late.send("get_status")  # answered by B from what Redis told it
                await late.wait(lambda _m: len(statuses_of(late.messages)) > statuses)
                assert statuses_of(late.messages)[-1]["data"]["status"] == "completed"
            async with Listener(b, tid) as after:  # after the end: the stored finals and the status from Redis
                await after.wait(lambda m: m["type"] == "status")
    published = [r.msg["data"]["segment_id"] for r in rec.transcriptions if r.msg["data"]["is_final"]]
    assert len(published) >= 3
    # one order for what A publishes. The summary is published by whichever node ran its job, and a node's own
    # messages reach its own subscribers at once, not through Redis (server/fanout/redis.py): B may hear a
    # summary it made before A's last status reaches it (seen once, on a loaded box), so it is compared apart
    said_a, said_b = ([m for m in listener.messages[1:] if m["type"] != "summary"] for listener in (on_a, on_b))
    assert said_b == said_a, "B hears what A hears, in A's order"
    summaries = [[m for m in listener.messages if m["type"] == "summary"] for listener in (on_a, on_b)]
    assert len(summaries[0]) == 1 and summaries[1] == summaries[0], "one summary, the same on both nodes"
    assert finals(on_b.messages) == published

    first_status = next(i for i, m in enumerate(late.messages) if m["type"] == "status")
    assert first_status > 0 and all(is_final(m) for m in late.messages[:first_status]), "stored finals first"
    assert late.messages[first_status]["data"]["status"] == "processing", \
        "a late joiner on B is told A's status through Redis (B itself has no publisher)"
    assert finals(late.messages) == published, "stored finals, then live ones: each once, in order"
    for listener in (on_a, on_b, late, after):
        assert said_after_final(listener.messages) == [], "no partial after its segment's final"
    assert statuses_of(after.messages)[0]["data"]["status"] == "completed"
    assert finals(after.messages) == published


async def test_node_b_catches_up_after_redis_restarts_mid_stream(database_url: str, private_redis: RedisProcess,
                                                                 tmp_path: Path):
    url = private_redis.url
    async with node("a", tmp_path, database_url, url) as a, node("b", tmp_path, database_url, url) as b:
        async with streaming_to_both(a, b, "redis restarts", speed=2.0) as (_, on_a, on_b, publisher):
            private_redis.kill()
            heard_a = len(finals(on_a.messages))
            await on_a.wait(lambda m: is_final(m) and len(finals(on_a.messages)) > heard_a, within=20)
            await asyncio.sleep(1.0)
            private_redis.start()
            rec = await publisher
            await on_a.wait(done)
            await on_b.wait(done, within=30)
    published = [r.msg["data"]["segment_id"] for r in rec.transcriptions if r.msg["data"]["is_final"]]
    assert finals(on_a.messages) == published, "A's subscriber heard everything while Redis was away"
    assert finals(on_b.messages) == published, "B's subscriber has every final once, in order"


@pytest.fixture(autouse=True)
def _audio_present() -> None:
    assert SPEECH.exists(), f"real speech missing at {SPEECH}"
