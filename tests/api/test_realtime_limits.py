"""What one client may cost a node over ``WS /v1/realtime`` (and the WebRTC offers beside it): open sessions
hold their caller's stream slots and idle out, a long append neither stops the socket being read nor outlives
its client, and a session that keeps sending invalid or oversized events is told and closed. On one app with
tight limits and the synthetic backend (ASR is not the point here)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from server.settings import Settings
from tests.rest_support import JWT_SECRET, Api

pytest_plugins = ("tests.rest_fixtures",)

IDLE_S = 2.0
BAD = 6


@pytest.fixture(scope="module")
async def tight(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    from tests.rest_fixtures import running_app  # here: the module is this file's pytest plugin too

    settings = Settings(data_dir=str(tmp_path_factory.mktemp("realtime-limits") / "data"), asr_backend="synthetic",
                        auth_mode="public", jwt_secret=JWT_SECRET, status_interval=0, ping_interval=0,
                        max_streams_per_address=2, session_idle_timeout=IDLE_S, ws_max_bad_messages=BAD,
                        max_audio_lead_seconds=1.0, max_webrtc_offers_per_caller=2, disable_redaction="on")
    async with running_app(settings, private=False) as api:
        yield api


def url(base: str) -> str:
    return base.replace("http", "ws") + "/v1/realtime?intent=transcription"


async def until_closed(ws: websockets.ClientConnection) -> tuple[list[dict], ConnectionClosed]:
    events: list[dict] = []
    with pytest.raises(ConnectionClosed) as info:
        while True:
            events.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
    return events, info.value


async def recv(ws: websockets.ClientConnection) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 30))


def append(seconds: float) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(int(48000 * seconds)))
                       .decode()})


async def test_open_sessions_hold_slots_and_idle_out(tight: Api):
    base = await tight.serve()
    here = {"local_addr": ("127.0.0.2", 0)}  # an address of its own: the other tests' sessions do not count
    async with websockets.connect(url(base), **here) as a, websockets.connect(url(base), **here) as b:
        for ws in (a, b):
            assert (await recv(ws))["type"] == "session.created"
        async with websockets.connect(url(base), **here) as third:  # no audio from either: two open sessions
            events, closed = await until_closed(third)
            assert closed.rcvd.code == 1013 and events[-1]["error"]["code"] == "RATE_LIMITED", events
        await a.send(append(0.2))  # audio: a's idle clock starts again
        events, closed = await until_closed(b)  # b never sent audio
        assert events[-1]["error"]["code"] == "SESSION_IDLE" and closed.rcvd.code == 1000
        for _ in range(100):  # b's slot is given back as its handler ends, just after the close
            async with websockets.connect(url(base), **here) as again:
                if (await recv(again))["type"] == "session.created":
                    break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("b's slot was not given back")


async def test_invalid_and_oversized_events_are_refused_and_a_flood_closes(tight: Api):
    base = await tight.serve()
    async with websockets.connect(url(base), max_size=None) as ws:
        await recv(ws)
        update = {"type": "session.update", "session": {"type": "transcription"}, "event_id": "big",
                  **{f"k{i}": i for i in range(20000)}}  # 300 KB of keys: refused for its size, never parsed
        await ws.send(json.dumps(update))
        error = (await recv(ws))["error"]
        assert error["code"] == "MESSAGE_TOO_LARGE" and "input_audio_buffer.append" in error["message"], error
        audio = base64.b64encode(b"\xff" * 96000).decode()  # 2 s of near silence, all '/' in base64
        assert len(audio) > 64 * 1024
        big = json.dumps({"type": "input_audio_buffer.append", "event_id": "e", "audio": audio})
        await ws.send(big.replace("/", "\\/"))  # JSON's optional escape of '/' (PHP's encoder writes it)
        await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "c"}))
        done = await recv(ws)
        assert done["type"] == "input_audio_buffer.committed", done  # the append was taken: the commit has audio
        for _ in range(BAD - 1):
            await ws.send("{not json")
        events, closed = await until_closed(ws)
        codes = [e["error"]["code"] for e in events if e["type"] == "error"]
        assert codes[-1] == "TOO_MANY_ERRORS" and codes.count("INVALID_JSON") == BAD - 1, codes
        assert closed.rcvd.code == 1008


async def test_a_long_append_is_bounded_and_its_stream_ends_with_the_client(tight: Api):
    base = await tight.serve()
    async with websockets.connect(url(base), max_size=None) as ws:
        tid = (await recv(ws))["session"]["id"]
        await ws.send(append(16))  # over the lead and a quarter of the keepalive: refused, the session goes on
        error = (await recv(ws))["error"]
        assert error["code"] == "INVALID_PARAMS" and "smaller appends" in error["message"], error
        await ws.send(append(14))  # held to real time for 13 s: the socket is still read meanwhile
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        await tight.wait_transcript(tid, states=("live",), within=4)
    left = time.monotonic()  # the client is gone: its stream ends now, not when its audio would have been paced
    await tight.wait_transcript(tid, states=("completed",))
    assert time.monotonic() - left < 13, "the stream outlived its client (its audio would take 13 s more)"
    assert tight.svc.admission.live_publishers() == []


async def test_pending_webrtc_offers_are_bounded_per_caller(tight: Api):
    tid = (await tight.client.post("/v1/transcripts/", json={"name": "offers"})).json()["id"]
    for _ in range(2):  # server offers waiting for an answer
        r = await tight.client.post(f"/v1/transcripts_webrtc/{tid}/offer", json={"type": "request"})
        assert r.status_code == 200, r.text
    r = await tight.client.post(f"/v1/transcripts_webrtc/{tid}/offer", json={"type": "request"})
    assert r.status_code == 429 and r.json()["error"]["details"]["reason"] == "webrtc_pending", r.text
    assert int(r.headers["retry-after"]) >= 1
    await tight.app.state.webrtc.close_all()
