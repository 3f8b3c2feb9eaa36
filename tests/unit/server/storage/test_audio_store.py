"""The audio store's contract, run against both stores: the data dir's folder and an S3 bucket (moto's server).

Every caller (uploads, kiosk chunks, the live recording, downloads, jobs) relies on these promises only, so one
suite holds both stores to them.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest

from media import WavAppender
from server.pipeline.recordings import chunk_key, recording_key, taken_over_key, upload_key
from server.storage.audio import AudioStore, LocalAudioStore
from server.storage.audio.s3 import S3AudioStore
from tests.http_support import TLS

if TYPE_CHECKING:
    from tests.s3_support import MotoServer

pytest_plugins = ("tests.s3_support",)

PART = 5 << 20  # S3's smallest multipart part: a bigger file goes up in parts


def make_store(kind: str, data: Path, request: pytest.FixtureRequest, **more) -> AudioStore:
    if kind == "local":
        return LocalAudioStore(data)
    server: MotoServer = request.getfixturevalue("s3_server")
    settings = server.settings(request.getfixturevalue("s3_bucket"), data, s3_prefix="vx/", **more)
    return S3AudioStore(settings, part_bytes=PART)


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AudioStore]:
    audio = make_store(request.param, tmp_path / "data", request)
    await audio.open()
    try:
        yield audio
    finally:
        await audio.close()


async def put_bytes(store: AudioStore, key: str, data: bytes) -> Path:
    folder = store.incoming_dir(key.rsplit("/", 1)[0])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".incoming-test"
    path.write_bytes(data)
    await store.put_file(key, path)
    return path


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)


def test_keys_are_relative_and_one_layout():
    assert recording_key("t1") == "t1/recording.wav"
    assert recording_key("t1", "ann") == "t1/participant-ann.wav"
    assert recording_key("t1", 1) == recording_key("t1", "1"), "1 and '1' are one participant"
    assert upload_key("t1", "m4a") == "t1/upload.m4a"
    assert chunk_key("t1", 3, "Ab_9-x", "webm") == "t1/chunks/000003-Ab_9-x.webm"


async def test_a_stored_file_reads_back_whole_and_by_range(store: AudioStore):
    data = os.urandom(200_000)
    received = await put_bytes(store, "t1/upload.wav", data)
    assert not received.exists() or store.direct_path("t1/upload.wav") == received, "the received file is consumed"
    assert await store.size("t1/upload.wav") == len(data)
    assert await store.read_head("t1/upload.wav", 12) == data[:12]
    got = b"".join([p async for p in store.read_range("t1/upload.wav", 1000, 150_000)])
    assert got == data[1000:150_000]
    tail = b"".join([p async for p in store.read_range("t1/upload.wav", 199_990, 300_000)])
    assert tail == data[199_990:], "clamped to the file"
    assert [p async for p in store.read_range("t1/upload.wav", 200_000, 200_010)] == []
    async with store.local_path("t1/upload.wav") as path:
        assert path.read_bytes() == data and path.suffix == ".wav", "decoders see the key's suffix"
    assert path.exists() == (store.kind == "local"), "a scratch copy is removed after use"


async def test_missing_files(store: AudioStore):
    assert await store.size("t1/none.wav") is None
    with pytest.raises(FileNotFoundError):
        await store.read_head("t1/none.wav", 12)
    with pytest.raises(FileNotFoundError):
        async with store.local_path("t1/none.wav"):
            pass
    await store.delete("t1/none.wav")  # nothing to remove is fine
    await store.delete_prefix("nobody")
    with pytest.raises(ValueError):
        await store.size("../outside.wav")


async def test_a_file_larger_than_a_part(store: AudioStore):
    data = os.urandom(2 * PART + 12345)  # three parts on S3
    await put_bytes(store, "t2/upload.flac", data)
    assert await store.size("t2/upload.flac") == len(data)
    async with store.local_path("t2/upload.flac") as path:
        assert path.read_bytes() == data


async def test_a_working_file_is_stored_when_published_and_resumed_elsewhere(
        store: AudioStore, request: pytest.FixtureRequest, tmp_path: Path):
    key = recording_key("t3")
    path = await store.working_file(key, resume=True)
    wav = WavAppender(path)
    wav.append(speech(1.0))
    wav.sync()
    wav.close()
    if store.kind == "s3":
        assert await store.size(key) is None, "a working file is on this node until it is published"
    await store.publish(key)
    assert await store.size(key) == 44 + 32000
    assert path.exists() == (store.kind == "local"), "on S3 the spool file goes once it is stored"
    # a stream starting again (on S3: on another node, its own data dir) continues the one recording
    other = store if store.kind == "local" else make_store("s3", tmp_path / "node2", request)
    await other.open()
    try:
        again = await other.working_file(key, resume=True)
        wav = WavAppender(again)
        assert wav.duration == 1.0
        wav.append(speech(0.5, seed=1))
        wav.close()
        await other.publish(key)
    finally:
        if other is not store:
            await other.close()
    assert await store.size(key) == 44 + 48000
    head = await store.read_head(key, 44)
    assert head[:4] == b"RIFF" and int.from_bytes(head[40:44], "little") == 48000, "the header tells the length"


async def test_a_taken_over_stream_s_recording_goes_beside_the_new_owner_s(store: AudioStore):
    """On S3 a stream that another node took over publishes its spool file under a key of its own (locally, see
    the test of a directory two nodes share below)."""
    if store.kind == "local":
        return
    key = recording_key("t5")
    await put_bytes(store, key, b"the new owner's")
    path = await store.working_file(key)
    wav = WavAppender(path)
    wav.append(speech(0.5))
    wav.close()
    aside = taken_over_key(key, 3)
    assert aside == "t5/recording.taken-over-3.wav"
    await store.publish(key, to=aside)
    assert await store.size(key) == len(b"the new owner's"), "not over the new owner's recording"
    assert await store.size(aside) == 44 + 16000 and not path.exists()


async def test_a_recording_checkpointed_on_a_node_that_dies_goes_on_elsewhere(
        store: AudioStore, request: pytest.FixtureRequest, tmp_path: Path):
    """Checkpoints put a live recording's new audio in the store while it grows: after its node dies, a stream
    that starts again on another node continues from the last checkpoint, the sweep can fold the parts into one
    file, and the dead node's older copy, once it is back, does not overwrite what came after."""
    key = recording_key("t9")
    path = await store.working_file(key, resume=True)
    wav = WavAppender(path)
    for second in range(3):
        wav.append(speech(1.0, seed=second))
        wav.sync()
        await store.checkpoint(key)
    wav.append(speech(0.5, seed=9))  # after the last checkpoint: lost with the node
    wav.sync()
    if store.kind == "local":
        wav.close()
        assert await store.settle_parts("t9") == 0 and await store.size(key) == 44 + 3.5 * 32000
        return  # the working file is the stored file: nothing was lost
    assert await store.size(key) is None, "parts, not the whole file yet"
    other = make_store("s3", tmp_path / "node2", request)
    await other.open()
    try:
        again = await other.working_file(key, resume=True)
        assert WavAppender(again).duration == 3.0, "every checkpoint, in order"
        resumed = WavAppender(again)
        resumed.append(speech(1.0, seed=5))
        resumed.sync()
        await other.checkpoint(key)  # one part, from where the first node's parts ended
        assert await other.settle_parts("t9") == 1  # (the sweep, had the second node died too)
        assert await other.size(key) == 44 + 4 * 32000
        resumed.append(speech(1.0, seed=6))
        resumed.close()
        await other.publish(key)
    finally:
        await other.close()
    assert await store.size(key) == 44 + 5 * 32000
    head = await store.read_head(key, 44)
    assert int.from_bytes(head[40:44], "little") == 5 * 32000
    objects = request.getfixturevalue("s3_server").objects(request.getfixturevalue("s3_bucket"))
    assert [name for name in objects if name.startswith("vx/t9/")] == ["vx/t9/recording.wav"], "no part left"
    wav.close()
    assert await store.recover() == 0 and not path.exists(), "the dead node's shorter copy is dropped"
    assert await store.size(key) == 44 + 5 * 32000


async def test_a_stale_node_s_checkpoints_never_go_over_the_stream_that_took_it_over(
        request: pytest.FixtureRequest, tmp_path: Path):
    """A node that has not yet heard that another took its stream over (a stall past its lease) may still put
    a checkpoint: each part carries its stream's fence, and a newer fence's audio wins, in the parts and in the
    file published over them."""
    key = recording_key("t10")
    stale = make_store("s3", tmp_path / "node1", request)
    taker = make_store("s3", tmp_path / "node2", request)
    reader = make_store("s3", tmp_path / "node3", request)
    for node in (stale, taker, reader):
        await node.open()
    try:
        old = WavAppender(await stale.working_file(key, resume=True))
        old.append(speech(2.0, seed=1))
        old.sync()
        await stale.checkpoint(key, fence=1)
        new_path = await taker.working_file(key, resume=True)  # the stream, taken over: fence 2
        new = WavAppender(new_path)
        new.append(speech(1.0, seed=2))
        new.sync()
        await taker.checkpoint(key, fence=2)
        old.append(speech(1.0, seed=3))  # the stale node's audio after the takeover
        old.sync()
        await stale.checkpoint(key, fence=1)
        expected = new_path.read_bytes()[44:]
        copy = await reader.working_file(key, resume=True)
        assert copy.read_bytes()[44:] == expected, "the stale part is cut off where the new stream's audio begins"
        copy.unlink()
        assert await taker.settle_parts("t10") == 1
        async with taker.local_path(key) as settled:
            assert settled.read_bytes()[44:] == expected
        new.append(speech(1.0, seed=4))
        new.close()
        expected = new_path.read_bytes()[44:]
        await taker.publish(key, fence=2)
        old.append(speech(2.0, seed=5))  # its last checkpoint lands after the whole file was published
        old.sync()
        await stale.checkpoint(key, fence=1)
        assert await reader.settle_parts("t10") == 1
        async with reader.local_path(key) as stored:
            assert stored.read_bytes()[44:] == expected, "no older fence's part goes over a published file"
        again = await reader.working_file(key, resume=True)
        assert again.read_bytes()[44:] == expected
        old.close()  # then it dies: its spool file, longer than the stored one, is not put over it at the restart
        assert await stale.recover() == 0
        async with reader.local_path(key) as stored:
            assert stored.read_bytes()[44:] == expected
    finally:
        for node in (stale, taker, reader):
            await node.close()


async def test_two_nodes_on_one_directory_never_write_one_recording(tmp_path: Path):
    """Two nodes mount one audio directory. The node that takes a stream over resumes a file of its own, while the
    stale node, which has not yet heard, appends to the old one and then puts it aside; and a restart's sweep on
    either node leaves a live writer's file alone."""
    key = recording_key("t11")
    stale, taker = LocalAudioStore(tmp_path / "shared"), LocalAudioStore(tmp_path / "shared")
    for node in (stale, taker):
        await node.open()
    try:
        old = WavAppender(await stale.working_file(key, resume=True))
        old.append(speech(2.0, seed=1))
        old.sync()
        before = stale.path(key).read_bytes()
        new = WavAppender(await taker.working_file(key, resume=True))  # the stream, taken over
        assert new.duration == 2.0
        new.append(speech(1.0, seed=2))
        new.sync()
        old.append(speech(1.0, seed=3))  # the stale node's audio after the takeover
        old.sync()
        assert await LocalAudioStore(tmp_path / "shared").recover() == 0  # a third node starts: both writers live
        stored = taker.path(key).read_bytes()
        assert stored[44:len(before)] == before[44:], "the taker's file starts with what was stored"
        reference = WavAppender(tmp_path / "reference.wav")
        reference.append(speech(1.0, seed=2))
        reference.close()
        assert stored[len(before):] == (tmp_path / "reference.wav").read_bytes()[44:], "then the taker's audio only"
        old.close()
        aside = taken_over_key(key, 1)
        await stale.publish(key, to=aside)
        assert await stale.size(aside) == 44 + 3 * 32000, "the stale node's whole recording, beside the new one"
        assert taker.path(key).read_bytes() == stored, "and nothing of it over the taker's file"
        new.close()
        await taker.publish(key)
        assert sorted(p.name for p in taker.path(key).parent.iterdir()) == sorted(
            [Path(key).name, Path(aside).name]), "no hidden link is left behind"
    finally:
        for node in (stale, taker):
            await node.close()


async def recorded_second(data: Path, key: str) -> LocalAudioStore:
    """A node of its own that has recorded a second as ``key``'s live writer, not yet published."""
    node = LocalAudioStore(data)
    await node.open()
    wav = WavAppender(await node.working_file(key, resume=True))
    wav.append(speech(1.0))
    wav.close()
    return node


async def test_a_resume_with_no_room_for_its_copy_leaves_nothing_behind(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    key = recording_key("t13")
    node = await recorded_second(tmp_path / "data", key)
    await node.publish(key)
    before = node.path(key).read_bytes()

    def full(source, target, **_):
        Path(target).write_bytes(b"part of it")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(OSError):
        await node.working_file(key, resume=True)
    assert sorted(node.path(key).parent.iterdir()) == [node.path(key)] and node.path(key).read_bytes() == before


async def test_a_dead_writer_s_link_goes_at_the_next_start(tmp_path: Path):
    """A node that died mid-stream leaves its writer's hidden link; the next start on any node removes it, and
    counts it as a stale recording only when it is not the stored file."""
    key = recording_key("t12")
    node = await recorded_second(tmp_path / "data", key)
    await node.close()  # the process ends without publishing: its lock goes with it
    assert len(list(node.path(key).parent.glob(".*.writer-*"))) == 1
    assert await LocalAudioStore(tmp_path / "data").recover() == 0
    assert not list(node.path(key).parent.glob(".*.writer-*")) and node.path(key).stat().st_size == 44 + 32000


async def test_delete_prefix_removes_one_transcript(store: AudioStore):
    await put_bytes(store, "t4/upload.wav", b"a" * 10)
    await put_bytes(store, "t4/chunks/000000-k.wav", b"b" * 10)
    await put_bytes(store, "t5/upload.wav", b"c" * 10)
    await store.delete("t4/upload.wav")
    assert await store.size("t4/upload.wav") is None
    await store.delete_prefix("t4")
    assert await store.size("t4/chunks/000000-k.wav") is None
    assert await store.size("t5/upload.wav") == 10


async def test_presigned_put_and_probe(store: AudioStore, s3_server: MotoServer):
    probe = await store.probe()
    assert probe.writable and probe.free_bytes > 0
    url = await store.presigned_put("t6/chunks/000000-k.wav", 60, "audio/wav")
    if store.kind == "local":
        assert url is None, "the server's own signed route takes kiosk chunks"
        return
    assert url is not None and url.startswith(s3_server.endpoint + "/")
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["60"] and "content-type" in query["X-Amz-SignedHeaders"][0]
    async with httpx.AsyncClient(verify=TLS) as client:
        r = await client.put(url, content=b"RIFF" + bytes(100), headers={"Content-Type": "audio/wav"})
    assert r.status_code == 200
    assert await store.size("t6/chunks/000000-k.wav") == 104


async def test_presigned_urls_carry_the_public_endpoint(request: pytest.FixtureRequest, tmp_path: Path):
    store = make_store("s3", tmp_path / "data", request, s3_public_endpoint_url="https://media.example.org")
    await store.open()
    try:
        url = await store.presigned_put("t7/chunks/000000-k.wav", 60, None)
    finally:
        await store.close()
    assert url is not None and url.startswith("https://media.example.org/")


async def test_recover_publishes_what_a_crash_left(store: AudioStore):
    key = recording_key("t8")
    path = await store.working_file(key)
    path.write_bytes(b"RIFF" + bytes(40))
    stray = path.with_name(".fetching-x.wav")
    stray.write_bytes(b"half")
    arriving = store.incoming_dir("t8") / ".incoming-cut-off"  # a body the process died receiving
    arriving.parent.mkdir(parents=True, exist_ok=True)
    arriving.write_bytes(b"RIFF")
    published = await store.recover()
    assert not arriving.exists(), "never acknowledged: removed"
    if store.kind == "local":
        assert published == 0 and path.exists(), "a local working file is already the stored file"
        return
    assert published == 1 and not path.exists() and not stray.exists()
    assert await store.size(key) == 44


async def test_rows_from_before_keys_hold_absolute_paths(tmp_path: Path):
    """Local only: an older row's absolute path still reads (S3 never had such rows)."""
    store = LocalAudioStore(tmp_path / "data")
    old = tmp_path / "data" / "audio" / "t9" / "upload.wav"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"RIFF1234WAVE")
    assert await store.size(str(old)) == 12
    async with store.local_path(str(old)) as path:
        assert path == old
    assert await store.read_head(str(old), 4) == b"RIFF"


async def test_head_and_a_move_that_holds_only_while_the_file_is_unchanged(store: AudioStore) -> None:
    """A confirmation moves what it checked: a file written again in between (another PUT) has another version,
    and the move refuses it."""
    key, new = "t1/chunks/000000-k.wav", "t1/chunks/confirmed/000000-k.wav"
    assert await store.head(key) is None
    await put_bytes(store, key, b"first bytes")
    first = await store.head(key)
    assert first is not None and first.size == 11
    await put_bytes(store, key, b"second, longer bytes")
    second = await store.head(key)
    assert second is not None and second.version != first.version
    assert not await store.move(key, new, if_version=first.version)
    assert await store.head(new) is None and await store.size(key) == 20
    assert await store.move(key, new, if_version=second.version)
    assert await store.head(key) is None and await store.read_head(new, 100) == b"second, longer bytes"
    assert not await store.move(key, new, if_version=second.version), "gone: nothing to move"
