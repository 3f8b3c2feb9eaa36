"""What a frame's pacing may cost a Deepgram live client (``WS /v1/listen``): the socket is read while a big frame
is held to real time, so a CloseStream after it is seen at once (finals and Metadata without waiting out the
audio's real time), and a client that leaves releases its stream within seconds, every frame it sent stored.
On one app with tight limits and the synthetic backend (ASR is not the point here)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from server.settings import Settings
from tests.rest_support import AUDIO, JWT_SECRET, Api, read_wav

pytest_plugins = ("tests.rest_fixtures",)

FRAME_KB = 1024
FRAME_S = FRAME_KB * 1024 / 32000  # 32.8 s of 16 kHz 16-bit mono in one frame: paced for 31.8 s with a 1 s lead
IDLE_S = 1.5
QUERY = "encoding=linear16&sample_rate=16000"


@pytest.fixture(scope="module")
async def tight(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    from tests.rest_fixtures import running_app  # here: the module is this file's pytest plugin too

    settings = Settings(data_dir=str(tmp_path_factory.mktemp("deepgram-limits") / "data"), asr_backend="synthetic",
                        auth_mode="public", jwt_secret=JWT_SECRET, status_interval=0, ping_interval=0,
                        max_frame_kb=FRAME_KB, max_audio_lead_seconds=1.0, session_idle_timeout=IDLE_S,
                        disable_redaction="on")
    async with running_app(settings, private=False) as api:
        yield api


def speech(seconds: float) -> bytes:
    """JFK, repeated, as ``seconds`` of 16 kHz 16-bit mono (speech: the synthetic backend writes words)."""
    samples, rate = read_wav(AUDIO / "single/jfk_inaugural_1961_excerpt.wav")
    assert rate == 16000
    n = int(seconds * rate)
    return np.tile(samples.astype("<i2"), n // len(samples) + 1)[:n].tobytes()


def url(base: str) -> str:
    return f"{base.replace('http', 'ws', 1)}/v1/listen?{QUERY}"


async def until_closed(ws: websockets.ClientConnection) -> tuple[list[dict], ConnectionClosed]:
    messages: list[dict] = []
    with pytest.raises(ConnectionClosed) as info:
        while True:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
    return messages, info.value


async def streaming(api: Api) -> str:
    """The transcript of the one stream live now (waited for: the session's worker starts it, and its row says
    ``live`` a moment after the stream is registered)."""
    for _ in range(500):
        live = api.svc.admission.live_publishers()
        if live and (await api.client.get(f"/v1/transcripts/{live[0].transcript.id}")).json()["status"] == "live":
            return live[0].transcript.id
        await asyncio.sleep(0.02)
    raise AssertionError("the frame started no stream")


def finals(messages: list[dict]) -> list[str]:
    return [m["channel"]["alternatives"][0]["transcript"] for m in messages
            if m["type"] == "Results" and m["is_final"] and m["channel"]["alternatives"][0]["transcript"]]


async def test_close_stream_after_a_paced_frame_is_read_at_once(tight: Api):
    """The frame is taken in unpaced once CloseStream is read: its finals and Metadata come in seconds."""
    async with websockets.connect(url(await tight.serve()), max_size=None) as ws:
        sent = time.monotonic()
        await ws.send(speech(FRAME_S))
        await ws.send(json.dumps({"type": "KeepAlive"}))
        await ws.send(json.dumps({"type": "CloseStream"}))
        messages, closed = await until_closed(ws)
    took = time.monotonic() - sent
    # paced, the frame would take FRAME_S - 1 s to be taken in: done before then, CloseStream was read at once
    assert took < FRAME_S - 1, f"CloseStream was read only when the frame's {FRAME_S:.1f} s were paced ({took:.1f} s)"
    assert [m["type"] for m in messages if m["type"] != "Results"] == ["Metadata"], messages
    assert finals(messages) and closed.rcvd is not None and closed.rcvd.code == 1000
    assert messages[-1]["duration"] == pytest.approx(FRAME_S, abs=0.01)
    row = await tight.wait_transcript(messages[-1]["request_id"], states=("completed",))
    assert row["duration"] == pytest.approx(FRAME_S, abs=0.05) and row["segments"], row


async def test_a_client_that_leaves_releases_its_stream(tight: Api):
    """Its stream ends within seconds, not when its frame would have been paced, and keeps all of the frame."""
    async with websockets.connect(url(await tight.serve()), max_size=None) as ws:
        await ws.send(speech(FRAME_S))
        tid = await streaming(tight)
        assert (await tight.client.get(f"/v1/transcripts/{tid}")).json()["status"] == "live"
    left = time.monotonic()
    row = await tight.wait_transcript(tid, states=("completed",))
    took = time.monotonic() - left
    assert took < FRAME_S - 1, f"the stream outlived its client by {took:.1f} s (its frame is paced for" \
        f" {FRAME_S - 1:.0f} s)"
    assert row["duration"] == pytest.approx(FRAME_S, abs=0.05), row
    assert tight.svc.admission.live_publishers() == []


async def test_the_idle_clock_stands_still_while_frames_are_paced(tight: Api):
    """Frames paced for longer than VOXLANE_SESSION_IDLE_TIMEOUT are all taken in (none dropped as the session
    closes); the session idles out once the last is."""
    seconds = 4  # 1 s frames, with a 1 s lead: the last taken in 3 s after the first (twice IDLE_S)
    pcm = speech(seconds)
    async with websockets.connect(url(await tight.serve()), max_size=None) as ws:
        for start in range(0, len(pcm), 32000):
            await ws.send(pcm[start:start + 32000])
        tid = await streaming(tight)
        messages, closed = await until_closed(ws)
    errors = [m for m in messages if m["type"] == "Error"]
    assert [e["variant"] for e in errors] == ["SESSION_IDLE"] and closed.rcvd.code == 1000, messages
    row = await tight.wait_transcript(tid, states=("completed",))
    assert row["duration"] == pytest.approx(seconds, abs=0.05), row


async def test_keepalive_holds_a_stream_that_sent_audio_open_but_not_one_that_never_did(tight: Api):
    """Deepgram's KeepAlive keeps a quiet stream open (a voice agent's muted user); a session that never sent
    audio idles out whatever it sends."""
    base = await tight.serve()
    async with websockets.connect(url(base), max_size=None) as ws:
        await ws.send(speech(0.5))
        await streaming(tight)
        for _ in range(int(IDLE_S * 2 / 0.5)):  # twice the idle timeout, kept alive
            await ws.send(json.dumps({"type": "KeepAlive"}))
            await asyncio.sleep(0.5)
        await ws.send(json.dumps({"type": "CloseStream"}))
        messages, closed = await until_closed(ws)
    assert not [m for m in messages if m["type"] == "Error"] and closed.rcvd.code == 1000, messages
    async with websockets.connect(url(base), max_size=None) as ws:
        await ws.send(json.dumps({"type": "KeepAlive"}))
        messages, closed = await until_closed(ws)
    assert [m["variant"] for m in messages if m["type"] == "Error"] == ["SESSION_IDLE"], messages
