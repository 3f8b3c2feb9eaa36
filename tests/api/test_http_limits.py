"""Bounded HTTP input and abuse limits of the open participant API, on an app of its own with small limits:
JSON bodies capped in size (by Content-Length and while a chunked body streams) and in nesting, audio uploads
capped while streaming, and rate limits per client address and per project that a new conversation cannot
reset, with a bound on a project's unfinished conversations."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import update

from server.app import create_app
from server.settings import Settings
from server.storage.tables import conversations
from tests.process_support import KNOWN_CALIBRATION_S
from tests.read_once import read_once
from tests.rest_support import AUDIO, JWT_SECRET, Api

P = "/api/participant"
JSON_CAP = 256 << 10
UPLOAD_CAP = 1 << 20
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
async def limited(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    tmp = tmp_path_factory.mktemp("limits")
    settings = Settings(data_dir=str(tmp / "data"), cpu_threads=2, auth_mode="public", jwt_secret=JWT_SECRET,
                        status_interval=0, ping_interval=0, max_json_body_kb=JSON_CAP >> 10,
                        max_upload_mb=UPLOAD_CAP >> 20, rate_per_address=30, rate_per_project=6,
                        max_open_conversations=3, calibration_seconds=KNOWN_CALIBRATION_S)
    app = create_app(settings, backend=await read_once(settings))
    async with app.router.lifespan_context(app):
        async with client_at(app, "127.0.0.1") as plain:
            yield Api(app=app, client=plain, settings=settings, private=False)


def client_at(app: object, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60)


def client(api: Api, address: str) -> httpx.AsyncClient:
    """A client the app sees at ``address`` (the ASGI peer address, as uvicorn reports it)."""
    return client_at(api.app, address)


async def new_project(api: Api) -> str:
    return (await api.svc.store.create_project(title=f"limits {uuid.uuid4().hex[:6]}", language="en", portal={},
                                               owner=None))["id"]


def error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status and r.json()["error"]["code"] == code, (r.status_code, r.text)
    return r.json()["error"]


# ------------------------------------------------------------ JSON bodies


async def test_json_body_over_the_cap_is_refused_from_its_content_length(limited: Api):
    async with client(limited, "10.0.0.1") as c:
        big = json.dumps({"project_id": "p", "name": "a" * (JSON_CAP + 1)})
        for path in (P + "/conversations/initiate", "/v1/transcripts/"):  # every JSON body, open or not
            err = error(await c.post(path, content=big, headers=JSON_HEADERS), 413, "PAYLOAD_TOO_LARGE")
            assert err["details"]["max_bytes"] == JSON_CAP
        pulled = []

        async def never_read() -> AsyncIterator[bytes]:
            for _ in range(64):
                pulled.append(1)
                yield b" " * 65536

        r = await c.post(P + "/conversations/initiate", content=never_read(),
                         headers={**JSON_HEADERS, "Content-Length": str(64 * 65536)})
        error(r, 413, "PAYLOAD_TOO_LARGE")
        assert len(pulled) <= 1, "refused from the header, before the body is read"
        # at the cap itself the body is read and judged on its content
        pid = await new_project(limited)
        body = json.dumps({"project_id": pid, "x": "a" * (JSON_CAP - 100)})
        body += " " * (JSON_CAP - len(body))
        assert (await c.post(P + "/conversations/initiate", content=body, headers=JSON_HEADERS)).status_code == 201


async def test_chunked_json_body_is_cut_off_at_the_cap(limited: Api):
    """No Content-Length: the server stops reading as soon as the body passes the cap, not at its end."""
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield b'{"project_id": "p", "name": "'
        for _ in range(40):  # ten times the cap, were it all read
            pulled += 65536
            yield b"a" * 65536

    async with client(limited, "10.0.0.2") as c:
        r = await c.post(P + "/conversations/initiate", content=endless(), headers=JSON_HEADERS)
        error(r, 413, "PAYLOAD_TOO_LARGE")
    assert pulled <= JSON_CAP + 2 * 65536, pulled


async def test_deeply_nested_json_is_a_clear_400(limited: Api):
    pid = await new_project(limited)
    async with client(limited, "10.0.0.3") as c:
        for body in (b"[" * 100_000, b'{"project_id": "p", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"):
            err = error(await c.post(P + "/conversations/initiate", content=body, headers=JSON_HEADERS), 400,
                        "JSON_TOO_DEEP")
            assert err["details"]["max_depth"] == 64

        def nested(levels: int) -> bytes:  # the whole body nests ``levels`` deep
            return (b'{"project_id": "%s", "x": ' % pid.encode() + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}")

        assert (await c.post(P + "/conversations/initiate", content=nested(64), headers=JSON_HEADERS)
                ).status_code == 201
        error(await c.post(P + "/conversations/initiate", content=nested(65), headers=JSON_HEADERS), 400,
              "JSON_TOO_DEEP")
        # brackets inside strings (escaped quotes included) are text, not nesting
        name = '\\"' + "[{" * 140
        body = f'{{"project_id": "{pid}", "name": "{name}"}}'
        r = await c.post(P + "/conversations/initiate", content=body, headers=JSON_HEADERS)
        assert r.status_code == 201 and r.json()["name"] == '"' + "[{" * 140
        error(await c.post(P + "/conversations/initiate", content=b'{"project_id": ', headers=JSON_HEADERS), 400,
              "INVALID_JSON")


# ------------------------------------------------------------ audio uploads


async def test_audio_uploads_keep_their_own_cap_enforced_while_streaming(limited: Api):
    async with client(limited, "10.0.1.1") as c:
        tid = (await c.post("/v1/transcripts/", json={"name": "upload caps"})).json()["id"]
        url = f"/v1/transcripts_audio/{tid}/upload"
        wav = (AUDIO / "single/jfk_inaugural_1961_excerpt.wav").read_bytes()
        assert JSON_CAP < len(wav) < UPLOAD_CAP
        pulled = 0

        async def multipart(epilogue_chunks: int) -> AsyncIterator[bytes]:
            """A valid form with a real file part, then bytes after its closing boundary (which a parser
            ignores, so only counting the whole body stops them)."""
            nonlocal pulled
            yield (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
                   b"Content-Type: audio/wav\r\n\r\n" + wav + b"\r\n--XyZ--\r\n")
            for _ in range(epilogue_chunks):
                pulled += 65536
                yield b"e" * 65536

        headers = {"Content-Type": "multipart/form-data; boundary=XyZ"}
        r = await c.post(url, content=multipart(64), headers=headers)  # 4 MiB of epilogue
        error(r, 413, "PAYLOAD_TOO_LARGE")
        assert pulled <= 2 * UPLOAD_CAP + 65536, pulled

        async def raw(chunks: int) -> AsyncIterator[bytes]:
            yield wav
            for _ in range(chunks):
                yield b"\x00" * 65536

        error(await c.post(url, content=raw(32), headers={"Content-Type": "audio/wav"}), 413, "PAYLOAD_TOO_LARGE")
        # a file bigger than the JSON cap but within the upload cap, streamed: accepted
        r = await c.post(url, content=multipart(0), headers=headers)
        assert r.status_code == 202, r.text
    assert (await limited.wait_transcript(tid))["status"] == "completed"


# ------------------------------------------------------------ rate limits


async def test_rate_limit_per_client_address(limited: Api):
    pid = await new_project(limited)
    async with client(limited, "10.0.2.1") as a, client(limited, "10.0.2.2") as b:
        for _ in range(30):
            assert (await a.get(f"{P}/projects/{pid}")).status_code == 200
        r = await a.get(f"{P}/projects/{pid}")
        err = error(r, 429, "RATE_LIMITED")
        assert 1 <= int(r.headers["retry-after"]) <= 60 and err["details"]["retry_after"] >= 1
        # every route of the participant API counts, whatever conversation or project it names
        r = await a.post(P + "/conversations/initiate", json={"project_id": await new_project(limited)})
        error(r, 429, "RATE_LIMITED")
        assert (await b.get(f"{P}/projects/{pid}")).status_code == 200  # another address has its own allowance


async def test_rate_limit_per_address_groups_an_ipv6_network(limited: Api):
    """An IPv6 host has a whole /64 to take addresses from: the network is one address's allowance."""
    pid = await new_project(limited)
    for i in range(30):  # each request from another address of one /64
        async with client(limited, f"2001:db8:0:7::{i + 1:x}") as c:
            assert (await c.get(f"{P}/projects/{pid}")).status_code == 200
    async with client(limited, "2001:db8:0:7:ffff::1") as same, client(limited, "2001:db8:0:8::1") as other:
        error(await same.get(f"{P}/projects/{pid}"), 429, "RATE_LIMITED")
        assert (await other.get(f"{P}/projects/{pid}")).status_code == 200  # the next /64 is another network


async def test_rate_limit_per_project_is_not_reset_by_a_new_conversation(limited: Api):
    pid = await new_project(limited)
    async with client(limited, "10.0.3.1") as c:
        r = await c.post(P + "/conversations/initiate", json={"project_id": pid})
        assert r.status_code == 201
        cid = r.json()["id"]
        for _ in range(5):
            assert (await c.post(f"{P}/conversations/{cid}/get-upload-url", json={})).status_code == 200
        r = await c.post(P + "/conversations/initiate", json={"project_id": pid})
        error(r, 429, "RATE_LIMITED")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        error(await c.post(f"{P}/conversations/{cid}/get-upload-url", json={}), 429, "RATE_LIMITED")
        other = await new_project(limited)  # the limit is the project's, not the caller's
        assert (await c.post(P + "/conversations/initiate", json={"project_id": other})).status_code == 201


async def test_unfinished_conversations_per_project_are_bounded(limited: Api):
    pid = await new_project(limited)
    store = limited.svc.store
    async with client(limited, "10.0.4.1") as c:
        async def start() -> httpx.Response:
            return await c.post(P + "/conversations/initiate", json={"project_id": pid})

        cids = []
        for _ in range(3):
            r = await start()
            assert r.status_code == 201
            cids.append(r.json()["id"])
        r = await start()
        err = error(r, 429, "RATE_LIMITED")
        assert err["details"]["max_open_conversations"] == 3 and int(r.headers["retry-after"]) >= 1
        assert (await c.post(f"{P}/conversations/{cids[0]}/finish")).status_code == 200
        assert (await start()).status_code == 201  # a finished one no longer counts
        # one abandoned a day ago (never finished, no chunk since) stops counting too
        async with store.engine.begin() as conn:
            await conn.execute(update(conversations).where(conversations.c.id == cids[1])
                               .values(created_at="2000-01-01T00:00:00.000Z"))
        assert (await start()).status_code == 201


async def test_a_path_with_a_control_character_names_nothing(limited: Api):
    """A route pattern's ``$`` also matches before a final newline: ``/v1/rooms/%0A`` was the room list."""
    async with client_at(limited.app, "127.0.0.9") as c:
        assert (await c.get("/v1/rooms/")).status_code == 200
        for path in ("/v1/rooms/%0A", "/v1/transcripts/%0A", "/v1/rooms/a%00b", "/health%0D"):
            r = await c.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", (path, r.text)
            assert r.headers["x-request-id"]
