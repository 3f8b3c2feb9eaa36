"""Transcription jobs (/api/transcribe), their live WebSocket, and durability: kill -9 loses nothing."""

from __future__ import annotations

import asyncio
import json
import re
import time
from urllib.parse import urlsplit

import httpx
import pytest
import websockets

from bench.metrics import wer_counts
from tests.conftest import start_server, stop_server
from tests.db_support import fetch_rows
from tests.http_support import TLS
from tests.rest_support import AUDIO, Api, creds, read_wav, reference, wav_bytes

pytest_plugins = ("tests.rest_fixtures",)

SONNET = "single/librivox_shakespeare_sonnet_002.wav"
AUSTEN = "single/librivox_sense_and_sensibility_ch01_5utt.wav"
DISPLAY = re.compile(r"^\d\d:\d\d:\d\d\.\d\d\d$")


async def start_job(api: Api, name: str, **fields) -> str:
    data = (AUDIO / name).read_bytes()
    r = await api.client.post("/api/transcribe/", files={"file": (name.split("/")[-1], data, "audio/wav")},
                              data=fields, headers=creds(api))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "processing" and body["message"]
    return body["job_id"]


async def test_models(api: Api):
    r = await api.client.get("/api/transcribe/models", headers=creds(api))
    models = r.json()["models"]
    assert models[0]["name"] == "tiny.en" and models[0]["is_downloaded"] is True and models[0]["loaded"] is True
    assert models[0]["full_name"] == "Systran/faster-whisper-tiny.en" and 30 < models[0]["size_mb"] < 200
    assert {"name", "full_name", "is_downloaded", "size_mb", "description"} <= set(models[0])


async def test_job_with_live_updates_then_result(api: Api):
    name = SONNET if not api.private else AUSTEN
    base = await api.serve()
    job_id = await start_job(api, name, model_name="tiny.en", language="en", diarize="false")
    token = f"?token={api.jwt('alice')}" if api.private else ""
    early = await api.client.get(f"/api/transcribe/result/{job_id}", headers=creds(api))
    received = []
    async with websockets.connect(f"{base.replace('http', 'ws', 1)}/api/transcribe/live/{job_id}{token}") as ws:
        async with asyncio.timeout(60):
            async for raw in ws:
                received.append(json.loads(raw))
        assert ws.close_code == 1000
    statuses = [m for m in received if m["type"] == "status"]
    segments = [m for m in received if m["type"] == "segment"]
    assert statuses[-1]["status"] == "completed" and statuses[-1]["progress"] == 100.0
    assert statuses[-1]["chunk_info"]["current_chunk"] == statuses[-1]["chunk_info"]["total_chunks"] >= 1
    processing = [s for s in statuses if s["status"] == "processing"]
    assert all({"message", "progress", "chunk_info", "updated_at"} <= set(s) for s in statuses)
    assert [s["progress"] for s in processing] == sorted(s["progress"] for s in processing)
    if name == SONNET:
        assert early.status_code == 409 and early.json()["error"]["code"] == "JOB_NOT_READY"
        assert len({s["progress"] for s in processing}) >= 3, "progress is reported while transcribing"
        assert any(0 < s["chunk_info"]["current_chunk"] < s["chunk_info"]["total_chunks"] for s in processing)
        assert received.index(segments[0]) < received.index(statuses[-1]), "segments arrive as produced"
    assert segments and all(s["text"].strip() for s in segments), "silence is never sent"
    result = (await api.client.get(f"/api/transcribe/result/{job_id}", headers=creds(api))).json()
    assert [s["text"] for s in result["segments"]] == [s["text"] for s in segments]
    assert set(result) >= {"segments", "text", "language", "audio_duration"}
    assert result["language"] == "en" and abs(result["audio_duration"] - read_wav(AUDIO / name)[0].size / 16000) < 0.05
    for seg in result["segments"]:
        assert set(seg) == {"start", "end", "text", "speaker", "speaker_confidence", "start_display", "end_display"}
        assert DISPLAY.match(seg["start_display"]) and DISPLAY.match(seg["end_display"])
        assert 0 <= seg["start"] <= seg["end"] <= result["audio_duration"] + 0.5
    errors, n = wer_counts(reference(name), result["text"])
    assert errors / n < 0.25, errors / n
    status = (await api.client.get(f"/api/transcribe/status/{job_id}", headers=creds(api))).json()
    assert status["status"] == "completed" and status["progress"] == 100.0 and status["job_id"] == job_id
    jobs = (await api.client.get("/api/transcribe/jobs", headers=creds(api))).json()
    assert jobs["count"] == len(jobs["jobs"]) and job_id in [j["job_id"] for j in jobs["jobs"]]
    assert {"job_id", "status", "progress", "updated_at", "message"} <= set(jobs["jobs"][0])
    debug = (await api.client.get(f"/api/transcribe/debug/{job_id}", headers=creds(api))).json()
    assert debug["cached_segments"] == len(result["segments"]) and debug["latest_time"] > 0
    assert debug["options"] == {"model_name": "tiny.en", "language": "en", "diarize": False,
                                "filename": name.split("/")[-1], "sample_rate": 16000, "channels": 1}
    # the job is a transcript: the same store, the same audio routes
    t = (await api.client.get(f"/v1/transcripts/{job_id}", headers=creds(api))).json()
    assert t["status"] == "completed" and len(t["segments"]) == len(result["segments"])
    r = await api.client.get(f"/v1/transcripts_audio/{job_id}/download", headers=creds(api))
    assert r.content == (AUDIO / name).read_bytes()
    # a finished job's socket replays segments and the final status, then closes
    async with websockets.connect(f"{base.replace('http', 'ws', 1)}/api/transcribe/live/{job_id}{token}") as ws:
        replay = [json.loads(m) async for m in ws]
    assert [m["type"] for m in replay] == ["segment"] * len(segments) + ["status"]


async def test_job_errors(api: Api):
    unknown = (await api.client.get("/api/transcribe/status/nope", headers=creds(api))).json()
    assert unknown["status"] == "not_found" and unknown["job_id"] == "nope" and unknown["progress"] == 0
    assert unknown["message"] == "Transcription job not found or expired"
    r = await api.client.get("/api/transcribe/result/nope", headers=creds(api))
    assert r.status_code == 404 and r.json()["error"]["code"] == "JOB_NOT_FOUND"
    assert (await api.client.get("/api/transcribe/debug/nope", headers=creds(api))).status_code == 404
    before = (await api.client.get("/v1/transcripts/", headers=creds(api))).json()["total"]
    data = (AUDIO / "single/librispeech_61-70968-0000.wav").read_bytes()
    for fields, code in (({"model_name": "large-v3"}, "MODEL_NOT_AVAILABLE"), ({"language": "english!"}, None),
                         ({"diarize": "maybe"}, None)):
        r = await api.client.post("/api/transcribe/", files={"file": ("a.wav", data)}, data=fields,
                                  headers=creds(api))
        assert r.status_code == 422, fields
        assert code is None or r.json()["error"]["code"] == code
    r = await api.client.post("/api/transcribe/", files={"file": ("a.txt", b"just some text, no audio" * 9)},
                              headers=creds(api))
    assert r.status_code == 415
    r = await api.client.post("/api/transcribe/", files={"file": ("a.wav", b"RIFF\x00\x00\x00\x00WAVE" + b"\x01" * 99)},
                              headers=creds(api))
    assert r.status_code == 422 and r.json()["error"]["code"] == "AUDIO_DECODE_ERROR"
    after = (await api.client.get("/v1/transcripts/", headers=creds(api))).json()["total"]
    assert after == before, "a refused job leaves nothing behind"
    base = await api.serve()
    token = f"?token={api.jwt('alice')}" if api.private else ""
    async with websockets.connect(f"{base.replace('http', 'ws', 1)}/api/transcribe/live/nope{token}") as ws:
        first = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
    assert first["type"] == "status" and first["status"] == "not_found" and info.value.rcvd.code == 4404
    if api.private:
        async with websockets.connect(f"{base.replace('http', 'ws', 1)}/api/transcribe/live/nope") as ws:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd.code == 4401


@pytest.mark.faults
async def test_kill_9_loses_nothing(tmp_path, empty_database_url):
    """Acknowledged work survives SIGKILL: the server resumes what was processing and what was queued (on
    both databases: the server creates the schema in an empty one), and the job killed and resumed reads as the
    same file's job that ran whole. Durability is the subject, not the words: the server runs the synthetic
    backend, paced so that the job is still running when the server is killed."""
    long_file = "single/librivox_sense_and_sensibility_ch01_5utt.wav"  # 25 s: 7.5 s of decoding, killed at 20 %
    env = {"VOXLANE_REST_WORKERS": "1", "VOXLANE_DATABASE_URL": empty_database_url,
           "VOXLANE_ASR_BACKEND": "synthetic", "VOXLANE_SYNTHETIC_RTF": "0.3"}
    srv = start_server(tmp_path, **env)
    try:
        async with httpx.AsyncClient(verify=TLS, base_url=srv.url, timeout=60) as c:
            r = await c.post("/api/transcribe/", files={"file": ("long.wav", (AUDIO / long_file).read_bytes())})
            job_id = r.json()["job_id"]
            # a kiosk chunk confirmed behind it waits in the queue (one worker)
            pid = (await c.post("/api/projects", json={"title": "p"})).json()["id"]
            cid = (await c.post("/api/participant/conversations/initiate", json={"project_id": pid})).json()["id"]
            url = (await c.post(f"/api/participant/conversations/{cid}/get-upload-url", json={})).json()
            samples, rate = read_wav(AUDIO / "single/jfk_inaugural_1961_excerpt.wav")
            parts = urlsplit(url["url"])
            r = await c.put(parts.path + "?" + parts.query, content=wav_bytes(samples, rate))
            assert r.status_code == 200
            r = await c.post(f"/api/participant/conversations/{cid}/confirm-upload", json={"key": url["key"]})
            assert r.status_code == 202
            await c.post(f"/api/participant/conversations/{cid}/finish")
            deadline = time.monotonic() + 60
            while (await c.get(f"/api/transcribe/status/{job_id}")).json()["progress"] < 20:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
    finally:
        srv.process.kill()  # SIGKILL: no shutdown code runs
        srv.process.wait()
    states = dict(await fetch_rows(empty_database_url, "SELECT kind, status FROM chunks"))
    [(partial,)] = await fetch_rows(empty_database_url, "SELECT COUNT(*) FROM segments WHERE transcript_id = :t",
                                    t=job_id)
    assert states == {"job": "processing", "chunk": "uploaded"} and partial > 0
    stray = srv.data_dir / "audio" / job_id / ".incoming-interrupted"  # a body that was still arriving
    stray.write_bytes(b"RIFF" + b"\0" * 1000)
    srv = start_server(tmp_path, **env)
    try:
        async with httpx.AsyncClient(verify=TLS, base_url=srv.url, timeout=60) as c:
            deadline = time.monotonic() + 90
            while (status := (await c.get(f"/api/transcribe/status/{job_id}")).json())["status"] != "completed":
                assert status["status"] == "processing" and time.monotonic() < deadline, status
                await asyncio.sleep(0.2)
            result = (await c.get(f"/api/transcribe/result/{job_id}")).json()
            debug = (await c.get(f"/api/transcribe/debug/{job_id}")).json()
            while (conv := (await c.get(f"/api/participant/projects/{pid}/conversations/{cid}")).json())[
                    "status"] != "completed":
                assert time.monotonic() < deadline, conv
                await asyncio.sleep(0.2)
            r = await c.post("/api/transcribe/", files={"file": ("long.wav", (AUDIO / long_file).read_bytes())})
            whole_id = r.json()["job_id"]
            while (await c.get(f"/api/transcribe/status/{whole_id}")).json()["status"] != "completed":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            whole = (await c.get(f"/api/transcribe/result/{whole_id}")).json()
    finally:
        stop_server(srv)
    assert debug["item"]["attempts"] == 2
    assert not stray.exists(), "unacknowledged partial bodies are removed at startup"
    starts = [s["start"] for s in result["segments"]]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), "no segment stored twice"
    assert result["text"] == whole["text"] and len(result["text"].split()) > 40, (result["text"], whole["text"])
    assert [(s["start"], s["end"]) for s in result["segments"]] == [(s["start"], s["end"]) for s in whole["segments"]]
    assert len(conv["text"].split()) > 20, conv["text"]  # the 11 s chunk queued behind the job, read after it
