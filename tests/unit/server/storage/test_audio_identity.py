"""The audio store a database's nodes share (server.storage.audio.identity), on both databases and both stores:
the first node names the store, a node on the same store passes, one on another store is refused with what to do,
two nodes starting at once on a new database both pass, and ``adopt`` moves the deployment to a new store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.cli import main
from server.storage import SqlStore
from server.storage.audio import AudioStore, LocalAudioStore
from server.storage.audio.identity import MARKER_KEY, NotTheSharedStore, check_shared_store
from server.storage.audio.s3 import S3AudioStore
from tests.db_support import opened_store
from tests.s3_support import MotoServer

pytest_plugins = ("tests.db_support", "tests.s3_support")


@pytest.fixture
async def rows(database_url: str) -> AsyncIterator[SqlStore]:
    async with opened_store(database_url) as store:
        yield store


async def opened(audio: AudioStore) -> AudioStore:
    await audio.open()
    return audio


async def check(rows: SqlStore, audio: AudioStore, scratch: Path, wait_s: float = 0.0) -> None:
    """``scratch``: the folder of the node's data dir (unused by the check: it shows which node asks)."""
    await check_shared_store(rows, audio, where="the store under test", wait_s=wait_s)


async def test_nodes_on_one_folder_pass_and_a_node_on_another_is_refused(rows: SqlStore, tmp_path: Path) -> None:
    first, same = LocalAudioStore(tmp_path / "a"), LocalAudioStore(tmp_path / "a")
    other = LocalAudioStore(tmp_path / "b")
    for audio in (first, same, other):
        await audio.open()
    await check(rows, first, tmp_path / "a")
    assert (tmp_path / "a" / "audio" / MARKER_KEY).is_file()
    await check(rows, same, tmp_path / "a2")
    with pytest.raises(NotTheSharedStore) as refused:
        await check(rows, other, tmp_path / "b")
    message = str(refused.value)
    assert "the store under test" in message and "holds no voxlane id" in message
    assert "VOXLANE_S3_BUCKET" in message and "voxlane audio-store adopt" in message
    assert not (tmp_path / "b" / "audio" / MARKER_KEY).exists(), "a refused node writes nothing into its store"


async def test_two_nodes_starting_at_once_on_a_new_database_both_pass(rows: SqlStore, tmp_path: Path) -> None:
    one, two = LocalAudioStore(tmp_path / "d"), LocalAudioStore(tmp_path / "d")
    await one.open()
    await two.open()
    await asyncio.gather(check(rows, one, tmp_path / "s1", wait_s=10), check(rows, two, tmp_path / "s2", wait_s=10))


async def test_a_store_of_another_database_is_refused(database_url: str, rows: SqlStore, tmp_path: Path) -> None:
    """A folder that a node of another deployment named holds that deployment's id, not this database's."""
    audio = await opened(LocalAudioStore(tmp_path / "x"))
    marker = tmp_path / "x" / "audio" / MARKER_KEY
    marker.parent.mkdir(parents=True)
    marker.write_text("0123456789abcdef\n")
    await rows.get_or_create_secret("audio-store-id", "fedcba9876543210")
    with pytest.raises(NotTheSharedStore, match="holds another deployment's id"):
        await check(rows, audio, tmp_path / "x")


async def test_nodes_on_one_bucket_pass_and_a_folder_beside_it_is_refused(
        rows: SqlStore, tmp_path: Path, s3_server: MotoServer, s3_bucket: str) -> None:
    a = await opened(S3AudioStore(s3_server.settings(s3_bucket, tmp_path / "a", s3_prefix="vx/")))
    b = await opened(S3AudioStore(s3_server.settings(s3_bucket, tmp_path / "b", s3_prefix="vx/")))
    try:
        await check(rows, a, tmp_path / "a")
        assert f"vx/{MARKER_KEY}" in s3_server.objects(s3_bucket)
        await check(rows, b, tmp_path / "b")
        with pytest.raises(NotTheSharedStore):
            await check(rows, await opened(LocalAudioStore(tmp_path / "c")), tmp_path / "c")
    finally:
        await a.close()
        await b.close()


def test_the_cli_checks_a_store_and_adopts_one(database_url: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``voxlane audio-store``: after the audio moved, ``adopt`` makes the new store the database's once."""
    def run(command: str, folder: str) -> int:
        return main(["audio-store", command, "--data-dir", str(tmp_path / folder), "--database-url", database_url])

    assert run("check", "old") == 0  # the first node to ask: its store becomes the database's
    assert "is this database's audio store" in capsys.readouterr().out
    assert run("check", "new") == 1
    assert "is not the one the other nodes on this database use" in capsys.readouterr().err
    assert run("adopt", "new") == 0 and run("check", "new") == 0
    assert run("check", "old") == 1, "the old store is no longer the deployment's"
