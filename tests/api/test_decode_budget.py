"""Decompression bombs on every recorded-file path: a small file whose header claims a second but that holds
minutes is refused at the route's limit, counted from decoded samples, never decoded (or fed to the model)
past it; the server goes on serving.

The app here runs with small limits (VOXLANE_MAX_AUDIO_SECONDS=20, VOXLANE_MAX_CHUNK_SECONDS=10) so the bombs
stay small; /api/retranslate/segment keeps its own fixed limit (600 s) and gets a bomb of 11 minutes of
compressed silence (a few hundred kB).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from server.features.retranslate import MAX_SECONDS
from server.settings import Settings
from tests.decode_bombs import flac_bomb, opus_bomb, wav_bomb
from tests.process_support import KNOWN_CALIBRATION_S
from tests.rest_support import AUDIO, JWT_SECRET, Api, read_wav, wav_bytes

LIMIT = 20.0
CHUNK_LIMIT = 10.0
SHORT = "single/librispeech_61-70968-0000.wav"  # 5.3 s
LONGER = "single/librispeech_1221-135766_2utt.wav"  # 21.6 s: just over LIMIT
P = "/api/participant"


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    from tests.rest_fixtures import running_app  # here: imported at collection it would shadow the plugin

    tmp = tmp_path_factory.mktemp("decode-budget")
    settings = Settings.from_sources(
        {"data_dir": str(tmp / "data"), "cpu_threads": 2, "auth_mode": "public", "jwt_secret": JWT_SECRET,
         "status_interval": 0, "ping_interval": 0, "calibration_seconds": KNOWN_CALIBRATION_S},
        env={"VOXLANE_MAX_AUDIO_SECONDS": str(LIMIT), "VOXLANE_MAX_CHUNK_SECONDS": str(CHUNK_LIMIT)})
    async with running_app(settings, private=False) as running:
        yield running


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One minute of silence claiming one second, in each container (made once for the module)."""
    tmp = tmp_path_factory.mktemp("bombs")
    return {"flac": flac_bomb(tmp / "bomb.flac", 60.0), "wav": wav_bomb(tmp / "bomb.wav", 60.0),
            "ogg": opus_bomb(tmp / "bomb.ogg", 60.0)}


MEDIA = {"flac": "audio/flac", "wav": "audio/wav", "ogg": "audio/ogg"}


def _file(path: Path) -> dict[str, tuple[str, bytes, str]]:
    kind = path.suffix.lstrip(".")
    return {"file": (path.name, path.read_bytes(), MEDIA[kind])}


def _too_long(r, limit: float) -> None:
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "AUDIO_TOO_LONG" and error["details"] == {"limit_seconds": limit}
    assert f"{limit:g} s" in error["message"]


async def _wait(predicate, what: str, within: float = 60.0):
    deadline = time.monotonic() + within
    while True:
        got = await predicate()
        if got is not None:
            return got
        assert time.monotonic() < deadline, f"{what} did not happen within {within} s"
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------- synchronous routes: 413


async def test_retranslate_clip_bombs_are_refused_before_the_model(api: Api, tmp_path: Path):
    """The found case: a FLAC claiming 1 s, holding more than the route's limit, was decoded whole and run
    through the model. Now decoding stops at the limit and nothing reaches the model."""
    seconds = MAX_SECONDS + 60
    clips = [flac_bomb(tmp_path / "clip.flac", seconds), opus_bomb(tmp_path / "clip.ogg", seconds),
             flac_bomb(tmp_path / "honest.flac", seconds, claimed=seconds)]
    assert all(p.stat().st_size < 1_000_000 for p in clips)
    before = api.svc.engine.stats.requests
    for clip in clips:
        r = await api.client.post("/api/retranslate/segment", files=_file(clip), data={"segment_id": "s1"})
        _too_long(r, MAX_SECONDS)
    assert api.svc.engine.stats.requests == before, "no window of the bombs reached the model"
    assert not list((api.data_dir / "tmp").glob("retranslate-*")), "the clips were removed"
    # still serving: a real clip is re-transcribed
    samples, rate = read_wav(AUDIO / SHORT)
    r = await api.client.post("/api/retranslate/segment", files={"file": ("c.wav", wav_bytes(samples, rate),
                                                                          "audio/wav")}, data={"segment_id": "s2"})
    assert r.status_code == 200 and "wizard" in r.json()["text"].lower()


async def test_openai_route_refuses_bombs_and_long_headers(api: Api, bombs: dict[str, Path], tmp_path: Path):
    for path in bombs.values():
        r = await api.client.post("/v1/audio/transcriptions", files=_file(path), data={"model": "whisper-1"})
        _too_long(r, LIMIT)
    # streamed: the answer has begun (200) when the decoder finds out, so the refusal is the error event
    r = await api.client.post("/v1/audio/transcriptions", files=_file(bombs["flac"]),
                              data={"model": "whisper-1", "stream": "true"})
    assert r.status_code == 200
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "AUDIO_TOO_LONG"
    assert events[-1]["error"]["details"] == {"limit_seconds": LIMIT}
    # an honest header over the limit is refused before any decoding, streamed or not
    samples, rate = read_wav(AUDIO / LONGER)
    honest = wav_bytes(samples, rate)
    for stream in ("false", "true"):
        r = await api.client.post("/v1/audio/transcriptions", files={"file": ("long.wav", honest, "audio/wav")},
                                  data={"stream": stream})
        _too_long(r, LIMIT)
    await _wait(_scratch_empty(api), "scratch directories removed")
    # still serving, and speech that hides its length behind a 1 s header is cut at the limit, not past it
    short, _ = read_wav(AUDIO / SHORT)
    r = await api.client.post("/v1/audio/transcriptions", files={"file": ("s.wav", wav_bytes(short, rate),
                                                                          "audio/wav")})
    assert r.status_code == 200 and "wizard" in r.json()["text"].lower()
    hidden = flac_bomb(tmp_path / "speech.flac", 0, claimed=1.0, rate=rate, audio=samples)
    r = await api.client.post("/v1/audio/transcriptions", files=_file(hidden))
    _too_long(r, LIMIT)


def _scratch_empty(api: Api):
    async def check():
        return True if not list((api.data_dir / "tmp").glob("openai-*")) else None
    return check


# ---------------------------------------------------------------- asynchronous jobs: a failed job


async def test_transcription_job_bomb_fails_the_job_at_the_limit(api: Api, bombs: dict[str, Path], tmp_path: Path):
    samples, rate = read_wav(AUDIO / LONGER)
    hidden = flac_bomb(tmp_path / "speech.flac", 0, claimed=1.0, rate=rate, audio=samples)
    for path in (bombs["wav"], hidden):
        r = await api.client.post("/api/transcribe/", files=_file(path))
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]

        async def failed(job: str = job):
            body = (await api.client.get(f"/api/transcribe/status/{job}")).json()
            assert body["status"] != "completed", body
            return body if body["status"] == "failed" else None

        status = await _wait(failed, f"job {job} failing")
        assert f"limit of {LIMIT:g} s" in status["message"]
        item = (await api.client.get(f"/api/transcribe/debug/{job}")).json()["item"]
        assert item["status"] == "failed" and 0 < item["duration"] <= LIMIT, "fed up to the limit, not past it"
        r = await api.client.get(f"/api/transcribe/result/{job}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "JOB_FAILED"
    # an honest header over the limit: 413 at once, and no job is left behind
    jobs = (await api.client.get("/api/transcribe/jobs")).json()["count"]
    r = await api.client.post("/api/transcribe/", files={"file": ("long.wav", wav_bytes(samples, rate), "audio/wav")})
    _too_long(r, LIMIT)
    assert (await api.client.get("/api/transcribe/jobs")).json()["count"] == jobs


async def test_transcript_upload_bomb_fails_the_transcript_with_the_reason(api: Api, bombs: dict[str, Path]):
    r = await api.client.post("/v1/transcripts/", json={"name": "bomb"})
    assert r.status_code == 201
    tid = r.json()["id"]
    r = await api.client.post(f"/v1/transcripts_audio/{tid}/upload", files=_file(bombs["ogg"]))
    assert r.status_code == 202, r.text
    assert r.json()["upload"]["duration"] == pytest.approx(1.0, abs=0.1), "the header claims a second"
    got = await api.wait_transcript(tid)
    assert got["status"] == "failed" and f"limit of {LIMIT:g} s" in got["error"]
    # still serving: the same transcript takes a real recording and completes
    samples, rate = read_wav(AUDIO / SHORT)
    r = await api.client.post(f"/v1/transcripts_audio/{tid}/upload",
                              files={"file": ("s.wav", wav_bytes(samples, rate), "audio/wav")})
    assert r.status_code == 202, r.text
    got = await api.wait_transcript(tid)
    assert got["status"] == "completed" and "wizard" in " ".join(s["text"] for s in got["segments"]).lower()


async def test_kiosk_chunk_bomb_fails_that_chunk_only(api: Api, bombs: dict[str, Path]):
    r = await api.client.post("/api/projects", json={"title": "Bombs", "language": "en", "portal": {}})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = await api.client.post(P + "/conversations/initiate", json={"project_id": pid, "source": "PORTAL_AUDIO",
                                                                   "tag_id_list": []})
    cid = r.json()["id"]
    samples, rate = read_wav(AUDIO / SHORT)
    chunks = [(bombs["flac"].read_bytes(), "audio/flac"), (wav_bytes(samples, rate), "audio/wav")]
    for data, ctype in chunks:
        url = (await api.client.post(f"{P}/conversations/{cid}/get-upload-url", json={})).json()
        parts = urlsplit(url["url"])
        r = await api.client.put(parts.path + "?" + parts.query, content=data, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text
        r = await api.client.post(f"{P}/conversations/{cid}/confirm-upload", json={"key": url["key"]})
        assert r.status_code == 202, r.text
    assert (await api.client.post(f"{P}/conversations/{cid}/finish")).status_code == 200

    async def settled():
        state = (await api.client.get(f"{P}/projects/{pid}/conversations/{cid}")).json()
        return state if state["status"] in ("completed", "failed") else None

    state = await _wait(settled, "the conversation settling")
    assert state["status"] == "completed" and state["chunks"]["failed"] == 1 and state["chunks"]["transcribed"] == 1
    listed = (await api.client.get(f"{P}/conversations/{cid}/chunks")).json()
    bomb, good = listed
    assert bomb["status"] == "failed" and f"limit of {CHUNK_LIMIT:g} s" in bomb["error"]
    assert 0 < bomb["duration"] <= CHUNK_LIMIT, "decoded up to the chunk limit, not past it"
    assert good["status"] == "transcribed" and good["offset"] == pytest.approx(bomb["duration"])
    assert "wizard" in state["text"].lower()
    # the merged recording holds the bomb's place as at most the limit of silence, then the good chunk
    r = await api.client.get(f"/v1/transcripts_audio/{cid}/download")
    assert r.status_code == 200
    assert (len(r.content) - 44) / 32000 == pytest.approx(bomb["duration"] + len(samples) / rate, abs=0.1)
