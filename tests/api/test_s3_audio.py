"""Audio in an S3 bucket (moto's server): kiosk chunks PUT straight to the bucket, uploads, downloads with Range,
live recordings, exports and deletes all go through the bucket, and nothing stays on the node's disk.

One app on S3 serves the module (public mode, SQLite); the bucket is the module's own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from bench.metrics import wer_counts
from protocol import Participant, StartParams
from tests.http_support import TLS
from tests.rest_support import AUDIO, Api, read_wav, reference, upload_url, wav_bytes

if TYPE_CHECKING:
    from tests.s3_support import MotoServer

pytest_plugins = ("tests.s3_support", "tests.rest_fixtures")

P = "/api/participant"
JFK = "single/jfk_inaugural_1961_excerpt.wav"
KIOSK_FILE = "single/librispeech_2412-153948-0000.wav"


@pytest.fixture(scope="module")
def bucket(s3_server: MotoServer) -> Iterator[str]:
    name = s3_server.make_bucket()
    yield name
    s3_server.drop_bucket(name)


@pytest.fixture(scope="module")
async def s3_api(s3_server: MotoServer, bucket: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[Api]:
    from tests.rest_fixtures import ROOMY_LIMITS, running_app  # a plugin of this module too

    settings = s3_server.settings(bucket, tmp_path_factory.mktemp("rest-s3") / "data", s3_prefix="vx",
                                  cpu_threads=2, status_interval=0, ping_interval=0, **ROOMY_LIMITS)
    async with running_app(settings, private=False) as api:
        yield api


@pytest.fixture
def sent_to_api(s3_api: Api) -> Iterator[list[int]]:
    """The size of every request body the test sends to the API."""
    sizes: list[int] = []

    async def record(request: httpx.Request) -> None:
        sizes.append(int(request.headers.get("content-length") or 0))

    s3_api.client.event_hooks["request"].append(record)
    yield sizes
    s3_api.client.event_hooks["request"].remove(record)


def local_files(api: Api, tid: str) -> list[Path]:
    """Files of a transcript on the node's disk, wherever they might be."""
    return [p for p in api.data_dir.rglob("*") if p.is_file() and tid in p.parts]


async def kiosk_conversation(api: Api) -> str:
    r = await api.client.post("/api/projects", json={"title": "S3 hall", "language": "en"})
    assert r.status_code == 201, r.text
    r = await api.client.post(P + "/conversations/initiate", json={"project_id": r.json()["id"]})
    assert r.status_code == 201, r.text
    return r.json()["id"]



async def put_to_bucket(url: dict, data: bytes) -> None:
    async with httpx.AsyncClient(verify=TLS) as client:
        r = await client.put(url["url"], content=data, headers=url["headers"])
    assert r.status_code == 200, r.text


async def confirm(api: Api, cid: str, key: str) -> httpx.Response:
    return await api.client.post(f"{P}/conversations/{cid}/confirm-upload", json={"key": key})


async def test_kiosk_chunks_go_straight_to_the_bucket(s3_api: Api, s3_server: MotoServer, bucket: str,
                                                      sent_to_api: list[int]):
    api = s3_api
    samples, rate = read_wav(AUDIO / KIOSK_FILE)
    half = len(samples) // 2
    chunks = [wav_bytes(samples[:half], rate), wav_bytes(samples[half:], rate)]
    cid = await kiosk_conversation(api)
    check = (await api.client.post(f"{P}/conversations/{cid}/check-s3")).json()
    assert check["ok"] is True and check["storage"] == "s3" and check["writable"] is True
    urls = [await upload_url(api, cid, content_type="audio/wav") for _ in chunks]
    for u in urls:
        assert u["url"].startswith(f"{s3_server.endpoint}/{bucket}/vx/{cid}/chunks/")
        assert "X-Amz-Signature=" in u["url"] and u["headers"] == {"Content-Type": "audio/wav"}
    for u, data in zip(reversed(urls), reversed(chunks), strict=True):  # out of order, as kiosks may
        await put_to_bucket(u, data)
        r = await confirm(api, cid, u["key"])
        assert r.status_code == 202, r.text
    assert (await api.client.post(f"{P}/conversations/{cid}/finish")).status_code == 200
    transcript = await api.wait_transcript(cid, within=120)
    assert transcript["status"] == "completed", transcript
    errors, n = wer_counts(reference(KIOSK_FILE), " ".join(s["text"] for s in transcript["segments"]))
    assert errors / n < 0.3, f"WER {errors / n:.3f}"
    stored = {k: v for k, v in s3_server.objects(bucket).items() if k.startswith(f"vx/{cid}/")}
    rows = await api.svc.store.list_chunks(transcript_id=cid, kind="chunk")
    assert {f"vx/{row['path']}" for row in rows} <= set(stored), "the rows hold the chunks' keys"
    assert stored[f"vx/{cid}/recording.wav"] > 44, "the merged recording is in the bucket"
    r = await api.client.get(f"/v1/transcripts_audio/{cid}/download")
    assert r.status_code == 200 and abs((len(r.content) - 44) / 32000 - len(samples) / rate) < 0.1
    assert max(sent_to_api) < 4096 < min(len(c) for c in chunks), "no chunk's bytes went through the API"
    assert local_files(api, cid) == [], "no copy stays on the node"


async def test_confirm_checks_the_object_in_the_bucket(s3_api: Api, s3_server: MotoServer, bucket: str):
    api = s3_api
    cid = await kiosk_conversation(api)
    samples, rate = read_wav(AUDIO / KIOSK_FILE)
    good = wav_bytes(samples[: rate * 3], rate)
    url = await upload_url(api, cid)
    assert url["headers"] == {}, "no content type asked for: none signed"
    row = await api.svc.store.get_chunk_by_key(url["key"])
    # nothing PUT yet
    r = await confirm(api, cid, url["key"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "NOT_UPLOADED"
    # not audio: refused, removed, and the URL takes the right bytes afterwards
    await put_to_bucket(url, b"%PDF-1.7 not audio at all" * 40)
    r = await confirm(api, cid, url["key"])
    assert r.status_code == 415 and r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert f"vx/{row['path']}" not in s3_server.objects(bucket)
    # too large for VOXLANE_MAX_UPLOAD_MB: refused before a byte of it is read, and removed
    await put_to_bucket(url, wav_bytes(np.zeros(rate * 40, dtype=np.int16), rate))  # 1.3 MB
    api.svc.settings.max_upload_mb = 1
    try:
        r = await confirm(api, cid, url["key"])
    finally:
        api.svc.settings.max_upload_mb = 500
    assert r.status_code == 413 and r.json()["error"]["details"]["max_bytes"] == 1 << 20
    assert f"vx/{row['path']}" not in s3_server.objects(bucket)
    await put_to_bucket(url, good)
    r = await confirm(api, cid, url["key"])
    assert r.status_code == 202 and r.json()["status"] in ("uploaded", "processing", "transcribed"), r.text
    confirmed = await api.svc.store.get_chunk_by_key(url["key"])
    assert confirmed["format"] == "wav" and confirmed["size"] == len(good)
    r = await confirm(api, cid, url["key"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "ALREADY_CONFIRMED"
    # unknown keys, and another conversation's key: 404 from voxlane, the bucket is not asked
    other = await kiosk_conversation(api)
    r = await confirm(api, other, url["key"])
    assert r.status_code == 404 and r.json()["error"]["code"] == "UNKNOWN_UPLOAD_KEY"
    # expired (moto would take a late PUT: the expiry is voxlane's to enforce at confirm)
    late = await upload_url(api, cid)
    await put_to_bucket(late, good)
    late_row = await api.svc.store.get_chunk_by_key(late["key"])
    await api.svc.store.update_chunk(late_row["id"], expires_at=time.time() - 1)
    r = await confirm(api, cid, late["key"])
    assert r.status_code == 410 and r.json()["error"]["code"] == "UPLOAD_KEY_EXPIRED"
    assert (await api.svc.store.get_chunk_by_key(late["key"]))["status"] == "issued"


async def test_a_confirmed_chunk_is_out_of_its_urls_reach_and_expired_uploads_go(
        s3_api: Api, s3_server: MotoServer, bucket: str):
    """A presigned PUT stays valid until it expires, whatever the server does: confirming moves the checked object
    where its URL cannot write, so a second PUT changes nothing that is transcribed, and once the URLs expired
    housekeeping removes what they left (that second PUT, a chunk never confirmed)."""
    from server.jobs.expired_uploads import GRACE_S, remove_expired_uploads

    api = s3_api
    cid = await kiosk_conversation(api)
    samples, rate = read_wav(AUDIO / KIOSK_FILE)
    good = wav_bytes(samples[: rate * 3], rate)
    url, never = await upload_url(api, cid), await upload_url(api, cid)
    presigned = (await api.svc.store.get_chunk_by_key(url["key"]))["path"]
    await put_to_bucket(url, good)
    await put_to_bucket(never, good)
    r = await confirm(api, cid, url["key"])
    assert r.status_code == 202, r.text
    row = await api.svc.store.get_chunk_by_key(url["key"])
    assert row["path"] != presigned and row["path"].endswith(presigned.rsplit("/", 1)[1])
    assert f"vx/{presigned}" not in s3_server.objects(bucket), "moved, not copied"
    await put_to_bucket(url, b"RIFF" + b"\0" * 4000)  # the same URL again, after the confirmation
    objects = s3_server.objects(bucket)
    assert objects[f"vx/{row['path']}"] == len(good), "what is transcribed is what was checked"
    assert f"vx/{presigned}" in objects
    r = await confirm(api, cid, url["key"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "ALREADY_CONFIRMED"
    never_row = await api.svc.store.get_chunk_by_key(never["key"])
    never_path = never_row["path"]
    # the later of the two URLs' expiries: a busy machine may issue the second more than a second after the first
    expiry = max(row["expires_at"], never_row["expires_at"])
    assert await remove_expired_uploads(api.svc) == 0, "the URLs are still valid"
    assert await remove_expired_uploads(api.svc, now=expiry + GRACE_S + 1) >= 2  # with the module's earlier ones
    objects = s3_server.objects(bucket)
    assert f"vx/{presigned}" not in objects and f"vx/{never_path}" not in objects
    assert objects[f"vx/{row['path']}"] == len(good), "the confirmed chunk stays"
    assert (await api.svc.store.get_chunk_by_key(never["key"]))["path"] is None
    assert await remove_expired_uploads(api.svc, now=expiry + GRACE_S + 1) == 0, "each row is looked at once"


async def test_upload_download_range_and_delete(s3_api: Api, s3_server: MotoServer, bucket: str):
    api = s3_api
    data = (AUDIO / JFK).read_bytes()
    tid = (await api.client.post("/v1/transcripts/", json={"name": "jfk"})).json()["id"]
    r = await api.client.post(f"/v1/transcripts_audio/{tid}/upload", files={"file": ("jfk.wav", data, "audio/wav")})
    assert r.status_code == 202, r.text
    [stored] = [c["path"] for c in await api.svc.store.list_chunks(transcript_id=tid, kind="upload")]
    assert stored.startswith(f"{tid}/upload-") and stored.endswith(".wav")
    assert s3_server.objects(bucket)[f"vx/{stored}"] == len(data), "stored before the 202"
    assert local_files(api, tid) == [], "no local copy stays"
    done = await api.wait_transcript(tid, within=90)
    assert done["status"] == "completed" and "country" in " ".join(s["text"] for s in done["segments"]).lower()
    r = await api.client.get(f"/v1/transcripts_audio/{tid}/download")
    assert r.status_code == 200 and r.content == data and r.headers["content-type"] == "audio/wav"
    assert r.headers["content-disposition"] == 'attachment; filename="jfk.wav"'
    stream = f"/v1/transcripts_audio/{tid}/stream"
    r = await api.client.get(stream, headers={"Range": "bytes=100-1099"})
    assert r.status_code == 206 and r.content == data[100:1100]
    assert r.headers["content-range"] == f"bytes 100-1099/{len(data)}" and r.headers["accept-ranges"] == "bytes"
    r = await api.client.get(stream, headers={"Range": "bytes=-50"})
    assert r.status_code == 206 and r.content == data[-50:]
    r = await api.client.get(stream, headers={"Range": f"bytes={len(data) - 10}-"})
    assert r.status_code == 206 and r.content == data[-10:]
    for bad in (f"bytes={len(data)}-", "bytes=abc", "items=1-2"):
        r = await api.client.get(stream, headers={"Range": bad})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}", bad
    r = await api.client.head(stream)
    assert r.status_code == 200 and r.headers["content-length"] == str(len(data)) and r.content == b""
    # a stored range is transcribed again from the bucket (the WAV's bytes of that range only)
    seg = done["segments"][0]
    r = await api.client.post(f"/api/retranslate/segment-from-full?job_id={tid}", json={"segment_id": seg["id"]})
    assert r.status_code == 200 and r.json()["text"].strip(), r.text
    # the recording stands in for its one speaker in the meeting downloads, served from the bucket
    parts = (await api.client.get(f"/v1/transcripts/{tid}/download/audio_parts")).json()
    assert len(parts) == 1
    r = await api.client.get(httpx.URL(parts[0]["download_url"]).path)
    assert r.status_code == 200 and r.content == data
    r = await api.client.delete(f"/v1/transcripts/{tid}")
    assert r.status_code == 204
    assert not [k for k in s3_server.objects(bucket) if k.startswith(f"vx/{tid}/")], "delete removes the objects"


async def test_live_recordings_are_stored_and_continued(s3_api: Api, s3_server: MotoServer, bucket: str):
    """A participant's live recording goes to the bucket when its stream ends; a stream that starts again
    fetches it and continues the one file, on one timeline."""
    api = s3_api
    tid = (await api.client.post("/v1/transcripts/", json={"name": "meeting"})).json()["id"]
    samples, rate = read_wav(AUDIO / JFK)
    live = api.svc.live.get(tid)
    ann = Participant(id="ann", name="Ann")
    pub = await live.add_publisher(StartParams(participant=ann))
    await pub.feed_pcm(samples.astype(np.float32) / 32768)
    await pub.finish()
    key = f"vx/{tid}/participant-ann.wav"
    assert s3_server.objects(bucket)[key] == 44 + 2 * len(samples)
    assert local_files(api, tid) == [], "the spool file goes once stored"
    parts = (await api.client.get(f"/v1/transcripts/{tid}/download/audio_parts")).json()
    assert [p["participant"]["name"] for p in parts] == ["Ann"]
    assert abs(parts[0]["duration"] - len(samples) / rate) < 0.01, "the length read from the stored header"
    r = await api.client.get(httpx.URL(parts[0]["download_url"]).path)
    assert r.status_code == 200 and r.content[44:] == samples.astype("<i2").tobytes()
    await api.wait_transcript(tid)
    again = await api.svc.live.get(tid).add_publisher(StartParams(participant=ann))
    await again.feed_pcm(samples[: rate].astype(np.float32) / 32768)
    await again.finish()
    assert s3_server.objects(bucket)[key] == 44 + 2 * (len(samples) + rate), "one file, continued"
