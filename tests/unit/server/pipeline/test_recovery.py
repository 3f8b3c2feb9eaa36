"""Finishing what stopped nodes left ``live`` (server.pipeline.recovery), on both databases: every live
transcript is read, page after page, and one that cannot be finished does not hold up the others."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from server.pipeline import recovery
from server.storage import SqlStore
from tests.sweep_support import FailingFinish

pytest_plugins = ("tests.db_support",)


async def test_every_live_transcript_is_read_and_one_failure_holds_up_none(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqlStore(database_url)
    await store.open()
    try:
        live = sorted([(await store.create_transcript(status="live"))["id"] for _ in range(5)])
        await store.create_transcript(status="completed")
        pages = [page async for page in recovery.live_transcripts(store, page=2)]
        assert pages == [live[:2], live[2:4], live[4:]], "past the first page, in id order"

        finish = FailingFinish(live[1])
        monkeypatch.setattr(recovery, "finish_abandoned", finish)
        monkeypatch.setattr(recovery, "PAGE", 2)
        finished = await recovery.finish_all_abandoned(SimpleNamespace(store=store), lambda t: t == live[3])
        assert finish.tried == [live[0], live[1], live[2], live[4]], "this node's own stream is left alone"
        assert finished == 3
    finally:
        await store.close()
