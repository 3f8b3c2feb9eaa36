"""The transcripts API and transcript audio: list/filter/search, PATCH, DELETE, upload, download, stream."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import numpy as np

from bench.metrics import wer_counts
from tests.rest_support import AUDIO, Api, creds, read_wav, reference, wav_bytes

pytest_plugins = ("tests.rest_fixtures",)

JFK = "single/jfk_inaugural_1961_excerpt.wav"
SONNET = "single/librivox_shakespeare_sonnet_001.wav"


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


async def new_transcript(api: Api, name: str | None = None, user: str = "alice") -> str:
    r = await api.client.post("/v1/transcripts/", json={"name": name or f"t-{uuid.uuid4().hex[:8]}"},
                              headers=creds(api, user))
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def upload(api: Api, tid: str, data: bytes, filename: str = "audio.wav", user: str = "alice",
                 content_type: str = "audio/wav"):
    return await api.client.post(f"/v1/transcripts_audio/{tid}/upload", files={"file": (filename, data, content_type)},
                                 headers=creds(api, user))


async def test_upload_transcribes_with_progress_then_download_and_stream(api: Api):
    name = SONNET if not api.private else JFK
    data = (AUDIO / name).read_bytes()
    tid = await new_transcript(api)
    sub = api.svc.hub.subscribe(tid)
    try:
        r = await upload(api, tid, data, "speech.wav")
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["id"] == tid and body["status"] == "processing"
        assert body["upload"]["format"] == "wav" and body["upload"]["size"] == len(data)
        assert body["upload"]["sample_rate"] == 16000 and body["upload"]["filename"] == "speech.wav"
        transcript = await api.wait_transcript(tid, creds(api))
        messages = []
        while not sub.queue.empty():
            messages.append(sub.queue.get_nowait())
    finally:
        api.svc.hub.unsubscribe(sub)
    assert transcript["status"] == "completed" and transcript["error"] is None
    assert abs(transcript["duration"] - read_wav(AUDIO / name)[0].size / 16000) < 0.05
    errors, n = wer_counts(reference(name), " ".join(s["text"] for s in transcript["segments"]))
    assert errors / n < 0.25, errors / n
    statuses = [m["data"] for m in messages if m["type"] == "status" and m["data"]["participant_id"] is None]
    progress = [s["progress"] for s in statuses if s["status"] == "processing" and s["progress"] is not None]
    assert progress == sorted(progress) and progress[0] == 0.0
    if name == SONNET:
        assert len({p for p in progress if 0 < p < 100}) >= 3, f"real progress while transcribing: {progress}"
    assert statuses[-1]["status"] == "completed" and statuses[-1]["progress"] == 100.0
    finals = [m for m in messages if m["type"] == "transcription" and m["data"]["is_final"]]
    assert len(finals) == len(transcript["segments"]), "subscribers heard every stored final"
    # uploading again to a transcript that has audio is a conflict
    r = await upload(api, tid, data)
    assert r.status_code == 409 and r.json()["error"]["code"] == "ALREADY_HAS_AUDIO"
    # download: the original bytes
    r = await api.client.get(f"/v1/transcripts_audio/{tid}/download", headers=creds(api))
    assert r.status_code == 200 and r.content == data and r.headers["content-type"] == "audio/wav"
    assert r.headers["content-disposition"].startswith("attachment")
    # stream: Range requests for seeking
    url = f"/v1/transcripts_audio/{tid}/stream"
    r = await api.client.get(url, headers=creds(api))
    assert r.status_code == 200 and r.headers["accept-ranges"] == "bytes" and len(r.content) == len(data)
    assert r.headers["content-disposition"].startswith("inline")
    r = await api.client.get(url, headers={**creds(api), "Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == data[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    r = await api.client.get(url, headers={**creds(api), "Range": "bytes=-100"})
    assert r.status_code == 206 and r.content == data[-100:]
    r = await api.client.get(url, headers={**creds(api), "Range": f"bytes={len(data) + 10}-"})
    assert r.status_code == 416 and r.json()["error"]["code"] == "RANGE_NOT_SATISFIABLE"
    assert r.headers["content-range"] == f"bytes */{len(data)}"
    r = await api.client.head(url, headers=creds(api))
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(data)
    if api.private:  # an <audio src> cannot send headers: ?token= works for stream/download
        token = api.jwt("alice")
        r = await api.client.get(url, params={"token": token}, headers={"Range": "bytes=0-9"})
        assert r.status_code == 206 and r.content == data[:10]
        r = await api.client.get(url, params={"token": api.jwt("mallory")})
        assert r.status_code == 404


async def test_raw_body_upload_and_no_audio_yet(public_api: Api):
    api = public_api
    tid = await new_transcript(api)
    r = await api.client.get(f"/v1/transcripts_audio/{tid}/download")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NO_AUDIO"
    data = (AUDIO / "single/librispeech_61-70968-0000.wav").read_bytes()
    r = await api.client.post(f"/v1/transcripts_audio/{tid}/upload", content=data,
                              headers={"Content-Type": "audio/wav"})
    assert r.status_code == 202
    transcript = await api.wait_transcript(tid)
    assert transcript["status"] == "completed" and "wizard" in transcript["segments"][0]["text"].lower()


async def test_a_huge_upload_is_refused_before_the_body_is_read(api: Api):
    tid = await new_transcript(api)
    pulled = 0
    megabyte = b"\0" * (1 << 20)

    async def body():
        nonlocal pulled
        for _ in range(600):
            pulled += len(megabyte)
            yield megabyte

    before = tree_size(api.data_dir)
    r = await api.client.post(f"/v1/transcripts_audio/{tid}/upload", content=body(),
                              headers={**creds(api), "Content-Type": "audio/wav", "Content-Length": str(600 << 20)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert r.json()["error"]["details"]["max_bytes"] == 500 << 20
    assert pulled <= 1 << 20, f"the server read {pulled} bytes of a body it refused"
    assert tree_size(api.data_dir) - before < 1 << 20, "nothing was written"
    # the same for a multipart body and for a job
    boundary = "x" * 16
    r = await api.client.post("/api/transcribe/", content=body(), headers={
        **creds(api), "Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(600 << 20)})
    assert r.status_code == 413
    assert (await api.client.get(f"/v1/transcripts/{tid}", headers=creds(api))).json()["status"] == "created"


async def test_a_chunked_upload_is_cut_off_at_the_limit(public_api: Api):
    api = public_api
    tid = await new_transcript(api)
    samples, _ = read_wav(AUDIO / JFK)
    data = wav_bytes(np.tile(samples, 20), 16000)  # ~7 MB
    pulled = 0

    async def body():
        nonlocal pulled
        for i in range(0, len(data), 64 * 1024):
            pulled += 64 * 1024
            yield data[i:i + 64 * 1024]

    api.svc.settings.max_upload_mb = 2
    try:
        r = await api.client.post(f"/v1/transcripts_audio/{tid}/upload", content=body(),
                                  headers={"Content-Type": "audio/wav"})  # no Content-Length: chunked
    finally:
        api.svc.settings.max_upload_mb = 500
    assert r.status_code == 413
    assert pulled <= (2 << 20) + 128 * 1024, "reading stopped at the limit"
    assert not list((api.data_dir / "audio" / tid).glob("*")), "the partial file is gone"
    r = await upload(api, tid, (AUDIO / "single/librispeech_61-70968-0000.wav").read_bytes())
    assert r.status_code == 202, "the transcript is still usable"
    await api.wait_transcript(tid)


async def test_unsupported_and_corrupt_files(api: Api):
    tid = await new_transcript(api)
    r = await upload(api, tid, b"%PDF-1.7 this is not audio at all" * 20, "doc.pdf", content_type="application/pdf")
    assert r.status_code == 415 and r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    r = await api.client.post(f"/v1/transcripts_audio/{tid}/upload", content=b"{}", headers={
        **creds(api), "Content-Type": "application/json"})
    assert r.status_code == 415
    samples, _ = read_wav(AUDIO / "single/librispeech_61-70968-0000.wav")
    r = await upload(api, tid, wav_bytes(np.repeat(samples, 6), 96000))
    assert r.status_code == 415 and r.json()["error"]["code"] == "UNSUPPORTED_SAMPLE_RATE"
    r = await upload(api, tid, wav_bytes(samples[::4], 4000))
    assert r.status_code == 415 and r.json()["error"]["details"]["sample_rate"] == 4000
    r = await api.client.post(f"/v1/transcripts_audio/{tid}/upload", files={"other": ("a.wav", b"RIFF")},
                              headers=creds(api))
    assert r.status_code == 422 and r.json()["error"]["code"] == "MISSING_FILE"
    r = await upload(api, tid, b"")
    assert r.status_code == 422 and r.json()["error"]["code"] == "EMPTY_FILE"
    assert (await api.client.get(f"/v1/transcripts/{tid}", headers=creds(api))).json()["status"] == "created"
    # a corrupt file: a clear error, and the transcript is failed with the reason
    r = await upload(api, tid, b"RIFF\x24\x00\x00\x00WAVE" + os.urandom(4000))
    assert r.status_code == 422 and r.json()["error"]["code"] == "AUDIO_DECODE_ERROR"
    assert "could not be read as audio" in r.json()["error"]["message"]
    got = (await api.client.get(f"/v1/transcripts/{tid}", headers=creds(api))).json()
    assert got["status"] == "failed" and "not a readable audio file" in got["error"]
    # a file whose header is fine but has no audio fails in the background, with the reason
    r = await upload(api, tid, wav_bytes(samples, 16000)[:44])
    assert r.status_code == 202
    got = await api.wait_transcript(tid, creds(api))
    assert got["status"] == "failed" and "no decodable audio" in got["error"]
    # a failed transcript takes a good upload and recovers
    r = await upload(api, tid, wav_bytes(samples, 16000))
    assert r.status_code == 202
    got = await api.wait_transcript(tid, creds(api))
    assert got["status"] == "completed" and got["error"] is None and got["segments"]


async def test_list_filter_search_patch_delete(api: Api):
    tag = uuid.uuid4().hex[:8]
    ids = [await new_transcript(api, f"meeting {tag} {i}") for i in range(3)]
    r = await api.client.get("/v1/transcripts/", params={"search": tag, "size": 2}, headers=creds(api))
    page1 = r.json()
    assert page1["total"] == 3 and len(page1["items"]) == 2 and page1["page"] == 1
    page2 = (await api.client.get("/v1/transcripts/", params={"search": tag, "size": 2, "page": 2},
                                  headers=creds(api))).json()
    assert [i["id"] for i in page1["items"] + page2["items"]] == ids[::-1], "newest first, no overlap"
    r = await api.client.get("/v1/transcripts/", params={"status": "bogus"}, headers=creds(api))
    assert r.status_code == 422
    r = await api.client.get("/v1/transcripts/", params={"size": 0}, headers=creds(api))
    assert r.status_code == 422
    # full-text search over final text, and the status filter
    r = await upload(api, ids[0], (AUDIO / JFK).read_bytes())
    assert r.status_code == 202
    await api.wait_transcript(ids[0], creds(api))
    found = (await api.client.get("/v1/transcripts/", params={"search": "ASK NOT what your country"},
                                  headers=creds(api))).json()
    assert ids[0] in [i["id"] for i in found["items"]]
    done = (await api.client.get("/v1/transcripts/", params={"search": tag, "status": "completed"},
                                 headers=creds(api))).json()
    assert [i["id"] for i in done["items"]] == [ids[0]]
    # PATCH
    patch = {"name": "renamed", "language": "de", "participants": [{"id": "p1", "name": "Ann"}],
             "summary": "short summary", "status": "completed"}
    r = await api.client.patch(f"/v1/transcripts/{ids[1]}", json=patch, headers=creds(api))
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["name"] == "renamed" and got["source_language"] == "de" and got["status"] == "completed"
    assert got["participants"] == [{"id": "p1", "name": "Ann"}] and got["summary"] == {"summary": "short summary"}
    r = await api.client.patch(f"/v1/transcripts/{ids[1]}", json={"status": "exploded"}, headers=creds(api))
    assert r.status_code == 422
    r = await api.client.patch(f"/v1/transcripts/{ids[1]}", json={"owner": "me"}, headers=creds(api))
    assert r.status_code == 422
    # DELETE removes the rows and the audio
    audio_dir = api.data_dir / "audio" / ids[0]
    assert audio_dir.is_dir()
    r = await api.client.delete(f"/v1/transcripts/{ids[0]}", headers=creds(api))
    assert r.status_code == 204 and r.content == b""
    assert not audio_dir.exists()
    assert (await api.client.get(f"/v1/transcripts/{ids[0]}", headers=creds(api))).status_code == 404
    assert await api.svc.store.get_segments(ids[0]) == []
    assert await api.svc.store.list_chunks(transcript_id=ids[0]) == []
    r = await api.client.delete(f"/v1/transcripts/{ids[0]}", headers=creds(api))
    assert r.status_code == 404 and r.json()["error"]["code"] == "TRANSCRIPT_NOT_FOUND"


async def test_delete_while_transcribing_stops_the_work(public_api: Api):
    api = public_api
    tid = await new_transcript(api)
    r = await upload(api, tid, (AUDIO / "single/ljspeech_LJ001-0017_0032.wav").read_bytes())
    assert r.status_code == 202
    for _ in range(100):
        if api.svc.runner.running_for(tid):
            break
        await asyncio.sleep(0.05)
    r = await api.client.delete(f"/v1/transcripts/{tid}")
    assert r.status_code == 204
    assert not api.svc.runner.running_for(tid)
    await asyncio.sleep(0.3)
    assert await api.svc.store.get_segments(tid) == []
    assert not (api.data_dir / "audio" / tid).exists()
    # the queue still works afterwards
    other = await new_transcript(api)
    assert (await upload(api, other, (AUDIO / "single/librispeech_61-70968-0000.wav").read_bytes())).status_code == 202
    assert (await api.wait_transcript(other))["status"] == "completed"


async def test_patch_with_null_fields_is_a_clear_422_and_changes_nothing(api: Api):
    """Found by tests/api/test_schemathesis.py: ``{"name": null}`` reached the store's NOT NULL column (a 500)."""
    tid = await new_transcript(api, "keeps its name")
    h = creds(api)
    for field in ("name", "status", "participants"):
        r = await api.client.patch(f"/v1/transcripts/{tid}", json={field: None, "language": "de"}, headers=h)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "VALIDATION_ERROR" and field in r.json()["error"]["message"]
    row = (await api.client.get(f"/v1/transcripts/{tid}", headers=h)).json()
    assert row["name"] == "keeps its name" and row["source_language"] is None and row["participants"] == []
    # null still clears the nullable fields
    r = await api.client.patch(f"/v1/transcripts/{tid}", json={"language": "de", "summary": "short"}, headers=h)
    assert r.status_code == 200 and r.json()["source_language"] == "de", r.text
    r = await api.client.patch(f"/v1/transcripts/{tid}", json={"language": None, "summary": None}, headers=h)
    assert r.status_code == 200 and r.json()["source_language"] is None and r.json()["summary"] is None, r.text
