"""External video platforms behind the platform interface, against a local stand-in.

Whereby and Daily cannot be reached from here, so a local HTTP server stands in for each, speaking the request
and response shapes their REST API references document: Whereby's ``POST /v1/meetings`` (``endDate``,
``fields``, ``recording``; answers ``meetingId``, ``roomName``, ``roomUrl``, ``hostRoomUrl``, ``viewerRoomUrl``),
``DELETE /v1/meetings/{meetingId}``, ``GET /v1/recordings?roomName=`` (``results`` with ``recordingId`` and
``state``) and ``GET /v1/recordings/{recordingId}/access-link`` (``accessLink``); Daily's ``POST /v1/rooms``
(answers ``name``, ``url``), ``POST /v1/meeting-tokens`` (answers ``token``) and ``DELETE /v1/rooms/{name}``.
Both check the Bearer API key. The recording the stand-in serves is real speech, transcribed by the real model
through the job runner. Private mode (PostgreSQL, its job queue, the outbound allowlist of loopback receivers).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from server.features.meetings import recordings
from tests.rest_support import Api, reference

pytest_plugins = ("tests.rest_fixtures",)
KEY = "stand-in-api-key"
SPEECH = "single/librispeech_2412-153948-0000.wav"


class StandIn:
    """What the platforms were asked, and the Starlette app answering like them."""

    def __init__(self, audio: str) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.base = ""
        self.audio = audio
        self.listings = 0
        self.app = Starlette(routes=[
            Route("/whereby/v1/meetings", self.whereby_create, methods=["POST"]),
            Route("/whereby/v1/meetings/{mid}", self.deleted, methods=["DELETE"]),
            Route("/whereby/v1/recordings", self.whereby_recordings, methods=["GET"]),
            Route("/whereby/v1/recordings/{rid}/access-link", self.whereby_link, methods=["GET"]),
            Route("/files/recording.wav", self.file, methods=["GET"]),
            Route("/daily/v1/rooms", self.daily_room, methods=["POST"]),
            Route("/daily/v1/meeting-tokens", self.daily_token, methods=["POST"]),
            Route("/daily/v1/rooms/{name}", self.deleted, methods=["DELETE"]),
        ])

    async def _log(self, request: Request) -> dict[str, Any] | Response:
        body = await request.json() if request.method == "POST" else None
        self.calls.append((request.method, request.url.path + ("?" + request.url.query if request.url.query else ""),
                           body))
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return body or {}

    async def whereby_create(self, request: Request) -> Response:
        body = await self._log(request)
        if isinstance(body, Response):
            return body
        if "endDate" not in body:
            return JSONResponse({"error": "endDate is required"}, status_code=400)
        url = "https://voxlane-test.whereby.com/voxlane3f2a"
        return JSONResponse({"meetingId": "91234", "roomName": "/voxlane3f2a", "roomUrl": url,
                             "startDate": "2026-01-01T00:00:00.000Z", "endDate": body["endDate"],
                             "hostRoomUrl": url + "?roomKey=host", "viewerRoomUrl": url + "?roomKey=view"},
                            status_code=201)

    async def whereby_recordings(self, request: Request) -> Response:
        if isinstance(await self._log(request), Response):
            return Response(status_code=401)
        self.listings += 1
        state = "in_progress" if self.listings == 1 else "completed"  # not ready when first asked
        return JSONResponse({"results": [{"recordingId": "rec-1", "roomName": request.query_params["roomName"],
                                          "state": state, "filename": "recording.wav"}]})

    async def whereby_link(self, request: Request) -> Response:
        await self._log(request)
        return JSONResponse({"accessLink": f"{self.base}/files/recording.wav", "expires": 1999999999999})

    async def file(self, request: Request) -> Response:
        self.calls.append(("GET", request.url.path, None))
        return FileResponse(self.audio, media_type="audio/wav")

    async def daily_room(self, request: Request) -> Response:
        body = await self._log(request)
        if isinstance(body, Response):
            return body
        return JSONResponse({"id": "5e3cf703", "name": "voxlane-daily", "api_created": True,
                             "privacy": body.get("privacy"), "url": "https://voxlane.daily.co/voxlane-daily",
                             "created_at": "2026-01-01T00:00:00.000Z", "config": body.get("properties", {})})

    async def daily_token(self, request: Request) -> Response:
        body = await self._log(request)
        return body if isinstance(body, Response) else JSONResponse({"token": "owner-token"})

    async def deleted(self, request: Request) -> Response:
        body = await self._log(request)
        return body if isinstance(body, Response) else Response(status_code=204)


@contextlib.asynccontextmanager
async def serving(stand_in: StandIn) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(stand_in.app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.02)
    stand_in.base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        yield stand_in.base
    finally:
        server.should_exit = True
        await task


async def test_whereby_rooms_and_their_recording(private_api: Api, audio_dir, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    api = private_api
    stand_in = StandIn(str(audio_dir / SPEECH))
    alice = api.auth("alice-whereby")
    monkeypatch.setattr(recordings, "POLL_SECONDS", 0.2)
    async with serving(stand_in) as base:
        monkeypatch.setattr(api.svc.settings, "whereby_api_url", base + "/whereby/v1")
        r = await api.client.post("/v1/rooms/", json={"name": "Sales", "platform": "whereby"}, headers=alice)
        room = r.json()
        r = await api.client.post(f"/v1/rooms/{room['id']}/meeting", json={}, headers=alice)
        assert r.status_code == 409 and "VOXLANE_WHEREBY_API_KEY" in r.text  # not configured: nothing made
        assert (await api.client.get("/v1/meetings/", headers=alice)).json()["total"] == 0
        monkeypatch.setattr(api.svc.settings, "whereby_api_key", KEY)
        r = await api.client.post(f"/v1/rooms/{room['id']}/meeting", json={}, headers=alice)
        assert r.status_code == 201, r.text
        meeting = r.json()
        assert meeting["platform"] == "whereby" and meeting["room_url"].startswith("https://voxlane-test.whereby.com/")
        assert meeting["host_room_url"].endswith("roomKey=host") and meeting["viewer_room_url"].endswith("roomKey=view")
        method, path, body = stand_in.calls[-1]
        assert (method, path) == ("POST", "/whereby/v1/meetings")
        assert body["endDate"] == meeting["end_date"] and body["recording"]["type"] == "cloud"
        assert {"hostRoomUrl", "viewerRoomUrl"} <= set(body["fields"])

        r = await api.client.post(f"/v1/meetings/{meeting['id']}/end", headers=alice)
        assert r.status_code == 200 and r.json()["status"] == "ended"
        row = await api.wait_transcript(meeting["id"], alice, within=90)
        assert row["status"] == "completed", row
    paths = [(m, p) for m, p, _ in stand_in.calls]
    assert ("DELETE", "/whereby/v1/meetings/91234") in paths
    assert ("GET", "/whereby/v1/recordings?roomName=%2Fvoxlane3f2a") in paths and stand_in.listings >= 2
    assert ("GET", "/files/recording.wav") in paths
    text = " ".join(s["text"] for s in row["segments"]).lower()
    expected = reference(SPEECH).lower().split()
    assert sum(w in text for w in expected) >= len(expected) * 0.7, text


async def test_daily_rooms(private_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api = private_api
    stand_in = StandIn("")
    alice = api.auth("alice-daily")
    async with serving(stand_in) as base:
        monkeypatch.setattr(api.svc.settings, "daily_api_url", base + "/daily/v1")
        monkeypatch.setattr(api.svc.settings, "daily_api_key", KEY)
        room = (await api.client.post("/v1/rooms/", json={"name": "Ops", "platform": "daily", "recording": False,
                                                          "is_locked": True}, headers=alice)).json()
        r = await api.client.post("/v1/meetings/", json={"room_id": room["id"]}, headers=alice)
        assert r.status_code == 201, r.text
        meeting = r.json()
        assert meeting["room_url"] == "https://voxlane.daily.co/voxlane-daily"
        assert meeting["host_room_url"] == meeting["room_url"] + "?t=owner-token"
        created = stand_in.calls[0][2]
        assert created["privacy"] == "private" and "enable_recording" not in created["properties"]
        r = await api.client.post(f"/v1/meetings/{meeting['id']}/end", headers=alice)
        assert r.status_code == 200
        assert (await api.wait_transcript(meeting["id"], alice))["status"] == "completed"  # nothing to ingest
    assert ("DELETE", "/daily/v1/rooms/voxlane-daily", None) in stand_in.calls
