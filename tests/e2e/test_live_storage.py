"""A full disk during live recording, for real: a real server whose audio directory is a small tmpfs.

The stream must end cleanly: one ``STORAGE_FULL`` error (not recoverable), finals for the audio that was
stored, a ``completed`` transcript, and a recording that is a valid WAV up to the last sample written.
Before the fix the server closed the WebSocket with 1011 and said nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from bench.metrics import wer_counts
from media import float_to_s16
from server.cli.live_client import create_transcript, load_pcm16k, ws_url
from tests.conftest import RunningServer, start_server, stop_server
from tests.http_support import TLS

SPEECH = "single/ljspeech_LJ001-0001_0016.wav"  # utterances end at 9.9, 12.1, 22.2 s
BYTES_PER_SECOND = 16000 * 2
ROOM_SECONDS = 14.0  # the disk fills after about this much audio: two whole utterances fit


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a size-limited tmpfs at ``path``; the reason it cannot be done, else None."""
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"mount failed: {exc}"
    return None if done.returncode == 0 else f"mount not permitted here: {done.stderr.strip()}"


def _fill(mount: Path, leave_bytes: int) -> None:
    """Take all but ``leave_bytes`` of the filesystem with a filler file (written for real, not sparse)."""
    st = os.statvfs(mount)
    free = st.f_bavail * st.f_frsize
    size = max(0, free - leave_bytes)
    with open(mount / "filler", "wb") as f:
        block = b"\0" * (1 << 16)
        while size > 0:
            try:
                size -= f.write(block[: min(size, len(block))])
            except OSError:
                break


@pytest.fixture
def small_disk_server(tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    audio = tmp_path / "data" / "audio"
    reason = _mount_tmpfs(audio, "4m")
    if reason:  # .ci/run runs as root, which may mount: a machine that cannot is not one this test runs on
        pytest.fail(f"a full disk is simulated with a 4 MiB tmpfs, which needs mount (root): {reason}")
    try:
        srv = start_server(tmp_path, VOXLANE_MAX_AUDIO_LEAD_SECONDS="0", VOXLANE_STATUS_INTERVAL="1",
                           VOXLANE_DIARIZATION="off")
        try:
            yield srv, audio
        finally:
            stop_server(srv)
    finally:
        subprocess.run(["umount", "-l", str(audio)], capture_output=True, timeout=20)


async def _stream(url: str, tid: str, audio: np.ndarray, speed: float,
                  wait_s: float = 90.0) -> tuple[list[dict], int | None]:
    """Stream at ``speed`` x real time, keep sending after an error (a client that did not look), then stop;
    return every message received and the close code (None: still open when we were done)."""
    messages: list[dict] = []
    completed = asyncio.Event()
    close_code: int | None = None
    async with websockets.connect(ws_url(url, tid), max_size=None) as ws:
        async def reader() -> None:
            nonlocal close_code
            try:
                async for raw in ws:
                    msg = json.loads(raw)
                    messages.append(msg)
                    if msg["type"] == "status" and msg["data"].get("message") == "transcript complete":
                        completed.set()
            except websockets.ConnectionClosed as exc:
                close_code = exc.rcvd.code if exc.rcvd else 1006
            completed.set()

        task = asyncio.create_task(reader())
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}}))
        step = 1600
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with contextlib.suppress(websockets.ConnectionClosed):
            for i in range(0, len(audio), step):
                delay = t0 + i / 16000 / speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send(float_to_s16(audio[i:i + step]))
            await ws.send(json.dumps({"action": "stop"}))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(completed.wait(), wait_s)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return messages, close_code


async def test_disk_full_mid_stream_ends_the_stream_cleanly(small_disk_server, audio_dir, references):
    server, mount = small_disk_server
    audio = load_pcm16k(audio_dir / SPEECH)[: 30 * 16000]
    _fill(mount, int(ROOM_SECONDS * BYTES_PER_SECOND))
    tid = await create_transcript(server.url, "disk full")
    messages, close_code = await _stream(server.url, tid, audio, speed=3.0)

    assert close_code is None, f"the server closed the socket ({close_code}) instead of ending the stream"
    errors = [m["data"] for m in messages if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["STORAGE_FULL"], errors
    assert errors[0]["recoverable"] is False
    recorded = errors[0]["details"]["recorded_seconds"]
    assert ROOM_SECONDS - 3 < recorded < ROOM_SECONDS + 1, recorded
    assert any(m["type"] == "status" and m["data"].get("message") == "transcript complete" for m in messages)

    # the recording is a valid WAV whose header covers exactly the samples on disk
    wav_path = server.data_dir / "audio" / tid / "recording.wav"
    with wave.open(str(wav_path)) as w:
        frames, rate = w.getnframes(), w.getframerate()
    assert rate == 16000
    assert wav_path.stat().st_size == 44 + frames * 2
    assert abs(frames / 16000 - recorded) < 0.01
    stored = load_pcm16k(wav_path)
    assert np.allclose(stored, audio[: len(stored)], atol=1 / 16384), "stored audio differs from what was sent"

    # finals of the stored audio are stored; the transcript completed
    async with httpx.AsyncClient(verify=TLS, timeout=30) as client:
        body = (await client.get(f"{server.url}/v1/transcripts/{tid}")).json()
        assert (await client.get(f"{server.url}/health")).status_code == 200
    assert body["status"] == "completed"
    segs = body["segments"]
    assert segs and all(s["end"] <= recorded + 0.05 for s in segs)
    finals = [m["data"] for m in messages if m["type"] == "transcription" and m["data"]["is_final"]]
    assert [s["id"] for s in segs] == [f["segment_id"] for f in finals]
    ref = " ".join(s["text"] for s in references[SPEECH]["segments"] if s["end"] <= 12.2)
    said = " ".join(s["text"] for s in segs)  # the stored audio ends inside the third utterance
    said = " ".join(said.split()[: len(ref.split())])
    errs, words = wer_counts(ref, said)
    assert errs / words < 0.3, (said, [(s["start"], s["end"], s["text"]) for s in segs])
    assert "Traceback" not in server.log()


async def test_start_on_a_full_disk_is_refused_with_storage_full(small_disk_server):
    server, mount = small_disk_server
    _fill(mount, 0)
    tid = await create_transcript(server.url, "no room")
    async with websockets.connect(ws_url(server.url, tid), max_size=None) as ws:
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}}))
        error = None
        while error is None:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg["type"] == "error":
                error = msg["data"]
        assert error["code"] == "STORAGE_FULL" and error["recoverable"] is False
        await ws.send(json.dumps({"action": "get_status"}))  # the connection is still there
        while (msg := json.loads(await asyncio.wait_for(ws.recv(), 30)))["type"] != "status":
            pass
    # room again: a new start records (the refused one left no torn file behind)
    (mount / "filler").unlink()
    async with websockets.connect(ws_url(server.url, tid), max_size=None) as ws:
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}}))
        await ws.send(float_to_s16(np.zeros(16000, dtype=np.float32)))
        await ws.send(json.dumps({"action": "stop"}))
        while not ((msg := json.loads(await asyncio.wait_for(ws.recv(), 60)))["type"] == "status"
                   and msg["data"].get("message") == "transcript complete"):
            assert msg["type"] != "error", msg
    with wave.open(str(server.data_dir / "audio" / tid / "recording.wav")) as w:
        assert w.getnframes() == 16000
