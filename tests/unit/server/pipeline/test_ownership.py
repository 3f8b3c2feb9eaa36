"""Live ownership across nodes (server.pipeline.ownership) on a real Redis: the dead-node sweep goes past an
orphan it cannot finish, and a stream's end never deletes the lease of the stream that took over from it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from server.storage import SqlStore
from tests.sweep_support import FailingFinish

pytest_plugins = ("tests.db_support", "tests.redis_support")


async def test_a_sweep_goes_past_an_orphan_it_cannot_finish_and_tries_it_again_soon(
        database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With Redis: one orphan whose finish fails is logged and its claim kept a few seconds (not 30), and the
    orphans after it in the same sweep are finished; a finished one's claim is dropped at once."""
    from server import redis_client
    from server.pipeline import ownership

    store = SqlStore(database_url)
    await store.open()
    redis = redis_client.connect(redis_url)
    try:
        live = sorted([(await store.create_transcript(status="live"))["id"] for _ in range(3)])
        finish = FailingFinish(live[0])
        monkeypatch.setattr(ownership, "finish_abandoned", finish)
        leases = ownership.make_leases(redis, "sweeper", 0.001, finisher=SimpleNamespace(store=store),
                                       streams=lambda t: False)
        assert isinstance(leases, ownership.RedisLeases) and leases._sweep is not None
        for _ in range(100):  # no sweep runs until Redis has been up a lease's length (whole seconds of uptime)
            if await leases.settled():
                break
            await asyncio.sleep(0.05)
        await leases._sweep()
        assert finish.tried == live, "past the one that failed"
        claim = await redis.pttl(f"voxlane:recovering:{live[0]}")
        assert 0 < claim <= ownership.FAILED_CLAIM_S * 1000
        assert await redis.exists(f"voxlane:recovering:{live[1]}") == 0, "finished: its claim dropped"
    finally:
        await redis.aclose()
        await store.close()


async def test_a_stream_that_ends_after_its_successor_took_over_leaves_it_the_lease(redis_url: str) -> None:
    """One node: a publisher came back while its idle stream finished, so the transcript's new stream holds the
    lease before the old one lets go. The old one's release must not delete it (another node's sweep would then
    finish a transcript still being streamed)."""
    from server import redis_client
    from server.pipeline.ownership import RedisLeases

    redis = redis_client.connect(redis_url)
    try:
        leases = RedisLeases(redis, "node-a", 5.0, sweep=None)
        await leases.acquire("t1")  # the idle stream
        await leases.acquire("t1")  # its successor, on this node
        await leases.release("t1")  # the idle stream's end
        assert await redis.get("voxlane:owner:t1") in (b"node-a", "node-a"), "the successor's lease stays"
        await leases.release("t1")
        assert await redis.exists("voxlane:owner:t1") == 0
    finally:
        await redis.aclose()
