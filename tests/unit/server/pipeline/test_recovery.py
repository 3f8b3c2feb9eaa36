"""Finishing what stopped nodes left ``live`` (server.pipeline.recovery), on both databases: every live
transcript is read, page after page, and one that cannot be finished does not hold up the others."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from server.pipeline import recovery
from server.storage import SqlStore

pytest_plugins = ("tests.db_support", "tests.redis_support")


async def test_every_live_transcript_is_read_and_one_failure_holds_up_none(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqlStore(database_url)
    await store.open()
    try:
        live = sorted([(await store.create_transcript(status="live"))["id"] for _ in range(5)])
        await store.create_transcript(status="completed")
        pages = [page async for page in recovery.live_transcripts(store, page=2)]
        assert pages == [live[:2], live[2:4], live[4:]], "past the first page, in id order"

        tried: list[str] = []

        async def finish(services: object, transcript_id: str) -> bool:
            tried.append(transcript_id)
            if transcript_id == live[1]:
                raise OSError("the store refused it")
            return True

        monkeypatch.setattr(recovery, "finish_abandoned", finish)
        monkeypatch.setattr(recovery, "PAGE", 2)
        finished = await recovery.finish_all_abandoned(SimpleNamespace(store=store), lambda t: t == live[3])
        assert tried == [live[0], live[1], live[2], live[4]], "this node's own stream is left alone"
        assert finished == 3
    finally:
        await store.close()


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
        tried: list[str] = []

        async def finish(services: object, transcript_id: str) -> bool:
            tried.append(transcript_id)
            if transcript_id == live[0]:
                raise OSError("the store refused it")
            return True

        monkeypatch.setattr(ownership, "finish_abandoned", finish)
        leases = ownership.make_leases(redis, "sweeper", 0.001, finisher=SimpleNamespace(store=store),
                                       streams=lambda t: False)
        assert isinstance(leases, ownership.RedisLeases) and leases._sweep is not None
        await leases._sweep()
        assert tried == live, "past the one that failed"
        claim = await redis.pttl(f"voxlane:recovering:{live[0]}")
        assert 0 < claim <= ownership.FAILED_CLAIM_S * 1000
        assert await redis.exists(f"voxlane:recovering:{live[1]}") == 0, "finished: its claim dropped"
    finally:
        await redis.aclose()
        await store.close()
