"""What a closed or refused Realtime session leaves behind on a node: nothing. A node serves thousands of short
sessions (the flood bench opens 40 at once, again and again); whatever one leaves in a registry stays in the
heap that every full garbage collection scans, and /health waits behind those collections."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
from collections.abc import AsyncIterator

import pytest
import websockets

from server.settings import Settings
from tests.rest_support import JWT_SECRET, Api

pytest_plugins = ("tests.rest_fixtures",)


@pytest.fixture(scope="module")
async def one_stream(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """An app that serves one live stream at once: a second session's first append is refused at admission."""
    from tests.rest_fixtures import running_app  # here: the module is this file's pytest plugin too

    settings = Settings(data_dir=str(tmp_path_factory.mktemp("realtime-leaks") / "data"), asr_backend="synthetic",
                        auth_mode="public", jwt_secret=JWT_SECRET, status_interval=0, ping_interval=0,
                        max_live_streams=1, max_audio_lead_seconds=0, disable_redaction="on")
    async with running_app(settings, private=False) as api:
        yield api


async def recv(ws: websockets.ClientConnection) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 30))


APPEND = json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(9600)).decode()})


async def test_a_session_refused_at_its_first_append_leaves_no_live_transcript(one_stream: Api):
    base = (await one_stream.serve()).replace("http", "ws") + "/v1/realtime?intent=transcription"
    live = one_stream.svc.live
    async with websockets.connect(base) as a, websockets.connect(base) as b:
        a_id, b_id = [(await recv(ws))["session"]["id"] for ws in (a, b)]  # both admitted: neither streams yet
        await a.send(APPEND)
        for _ in range(500):  # a's stream is the one the node serves
            if live.streams(a_id):
                break
            await asyncio.sleep(0.01)
        await b.send(APPEND)
        refused = await recv(b)
        assert refused["type"] == "error" and refused["error"]["code"] == "OVERLOADED", refused
        assert live.find(b_id) is None, "a refused start left its transcript in the live registry"
        assert live.streams(a_id), "the streaming transcript beside it was dropped"
    await one_stream.wait_transcript(a_id, states=("completed",))
    assert live.find(a_id) is None and live.publishers() == []


async def test_a_client_that_leaves_while_its_stream_starts_leaves_no_stream_behind(one_stream: Api,
                                                                                  monkeypatch: pytest.MonkeyPatch):
    """The session's worker is cancelled when its client leaves: here while its registered publisher marks the
    transcript live. That publisher held the node's only stream slot for good before."""
    base = (await one_stream.serve()).replace("http", "ws") + "/v1/realtime?intent=transcription"
    svc = one_stream.svc
    marking, never = asyncio.Event(), asyncio.Event()

    async def held(tid: str) -> int | None:  # Store.take_live: the write that marks it live
        marking.set()
        await never.wait()  # until cancelled
        return None

    monkeypatch.setattr(svc.store, "take_live", held)
    async with websockets.connect(base) as ws:
        tid = (await recv(ws))["session"]["id"]
        await ws.send(APPEND)
        await asyncio.wait_for(marking.wait(), 30)
        assert svc.live.streams(tid)
    for _ in range(1000):  # the handler ends once the stream has flushed
        if svc.live.find(tid) is None and not svc.live.publishers():
            break
        await asyncio.sleep(0.01)
    assert svc.live.find(tid) is None and svc.live.publishers() == [], "the stream outlived its client"
    assert svc.admission.check_live() is None, "its live-stream slot was not given back"


async def test_the_startup_heap_is_frozen_while_the_app_serves_and_thawed_after(
        tmp_path_factory: pytest.TempPathFactory):
    """Full collections skip what startup built (server.app.freeze_startup_heap) while the app serves; an app
    that stops gives it back, so a process that goes on (the tests) collects its cycles."""
    from tests.rest_fixtures import running_app

    settings = Settings(data_dir=str(tmp_path_factory.mktemp("gc-freeze") / "data"), asr_backend="synthetic",
                        auth_mode="public", jwt_secret=JWT_SECRET, status_interval=0, ping_interval=0,
                        disable_redaction="on")
    gc.unfreeze()  # whatever another app of this process froze: the count below is this app's
    async with running_app(settings, private=False) as api:
        assert gc.get_freeze_count() > 0
        assert (await api.client.get("/health")).status_code == 200
    assert gc.get_freeze_count() == 0
