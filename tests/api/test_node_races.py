"""Two nodes on one database, in-process (each a whole app with the synthetic backend): what they race for is
decided in the database, so one wins whichever node a request reaches. A signed PUT sent to both is received by
one (the other is refused before it reads a byte), two uploads to one transcript queue one job, a summary job
asked of one node is answered by the other, and a node with neither live audio nor jobs loads no model."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import websockets

from server.settings import Settings
from tests.rest_fixtures import ROOMY_LIMITS, running_app
from tests.rest_support import AUDIO, Api, upload_url

pytest_plugins = ("tests.db_support",)

SPEECH = (AUDIO / "single" / "jfk_inaugural_1961_excerpt.wav").read_bytes()
P = "/api/participant"


@contextlib.asynccontextmanager
async def two_nodes(tmp_path: Path, database_url: str, **b_settings: object) -> AsyncIterator[tuple[Api, Api]]:
    """Nodes A (jobs and live) and B on one database and one data dir (the audio store two nodes share)."""
    common = {"data_dir": str(tmp_path / "data"), "database_url": database_url, "diarization": "off",
              "status_interval": 0, "ping_interval": 0, "asr_backend": "synthetic", **ROOMY_LIMITS}
    async with running_app(Settings(**common), private=False) as a:  # type: ignore[arg-type]
        async with running_app(Settings(**{**common, **b_settings}), private=False) as b:  # type: ignore[arg-type]
            yield a, b


async def slow_body(data: bytes, seconds: float) -> AsyncIterator[bytes]:
    """The body of a client on a slow line: its pieces come over ``seconds``."""
    pieces = 20
    step = len(data) // pieces + 1
    for i in range(0, len(data), step):
        yield data[i:i + step]
        await asyncio.sleep(seconds / pieces)


async def signed_put_target(api: Api, title: str) -> tuple[str, str]:
    """A kiosk conversation and the path and query of its signed upload URL."""
    pid = (await api.client.post("/api/projects", json={"title": title})).json()["id"]
    cid = (await api.client.post(P + "/conversations/initiate", json={"project_id": pid})).json()["id"]
    parts = urlsplit((await upload_url(api, cid))["url"])
    return cid, parts.path + "?" + parts.query


async def test_one_signed_put_sent_to_two_nodes_is_taken_by_one(tmp_path: Path, database_url: str):
    async with two_nodes(tmp_path, database_url) as (a, b):
        cid, target = await signed_put_target(a, "races")
        first = asyncio.create_task(a.client.put(target, content=slow_body(SPEECH, 2.0),
                                                 headers={"content-type": "audio/wav"}))
        await asyncio.sleep(0.5)  # A is reading its body
        sent: list[bytes] = []

        async def counted() -> AsyncIterator[bytes]:  # B's body, held after its first piece until B answers
            async for piece in slow_body(SPEECH, 60.0):
                sent.append(piece)
                yield piece

        second = await b.client.put(target, content=counted(), headers={"content-type": "audio/wav"})
        assert second.status_code == 409 and second.json()["error"]["code"] == "UPLOAD_URL_USED"
        assert len(sent) < 20, "refused before its body was read"
        assert not first.done(), "while A still reads the first body"
        done = await first
        assert done.status_code == 200, done.text
        chunks = tmp_path / "data" / "audio" / cid / "chunks"
        assert [p.name for p in chunks.iterdir() if p.name.startswith(".incoming-")] == [], "no body left behind"
        again = await b.client.put(target, content=SPEECH, headers={"content-type": "audio/wav"})
        assert again.status_code == 409


async def test_a_put_cut_short_leaves_its_url_usable(tmp_path: Path, database_url: str):
    async with two_nodes(tmp_path, database_url) as (a, b):
        _, target = await signed_put_target(a, "cut")
        r = await a.client.put(target, content=b"not audio at all, just text" * 10,
                               headers={"content-type": "audio/wav"})
        assert r.status_code == 415
        r = await b.client.put(target, content=SPEECH, headers={"content-type": "audio/wav"})
        assert r.status_code == 200, "a refused body gives the URL back"


async def test_two_uploads_to_one_transcript_on_two_nodes_queue_one_job(tmp_path: Path, database_url: str):
    async with two_nodes(tmp_path, database_url) as (a, b):
        tid = (await a.client.post("/v1/transcripts/", json={"name": "two uploads"})).json()["id"]
        path = f"/v1/transcripts_audio/{tid}/upload"
        answers = await asyncio.gather(
            a.client.post(path, content=slow_body(SPEECH, 1.0), headers={"content-type": "audio/wav"}),
            b.client.post(path, content=slow_body(SPEECH, 1.0), headers={"content-type": "audio/wav"}))
        codes = sorted(r.status_code for r in answers)
        assert codes == [202, 409], [r.text for r in answers]
        store = a.svc.store
        assert len(await store.list_chunks(transcript_id=tid, kind="upload")) == 1
        stored = list((tmp_path / "data" / "audio" / tid).glob("upload*"))
        assert len(stored) == 1, "the losing upload's file went"
        for _ in range(200):
            if (await store.get_transcript(tid) or {}).get("status") == "completed":
                break
            await asyncio.sleep(0.1)
        [chunk] = await store.list_chunks(transcript_id=tid, kind="upload")
        assert chunk["status"] == "transcribed" and chunk["attempts"] == 1


async def test_a_summary_job_asked_of_one_node_is_answered_by_another(tmp_path: Path, database_url: str):
    async with two_nodes(tmp_path, database_url, jobs="off") as (a, b):
        text = "We agreed to ship the release on Friday. Anna will write the notes. The budget stays as it is."
        r = await b.client.post("/api/summary/", json={"full_text": text, "model_name": "extractive"})
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        for _ in range(200):  # node A takes the job (B takes none)
            status = (await b.client.get(f"/api/summary/status/{job}")).json()
            if status["status"] == "completed":
                break
            await asyncio.sleep(0.1)
        assert status["status"] == "completed", status
        assert (await a.client.get(f"/api/summary/{job}")).json()["summary"]
        assert (await b.client.get(f"/api/summary/{job}")).json() == (await a.client.get(f"/api/summary/{job}")).json()
        assert (await a.client.get("/api/summary/status/nope")).status_code == 404


async def test_a_webrtc_answer_that_reaches_another_node_is_told_where_its_offer_is(tmp_path: Path,
                                                                                     database_url: str):
    async with two_nodes(tmp_path, database_url) as (a, b):
        tid = (await a.client.post("/v1/transcripts/", json={"name": "webrtc"})).json()["id"]
        offer = await a.client.post(f"/v1/transcripts_webrtc/{tid}/offer", json={"type": "request"})
        assert offer.status_code == 200, offer.text
        session = offer.json()["session_id"]
        answer = {"session_id": session, "type": "answer", "sdp": "v=0"}
        r = await b.client.post(f"/v1/transcripts_webrtc/{tid}/answer", json=answer)
        assert r.status_code == 421 and r.json()["error"]["code"] == "WEBRTC_SESSION_ELSEWHERE", r.text
        assert "transcript id" in r.json()["error"]["message"]
        r = await a.client.post(f"/v1/transcripts_webrtc/{tid}/answer", json={**answer, "session_id": "nope"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "WEBRTC_SESSION_NOT_FOUND"


async def test_a_node_without_live_audio_or_jobs_loads_no_model(tmp_path: Path, database_url: str):
    settings = Settings(data_dir=str(tmp_path / "data"), database_url=database_url, live="off", jobs="off",
                        status_interval=0, ping_interval=0, **ROOMY_LIMITS)  # type: ignore[arg-type]
    async with running_app(settings, private=False) as api:
        assert api.svc.engine is None and api.svc.vad_model is None and api.svc.runner is None
        r = await api.client.post("/v1/audio/transcriptions", files={"file": ("a.wav", SPEECH)},
                                  data={"model": "whisper-1"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "NO_MODEL_ON_NODE"
        tid = (await api.client.post("/v1/transcripts/", json={"name": "x"})).json()["id"]
        job = await api.client.post("/api/transcribe/", files={"file": ("a.wav", SPEECH)})
        assert job.status_code == 202, "jobs are accepted and queued for the nodes that take them"
        base = await api.serve()
        async with websockets.connect(f"{base.replace('http', 'ws', 1)}/v1/transcripts_websocket/{tid}") as ws:
            await ws.recv()  # the status a new subscriber is told
            await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}}))
            answer = json.loads(await ws.recv())
        assert answer["type"] == "error" and answer["data"]["code"] == "OVERLOADED"
        assert answer["data"]["details"]["reason"] == "not_a_live_node"


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Several nodes share PostgreSQL."""
    return request.param

