"""Live transcription over the WebSocket, end to end, against a real server and the real model; what a stream
leaves stored is checked on the embedded SQLite store and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import wave
from collections.abc import AsyncIterator

import httpx
import jsonschema
import numpy as np
import pytest
import srt
import websockets
import webvtt

from bench.metrics import normalize, wer_counts
from media.audio import float_to_s16
from server.cli.live_client import StreamRecord, create_transcript, load_pcm16k, stream_audio, subscribe, ws_url
from tests.conftest import served, start_server, stop_server
from tests.db_support import PgDatabases
from tests.http_support import TLS
from tests.rest_support import Api

pytest_plugins = ("tests.rest_fixtures",)

SPEECH = "single/librispeech_1221-135766_2utt.wav"  # 21.6 s, two utterances


@contextlib.asynccontextmanager
async def collecting(url: str) -> AsyncIterator[tuple[websockets.ClientConnection, list[dict]]]:
    """A socket, and the list its messages are read into in the background while the block runs."""
    received: list[dict] = []
    async with websockets.connect(url) as ws:
        async def read() -> None:
            async for raw in ws:
                received.append(json.loads(raw))

        reader = asyncio.create_task(read())
        try:
            yield ws, received
        finally:
            reader.cancel()


@pytest.fixture(scope="module")
async def pg_server(tmp_path_factory: pytest.TempPathFactory, pg_databases: PgDatabases):
    url = await pg_databases.create()
    srv = await asyncio.to_thread(start_server, tmp_path_factory.mktemp("voxlane-pg"), VOXLANE_DATABASE_URL=url,
                                  VOXLANE_PING_INTERVAL="2", VOXLANE_STATUS_INTERVAL="1",
                                  VOXLANE_MAX_AUDIO_LEAD_SECONDS="0", VOXLANE_DIARIZATION="on")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stored_server(request: pytest.FixtureRequest, server):
    """The shared server (SQLite), then one on PostgreSQL: the tests of what a stream leaves stored run on both."""
    return server if request.param == "sqlite" else request.getfixturevalue("pg_server")


async def get_json(url: str) -> dict:
    async with httpx.AsyncClient(verify=TLS, timeout=30) as client:
        r = await client.get(url)
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="module")
def schema(server) -> dict:
    return httpx.get(server.url + "/v1/protocol.json").json()


def assert_valid(schema: dict, messages: list[dict]) -> None:
    validator = jsonschema.Draft202012Validator({**schema, "oneOf": [{"$ref": "#/$defs/ServerMessage"}]})
    for m in messages:
        validator.validate(m)


def check_segment_rules(rec: StreamRecord) -> None:
    """Partials precede the final; exactly one final per segment; final words are never retracted."""
    by_segment: dict[str, list[dict]] = {}
    for r in rec.transcriptions:
        by_segment.setdefault(r.data["segment_id"], []).append(r.data)
    assert by_segment
    for sid, msgs in by_segment.items():
        finals = [m for m in msgs if m["is_final"]]
        assert len(finals) == 1, f"segment {sid}: {len(finals)} finals"
        assert msgs[-1]["is_final"], f"segment {sid}: a message followed its final"
        frozen: list[tuple] = []
        for m in msgs:
            words = [(w["text"], w["start"], w["end"]) for w in m["words"]]
            assert words[: len(frozen)] == frozen, f"segment {sid}: a final word changed or vanished"
            n_final = 0
            while n_final < len(m["words"]) and m["words"][n_final]["final"]:
                n_final += 1
            assert all(not w["final"] for w in m["words"][n_final:]), "final words must be a prefix"
            frozen = words[: max(len(frozen), n_final)]
        if len(msgs) > 1:
            assert not msgs[0]["is_final"]


async def test_live_stream_end_to_end(stored_server, audio_dir, references, schema):
    audio = load_pcm16k(audio_dir / SPEECH)
    tid = await create_transcript(stored_server.url, "e2e")
    done = asyncio.Event()
    second = asyncio.create_task(subscribe(stored_server.url, tid, done))
    await asyncio.sleep(0.3)
    rec = await stream_audio(stored_server.url, audio, transcript_id=tid)
    done.set()
    watcher = await second
    assert rec.completed is not None, "no 'completed' status after stop"

    # accuracy against the human reference
    errors, words = wer_counts(references[SPEECH]["text"], rec.final_text)
    assert errors / words <= 0.15, rec.final_text

    # partials come first, finals close segments, final words stay put
    check_segment_rules(rec)
    partial_count = sum(1 for r in rec.transcriptions if not r.data["is_final"])
    assert partial_count >= 5
    assert any(w["final"] for r in rec.transcriptions if not r.data["is_final"] for w in r.data["words"]), \
        "words must become final while the speaker is still talking"
    for seg in rec.finals:
        assert seg["start"] <= seg["end"] and seg["words"]
        assert all(w["start"] <= w["end"] for w in seg["words"])
        assert 0 <= seg["confidence"] <= 1

    # every message matches the published schema
    assert_valid(schema, [r.msg for r in rec.received] + [r.msg for r in watcher])

    # a second subscriber sees the same transcription messages
    def trace(msgs):
        return [(m["data"]["segment_id"], m["data"]["is_final"], m["data"]["text"]) for m in msgs
                if m["type"] == "transcription"]
    assert trace([r.msg for r in watcher]) == trace([r.msg for r in rec.received])
    assert any(r.type == "ping" for r in rec.received)
    lags = [r.data["lag_seconds"] for r in rec.of_type("status")
            if r.data["status"] == "processing" and r.data["stage"] == "transcription"]
    assert lags and all(v is not None and v >= 0 for v in lags)

    # the final segments are stored, in order, with words
    body = await get_json(f"{stored_server.url}/v1/transcripts/{tid}")
    assert body["status"] == "completed"
    assert [s["id"] for s in body["segments"]] == [s["segment_id"] for s in rec.finals]
    assert body["segments"][0]["words"][0]["text"]
    assert abs(body["duration"] - len(audio) / 16000) < 0.2

    # the received audio is on disk as a replayable WAV
    with wave.open(str(stored_server.data_dir / "audio" / tid / "recording.wav")) as w:
        assert w.getframerate() == 16000 and abs(w.getnframes() - len(audio)) < 160

    # the stored transcript renders in the usual formats, each read back by a parser that is not ours
    async with httpx.AsyncClient(verify=TLS, base_url=stored_server.url, timeout=30) as client:
        url = f"/v1/transcripts/{tid}"
        text = (await client.get(url, params={"transcript_format": "text"})).text
        lines, last = [], None  # a speaker's name opens each of their turns (this stream is diarized)
        for s in rec.finals:
            lines.append(f"{s['speaker']}: {s['text']}" if s["speaker"] and s["speaker"] != last else s["text"])
            last = s["speaker"]
        assert normalize(text) == normalize(" ".join(lines))
        subs = list(srt.parse((await client.get(url, params={"transcript_format": "srt"})).text))
        assert [s.content for s in subs] == [f"{s['speaker']}: {s['text']}" if s["speaker"] else s["text"]
                                             for s in rec.finals]
        vtt = webvtt.from_string((await client.get(url, params={"transcript_format": "webvtt-named"})).text)
        assert len(vtt.captions) == len(rec.finals)
        h, m, sec = vtt.captions[0].start.split(":")
        # the stored form: a diarized stream's segments span their speaker turns, not their first word's stamp
        assert abs(int(h) * 3600 + int(m) * 60 + float(sec) - body["segments"][0]["start"]) < 0.002
        stamped = (await client.get(url, params={"transcript_format": "text-timestamped"})).text
        assert stamped.startswith("[00:00:")
        js = (await client.get(url, params={"transcript_format": "json"})).json()
        assert js["segments"][0]["words"] and js["speaker_timeline"]
        assert (await client.get(url, params={"transcript_format": "pdf"})).status_code == 422

    # a late subscriber first gets the stored history, then the current status
    async with websockets.connect(ws_url(stored_server.url, tid)) as ws:
        history = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(len(rec.finals) + 1)]
    assert [m["data"]["segment_id"] for m in history[:-1]] == [s["segment_id"] for s in rec.finals]
    assert all(m["data"]["is_final"] for m in history[:-1])
    assert history[-1]["type"] == "status" and history[-1]["data"]["status"] == "completed"


async def test_vad_events_tell_speech_start_and_stop_before_the_words(server, audio_dir, references, schema):
    """``vad_events``: ``speech`` messages come from the VAD as the audio arrives, so ``started`` precedes the
    first words read and every ``started`` is closed by a ``stopped`` (at the latest at ``stop``)."""
    name = "single/librispeech_1089-134686_1utt.wav"  # 6.6 s, one utterance
    audio = load_pcm16k(audio_dir / name)
    rec = await stream_audio(server.url, audio, speed=4.0, start_params={"vad_events": True})
    assert rec.completed is not None
    assert_valid(schema, [r.msg for r in rec.received])
    speech = rec.of_type("speech")
    kinds = [r.data["event"] for r in speech]
    assert kinds and kinds == ["started", "stopped"] * (len(kinds) // 2), kinds
    onset, end = references[name]["segments"][0]["start"], references[name]["segments"][-1]["end"]
    assert abs(speech[0].data["time"] - onset) <= 0.3, speech[0].data
    assert abs(speech[-1].data["time"] - end) <= 0.5, speech[-1].data
    assert speech[0].t <= rec.transcriptions[0].t, "speech started must come before the words it holds"
    assert all(a.data["time"] <= b.data["time"] for a, b in zip(speech, speech[1:], strict=False))
    plain = await stream_audio(server.url, audio[:16000 * 2], speed=4.0)
    assert not plain.of_type("speech"), "speech messages are sent only to a stream that asked for them"


async def test_bad_messages_get_errors_and_the_stream_continues(server, audio_dir, references):
    name = "single/librispeech_61-70968-0000.wav"
    audio = load_pcm16k(audio_dir / name)
    tid = await create_transcript(server.url, "bad input")
    async with collecting(ws_url(server.url, tid)) as (ws, received):
        await ws.send(b"\x00\x01" * 800)  # audio before start
        await ws.send("{not json")
        await ws.send(json.dumps({"action": "dance"}))
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 1000}}))
        await ws.send(json.dumps(["start"]))
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}}))
        half = len(audio) // 2
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        await ws.send(pcm[: half * 2])
        await ws.send(json.dumps({"action": "flip"}))  # mid-stream: nothing already received is lost
        await ws.send(json.dumps({"action": "start", "params": {"format": "mp3"}}))  # format change
        await ws.send(pcm[half * 2:])
        await ws.send(json.dumps({"action": "get_status"}))
        await ws.send(json.dumps({"action": "stop"}))
        for _ in range(300):
            if any(m["type"] == "status" and m["data"]["status"] == "completed" and m["data"]["participant_id"] is None
                   and m["data"]["stage"] == "transcription" and m["data"].get("progress") == 100.0 for m in received):
                break
            await asyncio.sleep(0.1)
    codes = [m["data"]["code"] for m in received if m["type"] == "error"]
    assert codes[:5] == ["NOT_STARTED", "INVALID_JSON", "UNKNOWN_ACTION", "INVALID_PARAMS", "INVALID_MESSAGE"]
    assert codes[5:] == ["UNKNOWN_ACTION", "ALREADY_STARTED"]
    assert all(m["data"]["message"] for m in received if m["type"] == "error")
    finals = [m["data"]["text"] for m in received if m["type"] == "transcription" and m["data"]["is_final"]]
    errors, words = wer_counts(references[name]["text"], " ".join(finals))
    assert errors / words <= 0.2, finals
    assert any(m["type"] == "status" and m["data"]["status"] == "processing" for m in received)


async def test_audio_before_a_successful_start_gets_one_error(server):
    """A meeting bot whose ``start`` was refused and that streams on got one NOT_STARTED per frame (fifty a
    second); a run of refused frames now gets one, and the next text message starts a new run."""
    tid = await create_transcript(server.url, "audio before start")
    async with collecting(ws_url(server.url, tid)) as (ws, received):
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 1000}}))
        for _ in range(50):
            await ws.send(b"\x00\x00" * 320)
        await ws.send(json.dumps({"action": "get_status"}))  # answered in order: after every frame before it
        await ws.send(b"\x00\x00" * 320)  # a new run after a text message: told again
        await ws.send(json.dumps({"action": "get_status"}))
        for _ in range(100):
            if sum(m["type"] == "status" for m in received) >= 3:  # on connect, then the two replies
                break
            await asyncio.sleep(0.05)
    codes = [m["data"]["code"] for m in received if m["type"] == "error"]
    assert codes == ["INVALID_PARAMS", "NOT_STARTED", "NOT_STARTED"]


@pytest.mark.parametrize("kind", ["silence", "white_noise"])
async def test_silence_and_noise_produce_no_transcription(server, kind):
    rng = np.random.default_rng(7)
    n = 30 * 16000
    audio = np.zeros(n, np.float32) if kind == "silence" else rng.normal(0, 0.1, n).astype(np.float32)
    rec = await stream_audio(server.url, audio, speed=6.0)
    assert rec.completed is not None
    assert rec.transcriptions == []
    assert (await get_json(f"{server.url}/v1/transcripts/{rec.transcript_id}"))["segments"] == []


async def test_disconnect_without_stop_keeps_everything(stored_server, audio_dir, references):
    name = "single/librispeech_2412-153948-0000.wav"
    audio = load_pcm16k(audio_dir / name)
    rec = await stream_audio(stored_server.url, audio, stop=False, speed=1.5)
    tid = rec.transcript_id
    for _ in range(200):
        body = await get_json(f"{stored_server.url}/v1/transcripts/{tid}")
        if body["status"] == "completed":
            break
        await asyncio.sleep(0.1)
    assert body["status"] == "completed"
    text = " ".join(s["text"] for s in body["segments"])
    errors, words = wer_counts(references[name]["text"], text)
    assert errors / words <= 0.2, text
    assert abs(stored_server.recorded_frames(tid) - len(audio)) < 160


async def test_pause_stores_audio_without_transcribing(stored_server, audio_dir):
    audio = load_pcm16k(audio_dir / "single/librispeech_2412-153948-0000.wav")
    tid = await create_transcript(stored_server.url, "pause")
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    async with collecting(ws_url(stored_server.url, tid)) as (ws, received):
        await ws.send(json.dumps({"action": "start", "params": {}}))
        await ws.send(json.dumps({"action": "pause"}))
        for i in range(0, len(pcm), 6400):
            await ws.send(pcm[i:i + 6400])
        await asyncio.sleep(1.0)
        await ws.send(json.dumps({"action": "stop"}))
        await until(lambda: any(m["type"] == "status" and m["data"]["status"] == "completed" for m in received),
                    within=60)
    assert any(m["type"] == "status" and m["data"]["status"] == "paused" for m in received)
    assert not [m for m in received if m["type"] == "transcription"]
    assert abs(stored_server.recorded_frames(tid) - len(audio)) < 160


async def test_unknown_transcript_closes_with_4404(server):
    async with websockets.connect(ws_url(server.url, "does-not-exist")) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd.code == 4404
    assert "not found" in info.value.rcvd.reason


@pytest.fixture(scope="module")
def short_segment_server(tmp_path_factory: pytest.TempPathFactory):
    """A server that splits segments after 4 s, so read speech without long pauses is split many times."""
    with served(tmp_path_factory.mktemp("voxlane-split"), VOXLANE_MAX_SEGMENT_SECONDS="4",
                VOXLANE_DIARIZATION="off", VOXLANE_MAX_AUDIO_LEAD_SECONDS="0") as srv:
        yield srv


async def test_split_segments_keep_their_final_words(short_segment_server, audio_dir, references):
    """A segment split for length closes with every word it showed as final; none moves to the next one."""
    f = "single/ljspeech_LJ001-0001_0016.wav"
    audio = load_pcm16k(audio_dir / f)[: 16000 * 30]
    rec = await stream_audio(short_segment_server.url, audio, name="split", settle_s=60, speed=2.0)
    assert len(rec.finals) >= 4, "the 30 s of read speech should have been split"
    check_segment_rules(rec)
    ref = " ".join(s["text"] for s in references[f]["segments"] if s["end"] <= 30)
    errors, words = wer_counts(ref, rec.final_text)
    assert errors / words <= 0.2, rec.final_text
    starts = [s["start"] for s in rec.finals]
    assert starts == sorted(starts)


async def until(condition, within: float = 10.0) -> None:
    for _ in range(int(within / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_read_only_token_listens_but_cannot_publish(private_api: Api, audio_dir, references):
    """A ``transcripts:read`` token subscribes; its start, audio, participant events, pause and stop are each
    refused with INSUFFICIENT_SCOPE (one error for a run of frames), change nothing, and its subscription
    still hears what a publisher with ``transcripts:write`` sends afterwards."""
    api = private_api
    base = await api.serve()
    writer, reader = api.jwt("alice"), api.jwt("alice", ["transcripts:read"])
    tid = await create_transcript(base, "read only", writer)
    name = "single/librispeech_61-70968-0000.wav"
    audio = load_pcm16k(audio_dir / name)
    pcm = float_to_s16(audio)
    async with collecting(ws_url(base, tid, reader)) as (ws, received):
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}}))
        for i in range(0, len(pcm), 32000):
            await ws.send(pcm[i:i + 32000])
        for action, params in (("participant_event", {"type": "chat_message", "data": {"text": "hi"}}),
                               ("pause", {}), ("stop", {}), ("get_status", {})):
            await ws.send(json.dumps({"action": action, "params": params}))
        await until(lambda: sum(m["type"] == "status" for m in received) >= 2)  # the first, then get_status's
        errors = [m["data"] for m in received if m["type"] == "error"]
        assert [e["code"] for e in errors] == ["INSUFFICIENT_SCOPE"] * 5, errors
        assert all(e["details"] == {"required": "transcripts:write"} for e in errors)
        assert "audio" in errors[1]["message"] and "'stop'" in errors[4]["message"]
        # nothing changed: not live, no recording, nothing stored
        r = await api.client.get(f"/v1/transcripts/{tid}", headers=api.auth("alice"))
        assert r.json()["status"] not in ("live", "completed") and r.json()["segments"] == []
        assert not (api.data_dir / "audio" / tid / "recording.wav").exists()
        assert api.svc.live.find(tid) is None or not api.svc.live.find(tid).publishers
        # the reader's subscription goes on: it hears a writer's stream
        rec = await stream_audio(base, audio, transcript_id=tid, token=writer, speed=2.0)
        assert rec.completed is not None
        await until(lambda: any(m["type"] == "status" and m["data"]["status"] == "completed"
                                and m["data"].get("progress") == 100.0 for m in received))
    heard = " ".join(m["data"]["text"] for m in received if m["type"] == "transcription" and m["data"]["is_final"])
    assert heard and heard == rec.final_text
    errors_, words = wer_counts(references[name]["text"], heard)
    assert errors_ / words <= 0.2, heard
    body = await api.wait_transcript(tid, api.auth("alice"))
    assert body["status"] == "completed"
