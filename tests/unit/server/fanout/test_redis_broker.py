"""Redis fan-out between two nodes: two hubs in this process, each with its own Redis client and broker, sharing
one real Redis (a private ``redis-server``) and one store, on both databases.

What a subscriber on either node hears: everything published on node A, in A's order; a late joiner on B gets
the stored finals, the status, then live messages with nothing missing or doubled; a Redis killed and restarted
mid-stream interrupts nothing on A and costs B no final; the status comes from Redis; streams expire once their
transcript is done. The embedded broker's behaviour is pinned at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from protocol import Status, Transcription, envelope
from protocol.messages import _Body
from server import redis_client
from server.fanout import LocalBroker
from server.fanout.redis import RedisBroker
from server.fanout.redis_keys import status_key, stream_key
from server.pipeline.hub import Hub, Subscriber
from server.pipeline.transcripts import transcript_status
from server.storage import Store, open_store

if TYPE_CHECKING:
    from tests.redis_support import RedisProcess

pytest_plugins = ("tests.db_support", "tests.redis_support")


@dataclass
class Node:
    client: Any
    broker: RedisBroker
    hub: Hub


@pytest.fixture
async def store(database_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(database_url, tmp_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@contextlib.asynccontextmanager
async def nodes(url: str, store: Store, **options: Any) -> AsyncIterator[tuple[Node, Node]]:
    made: list[Node] = []
    try:
        for name in ("a", "b"):
            client = redis_client.connect(url)
            broker = RedisBroker(client, f"node-{name}", **options)
            made.append(Node(client, broker, Hub(store, broker)))
        yield made[0], made[1]
    finally:
        for node in made:
            await node.broker.close()
            await node.client.aclose()


async def new_transcript(store: Store) -> str:
    return (await store.create_transcript(name="fan-out"))["id"]


def partial(i: int, n: int = 1) -> Transcription:
    return Transcription(text=f"words {i} " * n, confidence=0.9, segment_id=f"seg{i:04d}", is_final=False,
                         start=float(i), end=i + 0.5)


def final(i: int) -> Transcription:
    return Transcription(text=f"words {i}", confidence=0.9, segment_id=f"seg{i:04d}", is_final=True,
                         start=float(i), end=i + 0.9)


def progress(i: int) -> Status:
    return Status(status="processing", stage="transcription", message=f"after {i}")


async def publish_segments(hub: Hub, tid: str, numbers: range, pause: float = 0.0) -> None:
    """Each segment as a live stream sends it: a partial, its final, a status."""
    for i in numbers:
        for body in (partial(i), final(i), progress(i)):
            await hub.publish(tid, body)
        if pause:
            await asyncio.sleep(pause)


async def take(sub: Subscriber, until: Any, within: float = 15.0) -> list[dict[str, Any]]:
    """Messages off a subscriber's queue until ``until(message)`` holds (that one included)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while True:
        msg = await asyncio.wait_for(sub.queue.get(), max(0.01, deadline - time.monotonic()))
        assert msg is not None, "the subscriber was closed"
        got.append(msg)
        if until(msg):
            return got


def completed(msg: dict[str, Any]) -> bool:
    return msg["type"] == "status" and msg["data"]["status"] == "completed"


def final_ids(messages: list[dict[str, Any]]) -> list[str]:
    return [m["data"]["segment_id"] for m in messages if m["type"] == "transcription" and m["data"]["is_final"]]


async def test_what_node_a_publishes_reaches_both_nodes_in_the_same_order(redis_url: str, store: Store):
    tid = await new_transcript(store)
    async with nodes(redis_url, store) as (a, b):
        on_a, on_b = await a.hub.subscribe(tid), await b.hub.subscribe(tid)
        sent: list[_Body] = []
        for i in range(60):
            sent += [partial(i, 1), partial(i, 2), final(i), progress(i)]
        sent.append(Status(status="completed", stage="transcription", message="done"))
        for body in sent:
            await a.hub.publish(tid, body)
        expected = [envelope(body) for body in sent]
        assert await take(on_a, completed, 1) == expected  # A's own are delivered at once, not through Redis
        assert await take(on_b, completed) == expected
        assert on_b.queue.empty()
        assert [r["id"] for r in await store.get_segments(tid)] == [f"seg{i:04d}" for i in range(60)]


async def test_finals_a_dying_node_stored_but_never_published_reach_subscribers_before_the_end(
        redis_url: str, store: Store):
    """Node A stored its last finals and died before its broker sent them; node B's sweep then finishes the
    transcript. B's subscriber (and A's, had A lived) hears every stored final it missed, in order, and then
    the end: none missing, none twice, and no piece of one it heard whole."""
    tid = await new_transcript(store)
    async with nodes(redis_url, store) as (a, b):
        on_b = await b.hub.subscribe(tid)
        await publish_segments(a.hub, tid, range(3))
        for i in (3, 4):  # stored, still queued for the broker when A died
            assert await a.hub.store_final(tid, final(i))
        # and a piece the end-of-stream speaker pass cut from a final B's subscriber heard whole: not news
        assert await a.hub.store_final(tid, final(2).model_copy(update={"segment_id": "seg0002-2", "start": 2.5}))
        await b.hub.publish(tid, Status(status="completed", stage="transcription", progress=100.0,
                                        message="finished from what was stored"))
        got = await take(on_b, completed)
        assert final_ids(got) == [f"seg{i:04d}" for i in range(5)]
        assert completed(got[-1])


async def test_a_late_joiner_on_node_b_gets_stored_finals_then_the_status_then_live_messages(redis_url: str,
                                                                                               store: Store):
    """B joins while A publishes, as the WebSocket route does: subscribe (the read position), stored finals,
    status, then the queue, skipping finals it already sent. Every final once, in order; the statuses follow on
    from the one it was told, none missed and none twice."""
    tid = await new_transcript(store)
    count = 120
    async with nodes(redis_url, store) as (a, b):
        publisher = asyncio.create_task(publish_segments(a.hub, tid, range(count), pause=0.002))
        await asyncio.sleep(0.08)
        sub = await b.hub.subscribe(tid)
        stored = [row["id"] for row in await store.get_segments(tid)]
        told = b.hub.current_status(tid, sub)
        await publisher
        await a.hub.publish(tid, Status(status="completed", stage="transcription", message="after 120"))
        live = await take(sub, completed)
    assert 0 < len(stored) < count and told is not None, "B joined mid-stream, after a status"
    sent = list(stored)
    for seg in final_ids(live):
        if seg not in stored:
            sent.append(seg)
    assert sent == [f"seg{i:04d}" for i in range(count)]
    assert len(final_ids(live)) == len(set(final_ids(live))), "the queue never holds one final twice"
    statuses = [int(told.message.split()[-1])] + [int(m["data"]["message"].split()[-1]) for m in live
                                                  if m["type"] == "status"]
    assert statuses == list(range(statuses[0], count + 1)), "the status told, then each later one once"


async def test_the_status_is_read_from_redis_and_transcript_status_uses_it(redis_url: str, store: Store):
    tid = await new_transcript(store)
    live = Status(status="processing", stage="live", message="live transcription started")
    async with nodes(redis_url, store) as (a, b):
        await a.hub.publish(tid, live)
        assert await a.broker.appender.flush(5)
        assert json.loads(await a.client.get(status_key(tid))) == live.model_dump(mode="json")
        assert b.hub.current_status(tid) is None, "B holds nothing of A's until it subscribes"
        sub = await b.hub.subscribe(tid)
        assert b.hub.current_status(tid) == live
        node_b = SimpleNamespace(hub=b.hub, live=SimpleNamespace(find=lambda _tid: None))
        assert transcript_status(node_b, tid) == live  # type: ignore[arg-type]
        done = Status(status="completed", stage="transcription", message="transcript complete")
        await a.hub.publish(tid, done)
        await take(sub, completed)
        assert transcript_status(node_b, tid) == done  # type: ignore[arg-type]
        participant = Status(status="processing", message="p1 joined", participant_id="p1")
        await a.hub.publish(tid, participant)
        await take(sub, lambda m: m["data"].get("participant_id") == "p1")
        assert b.hub.current_status(tid) == done, "a participant's status is not the transcript's"
        b.hub.unsubscribe(sub)
        assert b.hub.current_status(tid) is None, "no longer read, so not kept to go stale"
        assert b.broker.reader.following() == []
        assert a.hub.current_status(tid) == done, "the publishing node keeps its own, as in-process"


async def test_a_stream_expires_once_its_transcript_is_done(redis_url: str, store: Store):
    tid, other = await new_transcript(store), await new_transcript(store)
    async with nodes(redis_url, store, done_ttl_s=1) as (a, _b):
        for t in (tid, other):
            await a.hub.publish(t, progress(0))
            await a.hub.publish(t, partial(0))
        await a.hub.publish(tid, Status(status="completed", message="p1 left", participant_id="p1"))
        assert await a.broker.appender.flush(5)
        assert await a.client.ttl(stream_key(tid)) > 3600, "live, or a participant done: the day-long expiry"
        await a.hub.publish(tid, Status(status="completed", stage="transcription", message="done"))
        await a.hub.publish(other, Status(status="failed", stage="transcription", message="broken"))
        assert await a.broker.appender.flush(5)
        for t in (tid, other):
            assert 0 < await a.client.pttl(stream_key(t)) <= 1000
            assert 0 < await a.client.pttl(status_key(t)) <= 1000
        await asyncio.sleep(1.3)
        assert await a.client.exists(stream_key(tid), status_key(tid), stream_key(other), status_key(other)) == 0
        await a.hub.publish(tid, progress(1))  # started again: a new run, no longer expiring soon
        assert await a.broker.appender.flush(5)
        assert await a.client.ttl(stream_key(tid)) > 3600


async def test_redis_killed_and_restarted_mid_stream(private_redis: RedisProcess, store: Store):
    """A's subscriber hears everything at once throughout; publishing never raises or waits; B's subscriber
    gets every final once, in order (those it missed from the store), and the end of the stream."""
    tid = await new_transcript(store)
    async with nodes(private_redis.url, store) as (a, b):
        on_a, on_b = await a.hub.subscribe(tid), await b.hub.subscribe(tid)
        await publish_segments(a.hub, tid, range(0, 20), pause=0.005)
        heard_b = await take(on_b, lambda m: m["type"] == "status" and m["data"]["message"] == "after 19")
        private_redis.kill()
        # publishing does not wait for Redis: it returns while Redis is still away (it comes back below only)
        await asyncio.wait_for(publish_segments(a.hub, tid, range(20, 40), pause=0.005), 10)
        heard_a = await take(on_a, lambda m: final_ids([m]) == ["seg0039"], within=10)
        assert final_ids(heard_a) == [f"seg{i:04d}" for i in range(40)]
        for _ in range(200):
            if a.broker.appender.waiting() == 60:
                break
            await asyncio.sleep(0.05)
        assert a.broker.appender.waiting() == 60, "kept, in order, for when Redis is back"
        private_redis.start()
        await publish_segments(a.hub, tid, range(40, 60), pause=0.005)
        await a.hub.publish(tid, Status(status="completed", stage="transcription", message="done"))
        heard_b += await take(on_b, completed, within=20)
        heard_a += await take(on_a, completed, within=10)
    everything = [f"seg{i:04d}" for i in range(60)]
    assert final_ids(heard_a) == everything
    assert final_ids(heard_b) == everything, "every final once, in order"
    closed: set[str] = set()
    for m in heard_b:
        if m["type"] == "transcription":
            assert m["data"]["segment_id"] not in closed, "nothing of a segment after its final"
            if m["data"]["is_final"]:
                closed.add(m["data"]["segment_id"])


async def test_a_subscriber_that_joins_while_redis_is_away_catches_up(private_redis: RedisProcess, store: Store):
    """No read position to be had: the subscriber is not held up for long, and once Redis answers it gets the
    finals it missed from the store and the status from Redis."""
    tid = await new_transcript(store)
    async with nodes(private_redis.url, store) as (a, b):
        await publish_segments(a.hub, tid, range(0, 1))
        assert await a.broker.appender.flush(5)
        private_redis.kill()
        sub = await asyncio.wait_for(b.hub.subscribe(tid), 10)  # not held until Redis is back (it never is before)
        assert sub.status is None
        await publish_segments(a.hub, tid, range(1, 3))
        private_redis.start()
        heard = await take(sub, lambda m: m["type"] == "status" and m["data"]["message"] == "after 2", within=20)
        await a.hub.publish(tid, Status(status="completed", stage="transcription", message="done"))
        heard += await take(sub, completed)
    assert final_ids(heard) == ["seg0000", "seg0001", "seg0002"]


async def test_the_buffer_while_redis_is_away_is_bounded(private_redis: RedisProcess, store: Store):
    tid = await new_transcript(store)
    async with nodes(private_redis.url, store, max_pending=10) as (a, b):
        on_b = await b.hub.subscribe(tid)
        await a.hub.publish(tid, progress(-1))
        await take(on_b, lambda m: m["type"] == "status")
        private_redis.kill()
        for i in range(30):
            await a.hub.publish(tid, final(i))
        assert a.broker.appender.waiting() <= 11, "10 kept, and one in a write attempt"
        private_redis.start()
        assert await a.broker.appender.flush(10)
        assert a.broker.appender.dropped in (19, 20), "30 published while away, the newest 10 (or 11) kept"
        await a.hub.publish(tid, Status(status="completed", stage="transcription", message="done"))
        heard = await take(on_b, completed, within=20)
    assert final_ids(heard) == [f"seg{i:04d}" for i in range(30)], "the dropped ones came from the store"


async def test_a_message_reaches_node_b_within_20_ms_of_node_a(redis_url: str, store: Store):
    """The hop's cost on this machine: a message paced like a live stream's, p95 of B's arrival after A's."""
    tid = await new_transcript(store)
    arrivals: dict[str, dict[int, float]] = {"a": {}, "b": {}}
    async with nodes(redis_url, store) as (a, b):
        subs = {"a": await a.hub.subscribe(tid), "b": await b.hub.subscribe(tid)}

        async def listen(name: str) -> None:
            while (msg := await subs[name].queue.get()) is not None:
                arrivals[name][int(msg["data"]["segment_id"][3:])] = time.perf_counter()
                if msg["data"]["segment_id"] == "seg0199":
                    return

        listeners = [asyncio.create_task(listen(n)) for n in ("a", "b")]
        for i in range(200):
            await a.hub.publish(tid, partial(i))
            await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(*listeners), 10)
    hops = [arrivals["b"][i] - arrivals["a"][i] for i in range(200)]
    assert float(np.percentile(hops, 95)) < 0.020, sorted(hops)[-10:]


async def test_the_embedded_broker_is_in_process_and_at_once(store: Store):
    """No Redis: a subscription is in place when subscribe returns (sync callers keep working), delivery is a
    call, and the status is the last one published here."""
    tid = await new_transcript(store)
    broker = LocalBroker()
    hub = Hub(store, broker)
    sub = hub.subscribe(tid)
    assert sub.joined is None and await sub is sub
    live = Status(status="processing", stage="live", message="live")
    await hub.publish(tid, live)
    await hub.publish(tid, final(0))
    assert sub.queue.get_nowait() == envelope(live)
    assert sub.queue.get_nowait()["data"]["segment_id"] == "seg0000"
    assert hub.current_status(tid) == live
    assert [r["id"] for r in await store.get_segments(tid)] == ["seg0000"]
    hub.unsubscribe(sub)
    hub.unsubscribe(sub)  # twice is harmless (a WebRTC peer's channel and connection both close)
    assert hub.subscriber_count(tid) == 0
    hub.forget(tid)
    assert hub.current_status(tid) is None
