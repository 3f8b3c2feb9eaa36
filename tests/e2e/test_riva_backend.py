"""NVIDIA Riva as the recognizer, end to end: a real ``voxlane serve`` with ``VOXLANE_ASR_BACKEND=riva`` streams
to a local stand-in that speaks Riva's gRPC protocol from ``nvidia-riva-client``'s own stubs (a real Riva
server needs an NVIDIA GPU; see tests/riva_support.py), fed real speech whose reference utterances it reads back.

A subscriber must not be able to tell the backends apart except by the text: the same messages, the same
segment rules, the same storage; a recorded file goes through the job runner to the same recognizer.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bench.metrics import normalize
from server.cli.live_client import create_transcript, load_pcm16k, stream_audio, subscribe
from tests.conftest import served
from tests.e2e.test_live_ws import assert_valid, check_segment_rules
from tests.http_support import TLS
from tests.rest_support import wav_bytes
from tests.riva_support import RivaStandIn, ScriptedRiva, pcm16, script_from_reference

SPEECH = "single/librispeech_1221-135766_2utt.wav"  # 21.6 s, two utterances


@pytest.fixture(scope="module")
def riva(audio_dir, references):
    audio = load_pcm16k(audio_dir / SPEECH)
    servicer = ScriptedRiva(script_from_reference(references, SPEECH), pcm16(audio))
    with RivaStandIn(servicer) as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def riva_server(tmp_path_factory: pytest.TempPathFactory, riva):
    with served(tmp_path_factory.mktemp("voxlane-riva"), VOXLANE_ASR_BACKEND="riva",
                VOXLANE_RIVA_URI=riva.uri, VOXLANE_RIVA_API_KEY="nvapi-test",
                VOXLANE_RIVA_METADATA="function-id=fn-1", VOXLANE_MAX_AUDIO_LEAD_SECONDS="0") as srv:
        yield srv


async def test_a_live_stream_on_riva_reads_as_one_on_whisper(riva_server, riva, audio_dir, references) -> None:
    audio = load_pcm16k(audio_dir / SPEECH)
    tid = await create_transcript(riva_server.url, "riva")
    done = asyncio.Event()
    watcher_task = asyncio.create_task(subscribe(riva_server.url, tid, done))
    await asyncio.sleep(0.3)
    rec = await stream_audio(riva_server.url, audio, transcript_id=tid, speed=4.0, start_params={"vad_events": True})
    done.set()
    watcher = await watcher_task
    assert rec.completed is not None
    assert normalize(rec.final_text) == normalize(references[SPEECH]["text"])
    check_segment_rules(rec)
    assert sum(not r.data["is_final"] for r in rec.transcriptions) >= 5
    segments = references[SPEECH]["segments"]
    for final, ref in zip(rec.finals, segments, strict=True):  # word timings in transcript time
        assert final["start"] == pytest.approx(ref["start"], abs=0.01)
        assert final["end"] == pytest.approx(ref["end"], abs=0.01)
    async with httpx.AsyncClient(verify=TLS, base_url=riva_server.url, timeout=30) as client:
        schema = (await client.get("/v1/protocol.json")).json()
        body = (await client.get(f"/v1/transcripts/{tid}")).json()
    assert_valid(schema, [r.msg for r in rec.received] + [r.msg for r in watcher])
    assert body["status"] == "completed"
    assert [s["id"] for s in body["segments"]] == [s["segment_id"] for s in rec.finals]
    assert [s["text"] for s in body["segments"]] == [s["text"] for s in rec.finals]
    speech = [r.data for r in rec.of_type("speech")]  # from voxlane's VAD, as on Whisper
    assert [s["event"] for s in speech[:1]] == ["started"] and speech[-1]["event"] == "stopped", speech
    assert speech[0]["time"] == pytest.approx(segments[0]["start"], abs=0.3)
    call = riva.servicer.calls[0]
    assert call.metadata["authorization"] == "Bearer nvapi-test" and call.metadata["function-id"] == "fn-1"
    assert call.config.interim_results and call.config.config.language_code == "en-US"


async def test_a_recorded_file_goes_through_the_job_runner_to_riva(riva_server, riva, audio_dir,
                                                                    references) -> None:
    audio = load_pcm16k(audio_dir / SPEECH)
    async with httpx.AsyncClient(verify=TLS, base_url=riva_server.url, timeout=30) as client:
        tid = (await client.post("/v1/transcripts/", json={"name": "riva upload"})).json()["id"]
        r = await client.post(f"/v1/transcripts_audio/{tid}/upload",
                              files={"file": ("speech.wav", wav_bytes(audio, 16000), "audio/wav")})
        assert r.status_code < 300, r.text
        for _ in range(300):
            body = (await client.get(f"/v1/transcripts/{tid}")).json()
            if body["status"] in ("completed", "error"):
                break
            await asyncio.sleep(0.1)
    assert body["status"] == "completed", body
    assert normalize(" ".join(s["text"] for s in body["segments"])) == normalize(references[SPEECH]["text"])
    assert not riva.servicer.calls[-1].config.interim_results  # a file's listener waits for finals only
