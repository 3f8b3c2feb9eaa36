"""The Store contract, run against SQLite and PostgreSQL alike: every method, its edge semantics, atomicity across
two engines on one database, and the migrations (fresh, pre-Alembic SQLite files, repeated, down and up)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text, update

from server.settings import Settings, SettingsError
from server.storage import SqlStore, StaleFence, TranscriptNotFound, open_store, utcnow
from server.storage.base import ANY
from server.storage.engine import async_url, make_engine
from server.storage.migrate import alembic_config, ours, upgrade
from server.storage.tables import conversations, metadata
from tests.db_support import opened_store

pytest_plugins = ("tests.db_support",)

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    async with opened_store(database_url) as s:
        yield s


@pytest.fixture
async def rival(database_url: str) -> AsyncIterator[SqlStore]:
    """A second store (its own engine and connections) on the same database."""
    async with opened_store(database_url) as s:
        yield s


# ------------------------------------------------------------ transcripts


async def test_transcript_defaults_and_times(store: SqlStore) -> None:
    t = await store.create_transcript()
    assert t["status"] == "created" and t["participants"] == [] and t["meta"] == {} and t["summary"] is None
    assert t["owner"] is None and t["source_language"] is None and t["duration"] is None
    assert ISO_MS.match(t["created_at"]) and t["created_at"] == t["updated_at"]
    assert t["name"] == f"Transcript {t['created_at'][:16].replace('T', ' ')}"
    assert abs(time.time() - _epoch(t["created_at"])) < 60
    assert await store.get_transcript(t["id"]) == t
    assert await store.get_transcript("nope") is None
    named = await store.create_transcript(name="Board", source_language="de", owner="ann", status="live")
    assert (named["name"], named["source_language"], named["owner"], named["status"]) == ("Board", "de", "ann", "live")


async def test_list_transcripts_order_pages_filters(store: SqlStore) -> None:
    made = [await store.create_transcript(name=f"t{i}", owner=("ann" if i % 2 else None),
                                          status="completed" if i < 2 else "created") for i in range(5)]
    rows, total = await store.list_transcripts()
    assert total == 5 and [r["id"] for r in rows] == [t["id"] for t in reversed(made)]  # newest first
    pages = [await store.list_transcripts(page=p, size=2) for p in (1, 2, 3, 4)]
    assert [len(rows) for rows, _ in pages] == [2, 2, 1, 0] and {total for _, total in pages} == {5}
    assert [r["id"] for rows, _ in pages for r in rows] == [t["id"] for t in reversed(made)]
    assert {r["name"] for r in (await store.list_transcripts(owner="ann"))[0]} == {"t1", "t3"}
    assert {r["name"] for r in (await store.list_transcripts(owner=None))[0]} == {"t0", "t2", "t4"}
    assert (await store.list_transcripts(owner=ANY))[1] == 5
    assert (await store.list_transcripts(owner="bob")) == ([], 0)
    rows, total = await store.list_transcripts(status="completed", owner=None)
    assert total == 1 and rows[0]["name"] == "t0"


async def test_search_ignores_case_and_takes_wildcards_literally(store: SqlStore) -> None:
    board = await store.create_transcript(name="Quarterly BOARD Meeting")
    percent = await store.create_transcript(name="50% done")
    under = await store.create_transcript(name="file_name")
    slash = await store.create_transcript(name=r"C:\temp")
    spoken = await store.create_transcript(name="untitled")
    await store.save_segment(spoken["id"], {"id": "s1", "text": "Der ÄRGER über Ölpreise", "start": 0, "end": 1})

    async def found(term: str) -> set[str]:
        rows, total = await store.list_transcripts(search=term)
        assert total == len(rows)
        return {r["id"] for r in rows}

    assert await found("board meeting") == {board["id"]}
    assert await found("quarterly") == {board["id"]}
    assert await found("%") == {percent["id"]} and await found("0% d") == {percent["id"]}
    assert await found("_") == {under["id"]} and await found("e_n") == {under["id"]}
    assert await found("\\") == {slash["id"]} and await found("c:\\T") == {slash["id"]}
    assert await found("ärger") == {spoken["id"]} and await found("ölPREISE") == {spoken["id"]}
    assert await found("nothing like it") == set()
    assert (await store.list_transcripts(search=""))[1] == 5  # no search: every transcript


async def test_update_transcript(store: SqlStore) -> None:
    t = await store.create_transcript(name="a")
    await asyncio.sleep(0.002)
    u = await store.update_transcript(t["id"], name="b", status="completed", duration=12.5,
                                      participants=[{"id": 1, "name": "Zoë 🎙"}], summary={"text": "ünïcode ✓"},
                                      meta={"nested": {"list": [1, 2.5, None, True]}, "ключ": "значение"})
    assert u is not None and (u["name"], u["status"], u["duration"]) == ("b", "completed", 12.5)
    assert u["participants"] == [{"id": 1, "name": "Zoë 🎙"}] and u["summary"] == {"text": "ünïcode ✓"}
    assert u["meta"] == {"nested": {"list": [1, 2.5, None, True]}, "ключ": "значение"}
    assert u["created_at"] == t["created_at"] and u["updated_at"] > t["updated_at"]
    assert await store.get_transcript(t["id"]) == u
    cleared = await store.update_transcript(t["id"], summary=None, source_language="en")
    assert cleared is not None and cleared["summary"] is None and cleared["source_language"] == "en"
    assert await store.update_transcript(t["id"]) == cleared
    assert await store.update_transcript("nope", name="x") is None
    with pytest.raises(ValueError, match="cannot update 'owner'"):
        await store.update_transcript(t["id"], owner="mallory")


async def test_merge_transcript_meta(store: SqlStore) -> None:
    t = await store.create_transcript()
    await store.update_transcript(t["id"], meta={"keep": 1, "drop": 2, "swap": "old"})
    merged = await store.merge_transcript_meta(t["id"], {"drop": None, "swap": "new", "add": {"x": [1]}, "gone": None})
    assert merged is not None and merged["meta"] == {"keep": 1, "swap": "new", "add": {"x": [1]}}
    assert merged["updated_at"] >= t["updated_at"] and await store.get_transcript(t["id"]) == merged
    assert await store.merge_transcript_meta("nope", {"a": 1}) is None


async def test_concurrent_meta_merges_all_survive(store: SqlStore, rival: SqlStore) -> None:
    t = await store.create_transcript()
    await asyncio.gather(*(s.merge_transcript_meta(t["id"], {f"k{i}": i})
                           for i, s in enumerate([store, rival] * 10)))
    row = await store.get_transcript(t["id"])
    assert row is not None and row["meta"] == {f"k{i}": i for i in range(20)}


async def test_delete_transcript_cascades(store: SqlStore) -> None:
    t = await store.create_transcript()
    project = await store.create_project(title="p", language=None, portal={}, owner=None)
    await store.save_segment(t["id"], {"text": "x", "start": 0, "end": 1})
    await store.save_unredacted(t["id"], {"id": f"{t['id']}-s", "text": "x as spoken", "start": 0, "end": 1})
    chunk = await store.create_chunk(transcript_id=t["id"], kind="chunk", status="issued", index=0)
    await store.create_conversation(transcript_id=t["id"], project_id=project["id"], name=None, email=None, tags=[],
                                    source=None)
    assert await store.delete_transcript(t["id"]) is True
    assert await store.get_segments(t["id"]) == [] and await store.get_chunk(chunk["id"]) is None
    assert await store.get_unredacted(t["id"]) == ([], 0)
    assert await store.get_conversation(t["id"]) is None and await store.get_project(project["id"]) is not None
    assert await store.delete_transcript(t["id"]) is False


# ------------------------------------------------------------ segments


async def test_segments(store: SqlStore) -> None:
    t = await store.create_transcript()
    await store.save_segment(t["id"], {"id": "b", "text": "second", "start": 2.0, "end": 3.0, "speaker": "S1",
                                       "participant_id": "7", "confidence": 0.5,
                                       "words": [{"word": "naïve", "start": 2.0, "end": 2.5}]})
    await store.save_segment(t["id"], {"id": "a", "text": "first", "start": 0.5, "end": 1.0})
    await store.save_segment(t["id"], {"id": "c", "text": "same start, longer", "start": 2.0, "end": 4.0})
    await store.save_segment(t["id"], {"id": "a", "text": "first, corrected", "start": 0.5, "end": 1.5})
    await store.save_segment(t["id"], {"text": "no id", "start": 9, "end": 10})
    segs = await store.get_segments(t["id"])
    assert [s["text"] for s in segs] == ["first, corrected", "second", "same start, longer", "no id"]
    assert segs[1] == {"id": "b", "text": "second", "speaker": "S1", "participant_id": "7", "start": 2.0,
                       "end": 3.0, "confidence": 0.5, "words": [{"word": "naïve", "start": 2.0, "end": 2.5}]}
    assert segs[0]["words"] == [] and segs[0]["speaker"] is None and len(segs[3]["id"]) == 32
    assert await store.delete_segments(t["id"]) == 4 and await store.get_segments(t["id"]) == []
    with pytest.raises(TranscriptNotFound):
        await store.save_segment("nope", {"text": "x", "start": 0, "end": 1})


# ------------------------------------------------------------ live fences


async def test_a_stale_fence_writes_nothing(store: SqlStore, rival: SqlStore) -> None:
    """A stream's writes carry the fence it started with; once another stream started (on another node: the
    rival engine), every one of them is refused whole and changes nothing."""
    t = await store.create_transcript()
    assert await store.take_live("nope") is None
    old = await store.take_live(t["id"])
    assert old is not None and (await store.get_transcript(t["id"]))["status"] == "live"
    await store.save_segment(t["id"], {"id": "a", "text": "mine", "start": 0, "end": 1}, fence=old)
    await store.update_transcript(t["id"], duration=1.0, fence=old)
    new = await rival.take_live(t["id"])
    assert new == old + 1
    before = await store.get_transcript(t["id"])
    stale_writes = [
        store.save_segment(t["id"], {"id": "b", "text": "late", "start": 1, "end": 2}, fence=old),
        store.save_segment(t["id"], {"id": "a", "text": "rewritten", "start": 0, "end": 1}, fence=old),
        store.save_unredacted(t["id"], {"id": "a", "text": "as read", "start": 0, "end": 1}, fence=old),
        store.update_transcript(t["id"], duration=9.0, fence=old),
        store.merge_transcript_meta(t["id"], {"late": True}, fence=old),
    ]
    for write in stale_writes:
        with pytest.raises(StaleFence):
            await write
    assert await store.transition_transcript(t["id"], ("live",), "completed", fence=old) is None
    assert await store.get_transcript(t["id"]) == before
    assert [s["text"] for s in await store.get_segments(t["id"])] == ["mine"]
    assert (await store.get_unredacted(t["id"]))[1] == 0
    assert await rival.live_fences([t["id"], "nope"]) == {t["id"]: new} and await rival.live_fences([]) == {}
    # the new stream writes on; a fenced write of a transcript that is gone is not a stale one
    await rival.save_segment(t["id"], {"id": "b", "text": "theirs", "start": 1, "end": 2}, fence=new)
    assert (await rival.transition_transcript(t["id"], ("live",), "completed", fence=new))["status"] == "completed"
    with pytest.raises(TranscriptNotFound):
        await store.save_segment("nope", {"text": "x", "start": 0, "end": 1}, fence=1)


async def test_a_claim_moves_the_fence_once(store: SqlStore, rival: SqlStore) -> None:
    """Two sweeps finishing one orphan at the fence they read: one completes it, and the stream that held it
    is refused from then on; a stream that started in between keeps it from both."""
    t = await store.create_transcript()
    fence = await store.take_live(t["id"])
    assert fence is not None
    done = await asyncio.gather(store.transition_transcript(t["id"], ("live",), "completed", fence=fence, claim=True),
                                rival.transition_transcript(t["id"], ("live",), "completed", fence=fence, claim=True))
    assert sum(r is not None for r in done) == 1
    with pytest.raises(StaleFence):
        await store.save_segment(t["id"], {"text": "late", "start": 0, "end": 1}, fence=fence)
    restarted = await store.take_live(t["id"])
    assert restarted == fence + 2
    assert await rival.transition_transcript(t["id"], ("live",), "completed", fence=fence + 1, claim=True) is None
    assert (await store.get_transcript(t["id"]))["status"] == "live"


async def test_a_claim_waits_for_a_fenced_write_in_flight(store: SqlStore, rival: SqlStore) -> None:
    """A stream's write that passed its fence check holds the transcript until it commits: a claim from another
    node waits for it, so no write of the old stream lands after the claim (PostgreSQL: the row's share lock;
    SQLite: its one writer)."""
    t = await store.create_transcript()
    fence = await store.take_live(t["id"])
    assert fence is not None
    async with store.transaction():
        await store.save_segment(t["id"], {"id": "a", "text": "in flight", "start": 0, "end": 1}, fence=fence)
        claim = asyncio.create_task(rival.transition_transcript(t["id"], ("live",), "completed", fence=fence,
                                                                claim=True))
        await asyncio.sleep(0.5)
        assert not claim.done(), "the claim went ahead of a write that had passed its fence"
    assert await claim is not None
    assert [s["id"] for s in await rival.get_segments(t["id"])] == ["a"]
    with pytest.raises(StaleFence):
        await store.save_segment(t["id"], {"id": "b", "text": "after", "start": 1, "end": 2}, fence=fence)


# ------------------------------------------------------------ audio items


async def test_chunk_create_read_and_uniques(store: SqlStore) -> None:
    t = await store.create_transcript()
    expires = time.time() + 3600.123456
    c = await store.create_chunk(transcript_id=t["id"], kind="chunk", status="issued", index=3, upload_key="k1",
                                 expires_at=expires, path="/a.wav", format="wav", size=10, duration=1.5,
                                 options={"language": "fr"})
    assert (c["index"], c["kind"], c["status"], c["upload_key"], c["size"], c["duration"]) == (3, "chunk", "issued",
                                                                                               "k1", 10, 1.5)
    assert isinstance(c["expires_at"], float) and abs(c["expires_at"] - expires) < 1e-5
    assert c["options"] == {"language": "fr"} and c["segments"] == [] and c["merged"] is False
    assert c["attempts"] == 0 and c["offset"] is None and c["progress"] is None and c["text"] is None
    assert ISO_MS.match(c["created_at"]) and "idx" not in c
    assert await store.get_chunk(c["id"]) == c and await store.get_chunk_by_key("k1") == c
    assert await store.get_chunk("nope") is None and await store.get_chunk_by_key("nope") is None
    with pytest.raises(ValueError):
        await store.create_chunk(transcript_id=t["id"], kind="chunk", status="issued", index=4, upload_key="k1")
    with pytest.raises(ValueError):
        await store.create_chunk(transcript_id=t["id"], kind="chunk", status="issued", index=3)
    # the one-per-position rule is for kiosk chunks only: uploads and jobs share index 0
    for kind in ("upload", "upload", "job"):
        await store.create_chunk(transcript_id=t["id"], kind=kind, status="uploaded", index=3)
    with pytest.raises(TranscriptNotFound):
        await store.create_chunk(transcript_id="nope", kind="chunk", status="issued")
    no_expiry = await store.create_chunk(transcript_id=t["id"], kind="job", status="uploaded")
    assert no_expiry["expires_at"] is None and no_expiry["options"] == {} and no_expiry["upload_key"] is None


async def test_list_chunks_and_positions(store: SqlStore) -> None:
    mine = await store.create_transcript(owner="ann")
    orphan = await store.create_transcript(owner=None)
    c2 = await store.create_chunk(transcript_id=mine["id"], kind="chunk", status="transcribed", index=2)
    c0 = await store.create_chunk(transcript_id=mine["id"], kind="chunk", status="issued", index=0)
    c1 = await store.create_chunk(transcript_id=mine["id"], kind="chunk", status="failed", index=1)
    up = await store.create_chunk(transcript_id=orphan["id"], kind="upload", status="uploaded")
    ids = lambda rows: [r["id"] for r in rows]  # noqa: E731
    assert ids(await store.list_chunks(transcript_id=mine["id"])) == [c0["id"], c1["id"], c2["id"]]
    assert ids(await store.list_chunks()) == [up["id"], c1["id"], c0["id"], c2["id"]]  # newest first
    assert ids(await store.list_chunks(limit=2)) == [up["id"], c1["id"]]
    assert ids(await store.list_chunks(kind="upload")) == [up["id"]]
    assert ids(await store.list_chunks(statuses=("issued", "failed"))) == [c1["id"], c0["id"]]
    assert ids(await store.list_chunks(statuses=())) == ids(await store.list_chunks())
    assert ids(await store.list_chunks(owner="ann", transcript_id=mine["id"], kind="chunk", limit=1)) == [c0["id"]]
    assert ids(await store.list_chunks(owner=None)) == [up["id"]]
    assert await store.list_chunks(owner="bob") == []
    assert await store.last_chunk_index(mine["id"], "chunk") == 2
    assert await store.last_chunk_index(mine["id"], "upload") is None
    assert (await store.get_chunk_at(mine["id"], "chunk", 1) or {}).get("id") == c1["id"]
    assert await store.get_chunk_at(mine["id"], "chunk", 9) is None


async def test_update_transition_delete_chunk(store: SqlStore) -> None:
    t = await store.create_transcript()
    c = await store.create_chunk(transcript_id=t["id"], kind="chunk", status="issued")
    u = await store.update_chunk(c["id"], status="received", merged=1, offset=1.25, segments=[{"text": "é"}],
                                 text="é", attempts=2, progress=0.5, error=None, expires_at=None)
    assert u is not None and u["merged"] is True and u["segments"] == [{"text": "é"}] and u["expires_at"] is None
    assert (u["status"], u["offset"], u["attempts"], u["progress"]) == ("received", 1.25, 2, 0.5)
    assert u["updated_at"] >= c["updated_at"] and u["created_at"] == c["created_at"]
    assert (await store.update_chunk(c["id"], merged=False) or {}).get("merged") is False
    assert await store.update_chunk("nope", status="failed") is None
    with pytest.raises(ValueError, match="cannot update 'kind'"):
        await store.update_chunk(c["id"], kind="job")
    won = await store.transition_chunk(c["id"], ("received", "uploaded"), "processing", attempts=3)
    assert won is not None and won["status"] == "processing" and won["attempts"] == 3
    assert await store.transition_chunk(c["id"], ("received", "uploaded"), "processing") is None
    assert await store.transition_chunk(c["id"], (), "failed") is None
    assert await store.transition_chunk("nope", ("processing",), "failed") is None
    with pytest.raises(ValueError):
        await store.transition_chunk(c["id"], ("processing",), "failed", index=4)
    assert await store.delete_chunk(c["id"]) is True and await store.delete_chunk(c["id"]) is False


async def test_two_engines_race_on_compare_and_set(store: SqlStore, rival: SqlStore) -> None:
    t = await store.create_transcript()
    project = await store.create_project(title="p", language=None, portal={}, owner=None)
    hook = await store.create_webhook(project_id=project["id"], url="http://h", events=["*"], secret="s",
                                      description=None)
    for round_ in range(50):
        c = await store.create_chunk(transcript_id=t["id"], kind="chunk", status="uploaded", index=round_)
        results = await asyncio.gather(store.transition_chunk(c["id"], ("uploaded",), "processing"),
                                       rival.transition_chunk(c["id"], ("uploaded",), "processing"))
        assert sum(r is not None for r in results) == 1, (round_, results)
        d = await store.create_delivery(webhook_id=hook["id"], event="e", event_id=f"ev{round_}", payload="{}",
                                        next_attempt_at=time.time())
        assert d is not None
        claims = await asyncio.gather(store.claim_delivery(d["id"], 0, time.time() + 60),
                                      rival.claim_delivery(d["id"], 0, time.time() + 60))
        assert sum(r is not None for r in claims) == 1, (round_, claims)
    assert {c["status"] for c in await rival.list_chunks(transcript_id=t["id"])} == {"processing"}


async def test_concurrent_writers_never_see_a_locked_database(store: SqlStore, rival: SqlStore) -> None:
    made = await asyncio.gather(*(s.create_transcript(name=f"n{i}") for i, s in enumerate([store, rival] * 20)))
    await asyncio.gather(*(s.save_segment(t["id"], {"text": "x", "start": 0, "end": 1})
                           for t, s in zip(made, [rival, store] * 20, strict=True)))
    assert (await store.list_transcripts(size=100))[1] == 40


# ------------------------------------------------------------ projects and conversations


async def test_projects(store: SqlStore) -> None:
    a = await store.create_project(title="A", language="en", portal={"welcome": "Grüß Gott"}, owner="ann")
    b = await store.create_project(title="B", language=None, portal={}, owner=None)
    assert a["portal"] == {"welcome": "Grüß Gott"} and ISO_MS.match(a["created_at"])
    assert await store.get_project(a["id"]) == a and await store.get_project("nope") is None
    rows, total = await store.list_projects()
    assert total == 2 and [r["id"] for r in rows] == [b["id"], a["id"]]
    assert [r["id"] for r in (await store.list_projects(owner="ann"))[0]] == [a["id"]]
    assert [r["id"] for r in (await store.list_projects(owner=None))[0]] == [b["id"]]
    assert await store.list_projects(page=2, size=1) == ([a], 2)
    u = await store.update_project(a["id"], title="A2", portal={"theme": "dark"}, language=None)
    assert u is not None and (u["title"], u["portal"], u["language"]) == ("A2", {"theme": "dark"}, None)
    assert u["updated_at"] >= a["updated_at"] and await store.update_project("nope", title="x") is None
    with pytest.raises(ValueError):
        await store.update_project(a["id"], owner="bob")
    assert await store.delete_project(b["id"]) is True and await store.delete_project(b["id"]) is False


async def test_conversations(store: SqlStore) -> None:
    project = await store.create_project(title="p", language=None, portal={}, owner=None)
    made, transcript_ids = [], []
    for i in range(3):
        t = await store.create_transcript(name=f"c{i}")
        transcript_ids.append(t["id"])
        made.append(await store.create_conversation(transcript_id=t["id"], project_id=project["id"], name=f"N{i}",
                                                    email=None, tags=["a", "ü"], source="kiosk"))
    c = made[0]
    assert (c["id"], c["project_id"], c["name"], c["email"], c["tags"], c["source"], c["finished_at"]) == (
        transcript_ids[0], project["id"], "N0", None, ["a", "ü"], "kiosk", None)
    assert ISO_MS.match(c["created_at"]) and await store.get_conversation(c["id"]) == c
    assert await store.get_conversation("nope") is None
    assert [r["id"] for r in await store.list_conversations(project["id"])] == [m["id"] for m in made]
    assert [r["id"] for r in await store.list_conversations(project["id"], offset=1, limit=1)] == [made[1]["id"]]
    assert await store.list_conversations("other") == []
    finished_at = utcnow()
    done = await store.update_conversation(c["id"], finished_at=finished_at, tags=[], email="e@x")
    assert done is not None and done["finished_at"] == finished_at and done["tags"] == [] and done["email"] == "e@x"
    assert await store.update_conversation(c["id"]) == done
    assert await store.update_conversation("nope", name="x") is None
    with pytest.raises(ValueError):
        await store.update_conversation(c["id"], project_id="x")
    with pytest.raises(Exception):  # noqa: B017 - a conversation is the view of an existing transcript
        await store.create_conversation(transcript_id="nope", project_id=project["id"], name=None, email=None,
                                        tags=[], source=None)


async def test_open_and_unsettled_conversations(store: SqlStore) -> None:
    project = await store.create_project(title="p", language=None, portal={}, owner=None)

    async def conversation(created_at: str | None = None) -> dict[str, Any]:
        t = await store.create_transcript()
        c = await store.create_conversation(transcript_id=t["id"], project_id=project["id"], name=None, email=None,
                                            tags=[], source=None)
        if created_at:
            async with store.engine.begin() as conn:
                await conn.execute(update(conversations).where(conversations.c.id == c["id"])
                                   .values(created_at=created_at))
        return c

    since = utcnow()
    fresh = await conversation()
    abandoned = await conversation("2000-01-01T00:00:00.000Z")
    revived = await conversation("2000-01-01T00:00:00.000Z")
    await store.create_chunk(transcript_id=revived["id"], kind="chunk", status="issued")
    finished = await conversation()
    await store.update_conversation(finished["id"], finished_at=utcnow())
    assert await store.count_open_conversations(project["id"], since) == 2  # fresh and revived
    assert await store.count_open_conversations(project["id"], "1999-01-01T00:00:00.000Z") == 3
    assert await store.count_open_conversations(project["id"], "2999-01-01T00:00:00.000Z") == 0
    assert await store.count_open_conversations("other", since) == 0
    # exactly at the boundary counts (>=), in the ISO text callers pass
    assert await store.count_open_conversations(project["id"], fresh["created_at"]) >= 1
    assert [c["id"] for c in await store.list_unsettled_conversations()] == [finished["id"]]
    await store.update_transcript(finished["id"], status="completed")
    await store.update_conversation(abandoned["id"], finished_at=utcnow())
    assert [c["id"] for c in await store.list_unsettled_conversations()] == [abandoned["id"]]


# ------------------------------------------------------------ API keys and secrets


async def test_api_keys(store: SqlStore) -> None:
    k1 = await store.create_api_key(key_id="k1", key_hash="h1", user="ann", scopes=["transcripts:read"], name="n")
    k2 = await store.create_api_key(key_id="k2", key_hash="h2", user=None, scopes=[], name=None)
    assert "key_hash" not in k1 and k1["scopes"] == ["transcripts:read"] and ISO_MS.match(k1["created_at"])
    assert k1["last_used_at"] is None and k1["revoked_at"] is None
    full = await store.get_api_key("k1")
    assert full is not None and full["key_hash"] == "h1" and await store.get_api_key("nope") is None
    assert [k["id"] for k in await store.list_api_keys()] == ["k1", "k2"]
    assert all("key_hash" not in k for k in await store.list_api_keys())
    await store.touch_api_key("k2")
    touched = await store.get_api_key("k2")
    assert touched is not None and ISO_MS.match(touched["last_used_at"]) and k2["last_used_at"] is None
    await store.touch_api_key("nope")
    assert await store.revoke_api_key("k1") is True and await store.revoke_api_key("k1") is False
    assert await store.revoke_api_key("nope") is False
    revoked = await store.get_api_key("k1")
    assert revoked is not None and ISO_MS.match(revoked["revoked_at"])
    with pytest.raises(Exception):  # noqa: B017 - ids are unique
        await store.create_api_key(key_id="k1", key_hash="x", user=None, scopes=[], name=None)


async def test_secret_first_writer_wins(store: SqlStore, rival: SqlStore) -> None:
    assert await store.get_or_create_secret("jwt", "one") == "one"
    assert await rival.get_or_create_secret("jwt", "two") == "one"
    values = await asyncio.gather(*(s.get_or_create_secret("race", f"v{i}") for i, s in enumerate([store, rival] * 5)))
    assert len(set(values)) == 1


# ------------------------------------------------------------ webhooks and deliveries


async def test_webhooks_and_deliveries(store: SqlStore) -> None:
    project = await store.create_project(title="p", language=None, portal={}, owner=None)
    h1 = await store.create_webhook(project_id=project["id"], url="https://a", events=["transcript.completed"],
                                    secret="s1", description="ü")
    h2 = await store.create_webhook(project_id=project["id"], url="https://b", events=[], secret="s2",
                                    description=None)
    assert h1["events"] == ["transcript.completed"] and ISO_MS.match(h1["created_at"])
    assert await store.get_webhook(h1["id"]) == h1 and await store.get_webhook("nope") is None
    assert [h["id"] for h in await store.list_webhooks(project["id"])] == [h1["id"], h2["id"]]
    now = time.time()
    later = await store.create_delivery(webhook_id=h1["id"], event="e", event_id="ev1", payload='{"a": "ü"}',
                                        next_attempt_at=now + 10)
    sooner = await store.create_delivery(webhook_id=h1["id"], event="e", event_id="ev2", payload="{}",
                                         next_attempt_at=now)
    assert later is not None and sooner is not None
    assert later["status"] == "pending" and later["attempts"] == 0 and later["payload"] == '{"a": "ü"}'
    assert abs(later["next_attempt_at"] - (now + 10)) < 1e-5 and later["delivered_at"] is None
    assert await store.create_delivery(webhook_id=h1["id"], event="e", event_id="ev1", payload="{}",
                                       next_attempt_at=now) is None
    other = await store.create_delivery(webhook_id=h2["id"], event="e", event_id="ev1", payload="{}",
                                        next_attempt_at=now + 5)
    assert other is not None and await store.get_delivery(later["id"]) == later
    assert [d["id"] for d in await store.pending_deliveries()] == [sooner["id"], other["id"], later["id"]]
    assert [d["id"] for d in await store.pending_deliveries(limit=1)] == [sooner["id"]]
    rows, total = await store.list_deliveries(h1["id"])
    assert total == 2 and [d["id"] for d in rows] == [sooner["id"], later["id"]]  # newest first
    assert await store.list_deliveries(h1["id"], page=2, size=1) == ([later], 2)

    assert await store.claim_delivery(sooner["id"], 1, now + 60) is None  # wrong attempt count
    claimed = await store.claim_delivery(sooner["id"], 0, now + 60)
    assert claimed is not None and claimed["attempts"] == 1 and abs(claimed["next_attempt_at"] - (now + 60)) < 1e-5
    assert await store.claim_delivery(sooner["id"], 0, now + 60) is None
    delivered_at = utcnow()
    done = await store.update_delivery(sooner["id"], status="delivered", response_status=204, last_error=None,
                                       next_attempt_at=None, delivered_at=delivered_at)
    assert done is not None and (done["status"], done["response_status"]) == ("delivered", 204)
    assert done["next_attempt_at"] is None and done["delivered_at"] == delivered_at
    assert await store.claim_delivery(sooner["id"], 1, now + 60) is None  # no longer pending
    assert [d["id"] for d in (await store.list_deliveries(h1["id"], status="delivered"))[0]] == [sooner["id"]]
    assert await store.update_delivery("nope", status="failed") is None
    with pytest.raises(ValueError):
        await store.update_delivery(sooner["id"], payload="x")

    assert await store.delete_webhook(h2["id"]) is True and await store.get_delivery(other["id"]) is None
    assert await store.delete_webhook(h2["id"]) is False
    assert await store.delete_project(project["id"]) is True  # its endpoints and their logs go with it
    assert await store.get_webhook(h1["id"]) is None and await store.get_delivery(later["id"]) is None


# ------------------------------------------------------------ URLs, factory, settings


def test_urls_map_to_async_drivers(tmp_path: Path) -> None:
    assert str(async_url("sqlite:/var/x.db")) == "sqlite+aiosqlite:////var/x.db"
    assert async_url("sqlite:/var/x.db").database == "/var/x.db"
    assert async_url("sqlite:rel.db").database == "rel.db"
    assert async_url("sqlite:///rel.db").database == "rel.db"
    assert async_url("sqlite:////abs/x.db").database == "/abs/x.db"
    assert async_url("sqlite+aiosqlite:///x.db").drivername == "sqlite+aiosqlite"
    for url in ("postgresql://u:p@h:5/db", "postgres://u:p@h:5/db", "postgresql+asyncpg://u:p@h:5/db"):
        parsed = async_url(url)
        assert (parsed.drivername, parsed.host, parsed.port, parsed.database, parsed.password) == (
            "postgresql+asyncpg", "h", 5, "db", "p")
    assert dict(async_url("postgres://h/db?sslmode=require").query) == {"ssl": "require"}
    for bad in ("mysql://h/db", "postgresql+psycopg2://h/db", "redis://h", "sqlite:", "sqlite://", "nonsense",
                "postgresql://u:secret@h:port/db"):
        with pytest.raises(ValueError) as err:
            async_url(bad)
        assert "secret" not in str(err.value)
    store = open_store(None, tmp_path)
    assert isinstance(store, SqlStore) and async_url(store.url).database == str(tmp_path / "voxlane.db")
    assert open_store("postgres://h/db", tmp_path).url == "postgres://h/db"


def test_settings_accept_the_database_urls(tmp_path: Path) -> None:
    for url in ("sqlite:/x.db", "sqlite:///x.db", "sqlite+aiosqlite:///x.db", "postgresql://h/db", "postgres://h/db",
                "postgresql+asyncpg://u:p@h/db"):
        Settings(data_dir=str(tmp_path), database_url=url).validate()
    for url in ("mysql://u:hunter2@h/db", "http://x"):
        with pytest.raises(SettingsError, match="VOXLANE_DATABASE_URL") as err:
            Settings(data_dir=str(tmp_path), database_url=url).validate()
        assert "hunter2" not in str(err.value)


# ------------------------------------------------------------ migrations

# The CREATE script of the first SQLite store (server/storage/sqlite.py before migrations), verbatim: files it
# made carry no alembic_version table and must be adopted as revision 0001.
LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS transcripts (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
    source_language TEXT, owner TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, duration REAL,
    participants TEXT NOT NULL DEFAULT '[]', summary TEXT, meta TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS transcripts_created ON transcripts (created_at);
CREATE TABLE IF NOT EXISTS segments (id TEXT PRIMARY KEY,
    transcript_id TEXT NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE, text TEXT NOT NULL, speaker TEXT,
    participant_id TEXT, start REAL NOT NULL, "end" REAL NOT NULL, confidence REAL, words TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS segments_transcript ON segments (transcript_id, start);
CREATE TABLE IF NOT EXISTS chunks (id TEXT PRIMARY KEY,
    transcript_id TEXT NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE, kind TEXT NOT NULL,
    idx INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL, upload_key TEXT UNIQUE, expires_at REAL, path TEXT,
    format TEXT, size INTEGER, duration REAL, "offset" REAL, text TEXT, segments TEXT NOT NULL DEFAULT '[]',
    error TEXT, attempts INTEGER NOT NULL DEFAULT 0, merged INTEGER NOT NULL DEFAULT 0,
    options TEXT NOT NULL DEFAULT '{}', progress REAL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_transcript ON chunks (transcript_id, idx);
CREATE INDEX IF NOT EXISTS chunks_status ON chunks (status);
CREATE UNIQUE INDEX IF NOT EXISTS chunks_position ON chunks (transcript_id, idx) WHERE kind = 'chunk';
CREATE TABLE IF NOT EXISTS projects (id TEXT PRIMARY KEY, title TEXT NOT NULL, language TEXT,
    portal TEXT NOT NULL DEFAULT '{}', owner TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY REFERENCES transcripts(id) ON DELETE CASCADE,
    project_id TEXT NOT NULL, name TEXT, email TEXT, tags TEXT NOT NULL DEFAULT '[]', source TEXT,
    finished_at TEXT, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS conversations_project ON conversations (project_id);
CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, key_hash TEXT NOT NULL, user TEXT,
    scopes TEXT NOT NULL DEFAULT '[]', name TEXT, created_at TEXT NOT NULL, last_used_at TEXT, revoked_at TEXT);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE, url TEXT NOT NULL,
    events TEXT NOT NULL DEFAULT '[]', secret TEXT NOT NULL, description TEXT, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS webhooks_project ON webhooks (project_id);
CREATE TABLE IF NOT EXISTS webhook_deliveries (id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE, event TEXT NOT NULL,
    event_id TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL, last_error TEXT, response_status INTEGER, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, delivered_at TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS webhook_deliveries_event ON webhook_deliveries (webhook_id, event_id);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
"""
OLD, OLDER = "2026-01-02T03:04:05.678Z", "2025-12-31T23:59:59.999Z"


def _legacy_file(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(LEGACY_SCHEMA)
        db.execute("INSERT INTO transcripts (id, name, status, created_at, updated_at, meta, participants)"
                   " VALUES ('t1', 'Öld', 'completed', ?, ?, '{\"job\": {\"a\": 1}}', '[\"p\"]')", (OLD, OLD))
        db.execute("INSERT INTO transcripts (id, name, status, created_at, updated_at)"
                   " VALUES ('t0', 'older', 'created', ?, ?)", (OLDER, OLDER))
        db.execute("INSERT INTO segments (id, transcript_id, text, start, \"end\", words)"
                   " VALUES ('s1', 't1', 'hello', 0, 1, '[{\"word\": \"hello\"}]')")
        db.execute("INSERT INTO chunks (id, transcript_id, kind, idx, status, upload_key, expires_at, merged,"
                   " created_at, updated_at) VALUES ('c1', 't1', 'chunk', 0, 'issued', 'key', 1767323045.5, 1, ?, ?)",
                   (OLD, OLD))
        db.execute("INSERT INTO projects (id, title, created_at, updated_at) VALUES ('p1', 'P', ?, ?)", (OLD, OLD))
        db.execute("INSERT INTO conversations (id, project_id, created_at, finished_at) VALUES ('t1', 'p1', ?, ?)",
                   (OLD, OLD))
        db.execute("INSERT INTO api_keys (id, key_hash, created_at) VALUES ('k1', 'h', ?)", (OLD,))
        db.execute("INSERT INTO secrets (name, value) VALUES ('jwt', 'kept')")
        db.execute("INSERT INTO webhooks (id, project_id, url, secret, created_at) VALUES ('w1', 'p1', 'u', 's', ?)",
                   (OLD,))
        db.execute("INSERT INTO webhook_deliveries (id, webhook_id, event, event_id, payload, status,"
                   " next_attempt_at, created_at, updated_at) VALUES ('d1', 'w1', 'e', 'ev', '{}', 'pending',"
                   " 1767323045.25, ?, ?)", (OLD, OLD))
    db.close()


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def _on_connection(url: str, fn: Any) -> Any:
    """Run ``fn(sync_connection)`` in one committed transaction."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _schema_diff(connection: Connection) -> list[Any]:
    opts = {"compare_type": True, "include_name": ours}  # the job queue library's own tables are not voxlane's
    return compare_metadata(MigrationContext.configure(connection, opts=opts), metadata)


async def test_fresh_database_migrates_to_the_tables(empty_database_url: str) -> None:
    await upgrade(empty_database_url)
    assert await _on_connection(empty_database_url, _revision) == _head()
    assert await _on_connection(empty_database_url, _schema_diff) == []
    await upgrade(empty_database_url)  # again: nothing to do
    assert await _on_connection(empty_database_url, _revision) == _head()


async def test_legacy_sqlite_file_is_adopted_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _legacy_file(path)
    store = SqlStore(f"sqlite:{path}")  # the documented form of the first store's URL
    await store.open()
    try:
        t = await store.get_transcript("t1")
        assert t is not None and (t["created_at"], t["name"], t["meta"], t["participants"]) == (
            OLD, "Öld", {"job": {"a": 1}}, ["p"])
        assert [s["words"] for s in await store.get_segments("t1")] == [[{"word": "hello"}]]
        c = await store.get_chunk_by_key("key")
        assert c is not None and c["expires_at"] == 1767323045.5 and c["merged"] is True and c["created_at"] == OLD
        d = await store.get_delivery("d1")
        assert d is not None and d["next_attempt_at"] == 1767323045.25 and d["created_at"] == OLD
        conv = await store.get_conversation("t1")
        assert conv is not None and conv["finished_at"] == OLD
        assert await store.get_or_create_secret("jwt", "new") == "kept"
        assert (await store.get_api_key("k1") or {}).get("created_at") == OLD
        # old and new rows sort together
        new = await store.create_transcript(name="new")
        assert [r["id"] for r in (await store.list_transcripts())[0]] == [new["id"], "t1", "t0"]
        assert await store.count_open_conversations("p1", OLDER) == 0  # finished
        # the copied chunks table kept its constraints: position, key, cascade
        with pytest.raises(ValueError):
            await store.create_chunk(transcript_id="t1", kind="chunk", status="issued", index=0)
        with pytest.raises(ValueError):
            await store.create_chunk(transcript_id="t0", kind="upload", status="issued", upload_key="key")
        assert await store.delete_project("p1") and await store.get_delivery("d1") is None
        assert await store.delete_transcript("t1") and await store.get_chunk("c1") is None
    finally:
        await store.close()
    url = f"sqlite:///{path}"
    assert await _on_connection(url, _revision) == _head()
    # Left over from the first script's DDL, all equivalent in SQLite: REAL where the tables say FLOAT, nullable
    # TEXT primary keys, and inline ON DELETE clauses that reflection cannot read (the cascades above work).
    # No table, column or index is missing or extra, and no instant column has another type.
    for diff in await _on_connection(url, _schema_diff):
        kind, *rest = diff[0] if isinstance(diff, list) else diff
        assert kind in ("modify_nullable", "modify_type", "remove_fk", "add_fk"), diff
        if kind == "modify_type":
            assert rest[2] not in ("created_at", "updated_at", "expires_at", "next_attempt_at"), diff


async def test_downgrade_and_upgrade_keep_the_data(empty_database_url: str) -> None:
    url = empty_database_url
    store = SqlStore(url)
    await store.open()
    t = await store.create_transcript(name="kept")
    expires = time.time() + 60
    c = await store.create_chunk(transcript_id=t["id"], kind="upload", status="issued", expires_at=expires)
    await store.close()

    def down(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), "0001")

    await _on_connection(url, down)
    assert await _on_connection(url, _revision) == "0001"

    def legacy_values(connection: Connection) -> tuple[Any, ...]:
        row = connection.execute(text("SELECT created_at, expires_at FROM chunks")).one()
        return tuple(row)

    created_text, expires_float = await _on_connection(url, legacy_values)
    assert created_text == c["created_at"] and abs(float(expires_float) - expires) < 1e-3
    store = SqlStore(url)
    await store.open()
    try:
        again = await store.get_chunk(c["id"])
        assert again is not None and again["created_at"] == c["created_at"]
        assert abs(again["expires_at"] - expires) < 1e-3
    finally:
        await store.close()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def test_a_nul_character_in_client_text_is_kept_as_a_replacement_character(store: SqlStore) -> None:
    """PostgreSQL refuses U+0000 in text: a hostile name must not become a database error on either backend."""
    row = await store.create_transcript(name="a\x00b")
    assert row["name"] == "a\ufffdb"
    assert (await store.get_transcript(row["id"]))["name"] == "a\ufffdb"
    assert await store.get_transcript("no\x00such") is None
