"""Hostile live publishers against a real server: oversized frames, frames that cost seconds of CPU, and
audio sent faster than real time. One client must never freeze the server for everyone else."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import numpy as np
import pytest
import websockets

from asr.backends import DecodeRequest
from asr.backends.synthetic import SyntheticBackend
from media.audio import float_to_s16
from server.cli.live_client import create_transcript, load_pcm16k, ws_url
from tests.conftest import served
from tests.http_support import TLS

SPEECH = "single/librispeech_61-70968-0000.wav"  # 5.3 s
LONGER = "single/librispeech_2412-153948-0000.wav"  # 11.7 s
EIGHT_MB = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The default frame cap; a 3 s lead on real time (to keep the test short); no periodic messages. The synthetic
    backend: what a hostile client costs the server, and what it loses, is the subject, not the words."""
    with served(tmp_path_factory.mktemp("voxlane-hostile"), VOXLANE_STATUS_INTERVAL="0",
                VOXLANE_PING_INTERVAL="0", VOXLANE_MAX_AUDIO_LEAD_SECONDS="3", VOXLANE_ASR_BACKEND="synthetic") as srv:
        yield srv


@pytest.fixture(scope="module")
def big_frame_server(tmp_path_factory: pytest.TempPathFactory):
    """Frames up to 8 MiB and no lead: every byte a client sends as fast as it can is decoded and run
    through the VAD at once (what an unbounded server did on its event loop). The frames are quiet noise the VAD
    passes none of to the model, so the synthetic backend stands in for it."""
    with served(tmp_path_factory.mktemp("voxlane-big-frames"), VOXLANE_STATUS_INTERVAL="0",
                VOXLANE_PING_INTERVAL="0", VOXLANE_MAX_FRAME_KB="8192", VOXLANE_MAX_AUDIO_LEAD_SECONDS="0",
                VOXLANE_DIARIZATION="off", VOXLANE_ASR_BACKEND="synthetic") as srv:
        yield srv


class Client:
    """One WebSocket client that records every message it gets, with its arrival time."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.messages: list[tuple[float, dict]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            self.messages.append((time.monotonic(), json.loads(raw)))

    def of(self, kind: str) -> list[dict]:
        return [m for _, m in self.messages if m["type"] == kind]

    async def until(self, condition, within: float = 60.0) -> float:
        """Waits for a message that meets ``condition``; returns when it arrived."""
        for _ in range(int(within / 0.05)):
            for t, m in self.messages:
                if condition(m):
                    return t
            await asyncio.sleep(0.05)
        raise AssertionError(f"no such message in {[m for _, m in self.messages]}")

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def status_answer(m: dict) -> bool:
    """The answer to ``get_status`` while a stream is live."""
    return m["type"] == "status" and m["data"]["stage"] == "transcription" and m["data"]["message"] == "live"


def final_words(client: Client) -> list[dict]:
    return [w for m in client.of("transcription") if m["data"]["is_final"] for w in m["data"]["words"]]


def assert_read_whole(words: list[dict], audio: np.ndarray) -> None:
    """The stream's final words are the synthetic backend's reading of all of its audio: a word for each 0.3 s of
    speech, the last of them at the speech's end."""
    [whole] = SyntheticBackend().transcribe([DecodeRequest(audio)])
    assert len(words) >= 0.8 * len(whole.words), ([w["text"] for w in words], len(whole.words))
    assert max(w["end"] for w in words) >= whole.words[-1].end - 0.6, (words[-1], whole.words[-1])


def completed(m: dict) -> bool:
    return (m["type"] == "status" and m["data"]["status"] == "completed" and m["data"].get("progress") == 100.0)


async def test_oversized_frame_is_refused_and_the_stream_goes_on(server, audio_dir):
    """An 8 MB frame gets MESSAGE_TOO_LARGE; the audio before and after it is stored and transcribed."""
    audio = load_pcm16k(audio_dir / SPEECH)
    pcm = float_to_s16(audio)
    half = len(pcm) // 2 & ~1
    tid = await create_transcript(server.url, "oversized")
    async with websockets.connect(ws_url(server.url, tid), max_size=None) as ws:
        client = Client(ws)
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}}))
        await ws.send(pcm[:half])
        await ws.send(b"\x00" * EIGHT_MB)
        await ws.send(pcm[half:])
        await ws.send(json.dumps({"action": "stop"}))
        await client.until(completed)
        await client.close()
    errors = client.of("error")
    assert [e["data"]["code"] for e in errors] == ["MESSAGE_TOO_LARGE"], errors
    assert errors[0]["data"]["details"] == {"size": EIGHT_MB, "max_size": 256 * 1024}
    words = final_words(client)
    assert_read_whole(words, audio)
    assert min(w["start"] for w in words) < half / 2 / 16000 < max(w["start"] for w in words)  # both halves
    assert abs(server.recorded_frames(tid) - len(audio)) < 160  # both halves, nothing of the refused frame


async def test_big_frames_do_not_stall_other_requests(big_frame_server):
    """A client sending 8 MB frames of 8 kHz PCM (524 s of audio each) as fast as it can: /health keeps
    answering at once. (Decoded and run through the VAD on the event loop, each frame froze the server for
    about 1.8 s.)"""
    srv = big_frame_server
    rng = np.random.default_rng(3)
    frame = float_to_s16(rng.normal(0, 0.003, EIGHT_MB // 2).astype(np.float32))
    tid = await create_transcript(srv.url, "flood")
    latencies: list[float] = []
    # no permessage-deflate: compressing 8 MB would stall this test's own event loop for seconds
    async with websockets.connect(ws_url(srv.url, tid), max_size=None, compression=None) as ws:
        client = Client(ws)
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 8000}}))

        async def flood() -> None:
            for _ in range(4):
                await ws.send(frame)
            await ws.send(json.dumps({"action": "get_status"}))

        sender = asyncio.create_task(flood())
        async with httpx.AsyncClient(verify=TLS, timeout=30) as http:
            while not any(map(status_answer, client.of("status"))):
                t = time.monotonic()
                assert (await http.get(srv.url + "/health")).status_code == 200
                latencies.append(time.monotonic() - t)
                await asyncio.sleep(0.05)
                assert len(latencies) < 2000, "the frames were never taken in"
        await sender
        await ws.send(json.dumps({"action": "stop"}))
        await client.until(completed, within=120)
        await client.close()
    assert not client.of("error")
    assert max(latencies) < 0.5, sorted(latencies)[-5:]
    assert len(latencies) >= 10
    assert abs(srv.recorded_frames(tid) - 4 * EIGHT_MB) < 160  # every frame was taken in (8 kHz s16 -> 16 kHz)


async def test_faster_than_real_time_is_held_to_the_lead(server, audio_dir):
    """11.7 s of speech sent at once: the server reads it no faster than real time plus the 3 s lead, so the
    answer to a get_status sent after the audio comes 8.7 s or more after the start; nothing is lost."""
    audio = load_pcm16k(audio_dir / LONGER)
    pcm = float_to_s16(audio)
    tid = await create_transcript(server.url, "fast")
    async with websockets.connect(ws_url(server.url, tid), max_size=None) as ws:
        client = Client(ws)
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}}))
        started = time.monotonic()
        for i in range(0, len(pcm), 16000):  # 0.5 s frames, as fast as the socket takes them
            await ws.send(pcm[i:i + 16000])
        await ws.send(json.dumps({"action": "get_status"}))
        await ws.send(json.dumps({"action": "stop"}))
        answered = await client.until(status_answer)
        await client.until(completed)
        await client.close()
    audio_s = len(audio) / 16000
    assert answered - started >= audio_s - 3.0 - 0.3, answered - started
    assert answered - started < audio_s + 5.0  # held to real time, not beyond it
    assert not client.of("error")
    assert_read_whole(final_words(client), audio)
    assert abs(server.recorded_frames(tid) - len(audio)) < 160
