"""What one client may cost a node over the native ``WS /v1/transcripts_websocket/{id}``: a connection that
keeps sending invalid messages is told and closed (keeping the audio it sent), and a frame's audio held to real
time neither stops the socket being read nor outlives its client. On one app with tight limits and the
synthetic backend (ASR is not the point here)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from server.cli.live_client import ws_url
from server.settings import Settings
from tests.rest_support import JWT_SECRET, Api

pytest_plugins = ("tests.rest_fixtures",)

BAD = 6


@pytest.fixture(scope="module")
async def tight(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    from tests.rest_fixtures import running_app  # here: the module is this file's pytest plugin too

    settings = Settings(data_dir=str(tmp_path_factory.mktemp("live-limits") / "data"), asr_backend="synthetic",
                        auth_mode="public", jwt_secret=JWT_SECRET, status_interval=0, ping_interval=0,
                        ws_max_bad_messages=BAD, max_audio_lead_seconds=1.0, disable_redaction="on")
    async with running_app(settings, private=False) as api:
        yield api


async def transcript(api: Api, name: str) -> str:
    return (await api.client.post("/v1/transcripts/", json={"name": name})).json()["id"]


def start(sample_rate: int) -> str:
    return json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": sample_rate}})


async def until_closed(ws: websockets.ClientConnection) -> tuple[list[dict], ConnectionClosed]:
    messages: list[dict] = []
    with pytest.raises(ConnectionClosed) as info:
        while True:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
    return messages, info.value


async def test_a_run_of_invalid_messages_closes_the_connection_and_keeps_its_audio(tight: Api):
    base = await tight.serve()
    tid = await transcript(tight, "bad messages")
    async with websockets.connect(ws_url(base, tid), max_size=None) as ws:
        await ws.send(start(16000))
        await ws.send(bytes(32000))  # 1 s of audio before the flood: it is kept
        await ws.send(bytes(300 * 1024))  # over VOXLANE_MAX_FRAME_KB
        await ws.send("{not json")
        await ws.send(json.dumps({"action": "dance"}))
        await ws.send(json.dumps({"action": "get_status", "pad": "x" * 70000}))  # over 64 KiB
        await ws.send("[" * 5000 + "]" * 5000)  # nested past the protocol's depth
        await ws.send(json.dumps({"action": "get_status"}))  # valid: answered, and counts nothing
        await ws.send(json.dumps({"action": "start", "params": {"format": "mp3"}}))  # the sixth in a minute
        messages, closed = await until_closed(ws)
    codes = [m["data"]["code"] for m in messages if m["type"] == "error"]
    assert codes == ["MESSAGE_TOO_LARGE", "INVALID_JSON", "UNKNOWN_ACTION", "MESSAGE_TOO_LARGE", "INVALID_JSON",
                     "ALREADY_STARTED", "TOO_MANY_ERRORS"], codes
    assert "VOXLANE_WS_MAX_BAD_MESSAGES" in messages[-1]["data"]["message"] and closed.rcvd.code == 1008
    row = await tight.wait_transcript(tid, states=("completed",))
    assert row["duration"] == pytest.approx(1.0, abs=0.05), row


async def test_a_paced_frame_does_not_outlive_its_client(tight: Api):
    base = await tight.serve()
    tid = await transcript(tight, "paced frame")
    async with websockets.connect(ws_url(base, tid), max_size=None) as ws:
        await ws.send(start(8000))
        await ws.send(bytes(256 * 1024))  # 16.4 s of 8 kHz audio in one frame: held to real time for 15 s
        await tight.wait_transcript(tid, states=("live",), within=4)
    left = time.monotonic()  # the client is gone: its stream ends now, not when its audio would have been paced
    await tight.wait_transcript(tid, states=("completed",))
    assert time.monotonic() - left < 15, "the stream outlived its client (its frame is paced for 15 s)"
    assert tight.svc.admission.live_publishers() == []
