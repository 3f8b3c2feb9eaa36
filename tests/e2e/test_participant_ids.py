"""Participant ids round-trip with their JSON type: a meeting bot's ``{"id": 1}`` comes back as ``1`` and a kiosk's
``{"id": "007"}`` as ``"007"``, in every live message, the history a late subscriber replays, the REST transcript,
every transcript format, the meeting-bot downloads and ``voxlane export``. Ids the protocol cannot return as sent
(true/false, floats, integers JavaScript cannot read exactly) are refused. Real server, real model, real speech."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import wave
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
import websockets

from protocol import Participant, StartParams
from protocol.messages import MAX_SAFE_ID, ErrorCode, ProtocolError, parse_client_message, participant_key
from server.cli.live_client import create_transcript, load_pcm16k, stream_audio, ws_url
from server.pipeline.recordings import audio_file_name
from tests.http_support import TLS
from tests.meeting_schemas import DOWNLOADS
from tests.rest_support import AUDIO, Api, read_wav

pytest_plugins = ("tests.rest_fixtures",)

REPO = Path(__file__).resolve().parents[2]
FILES = {1: "single/librispeech_61-70968-0000.wav", "007": "single/librispeech_1089-134686_1utt.wav"}
NAMES = {1: "P1", "007": "Bond"}


def same(a: Any, b: Any) -> bool:
    """Equal with the same JSON type: in Python ``1 == 1.0 == True``, and ``"1"`` must not pass for ``1``."""
    return type(a) is type(b) and a == b


async def get(base: str, path: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(verify=TLS, base_url=base, timeout=30) as client:
        r = await client.get(path, params=params)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r


async def history(base: str, tid: str, n: int) -> list[dict]:
    """What a subscriber joining after the meeting is sent first: the stored segments, as live messages."""
    async with websockets.connect(ws_url(base, tid)) as ws:
        return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(n)]


async def cli_export(data_dir: Path, tid: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXLANE_")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "server.cli", "export", tid, "--format", "json",
                                                "--data-dir", str(data_dir), cwd=REPO, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def test_integer_and_text_ids_come_back_as_sent(server, audio_dir):
    """Two participants stream real speech to one transcript, one declaring the integer 1, one the text "007"."""
    audio = {pid: load_pcm16k(audio_dir / f) for pid, f in FILES.items()}
    tid = await create_transcript(server.url, "numeric participant ids")
    seen: list[dict] = []

    async def watch() -> None:  # a dashboard on the transcript: both participants' messages
        async with websockets.connect(ws_url(server.url, tid)) as ws:
            async for raw in ws:
                msg = json.loads(raw)
                seen.append(msg)
                if msg["type"] == "status" and msg["data"]["status"] == "completed" \
                        and msg["data"]["participant_id"] is None:
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    recs = dict(zip(FILES, await asyncio.gather(*(
        stream_audio(server.url, audio[pid], transcript_id=tid, speed=2.0,
                     start_params={"participant": {"id": pid, "name": NAMES[pid]}}) for pid in FILES)), strict=True))
    await asyncio.wait_for(watcher, 60)

    # live: every socket hears both participants, each under its id as sent (a stream's `completed` status was
    # recognised by equality with what it sent)
    for pid, rec in recs.items():
        assert rec.completed is not None, f"no completed status with participant_id {pid!r}"
        tagged = [r.data for r in rec.received if r.type in ("transcription", "status")
                  and r.data.get("participant_id") is not None]
        assert {repr(m["participant_id"]) for m in tagged} <= {"1", "'007'"}
        own = [m for m in tagged if same(m["participant_id"], pid)]
        assert any(m.get("is_final") for m in own) and all(m.get("speaker", NAMES[pid]) == NAMES[pid] for m in own)
    finals = [m["data"] for m in seen if m["type"] == "transcription" and m["data"]["is_final"]]
    assert {repr(m["participant_id"]) for m in finals} == {"1", "'007'"}
    assert all(m["speaker"] == NAMES[m["participant_id"]] for m in finals)

    # stored and read back: the REST transcript, its JSON format, and a late subscriber's history
    body = await get(server.url, f"/v1/transcripts/{tid}")
    segments = body.json()["segments"]
    assert {repr(s["participant_id"]) for s in segments} == {"1", "'007'"}
    assert all(s["speaker"] == NAMES[s["participant_id"]] for s in segments)
    js = (await get(server.url, f"/v1/transcripts/{tid}", transcript_format="json")).json()
    assert [repr(s["participant_id"]) for s in js["segments"]] == [repr(s["participant_id"]) for s in segments]
    replay = await history(server.url, tid, len(segments))
    assert [m["type"] for m in replay] == ["transcription"] * len(segments)
    assert [repr(m["data"]["participant_id"]) for m in replay] == [repr(s["participant_id"]) for s in segments]
    exported = await cli_export(server.data_dir, tid)
    assert [repr(s["participant_id"]) for s in exported["segments"]] == [repr(s["participant_id"]) for s in segments]

    # the meeting-bot downloads: `id` is an integer there; an integer id is that id, extra_data has it as sent
    got = {}
    for kind, schema in DOWNLOADS.items():
        got[kind] = (await get(server.url, f"/v1/transcripts/{tid}/download/{kind}")).json()
        jsonschema.validate(got[kind], schema)
    people = {p["name"]: p for p in got["participants"]}
    assert set(people) == {"P1", "Bond"}
    assert same(people["P1"]["id"], 1) and same(people["P1"]["extra_data"]["participant_id"], 1)
    assert same(people["Bond"]["extra_data"]["participant_id"], "007") and people["Bond"]["id"] not in (1, 7)
    number = {"P1": 1, "Bond": people["Bond"]["id"]}
    for kind in ("participant_events", "speaker_timeline", "audio_parts"):
        for entry in got[kind]:
            who = entry["participant"]
            assert who == people[who["name"]], (kind, who)
    assert {e["participant"]["name"] for e in got["participant_events"] if e["action"] == "join"} == {"P1", "Bond"}
    assert {t["participant"]["name"] for t in got["transcript"]} == {"P1", "Bond"}
    assert all(same(t["participant"]["id"], number[t["participant"]["name"]]) for t in got["transcript"])
    parts = {p["participant"]["name"]: p for p in got["audio_parts"]}
    assert parts["P1"]["id"] == "participant-1"
    assert (server.data_dir / "audio" / tid / "participant-1.wav").is_file()
    assert (server.data_dir / "audio" / tid / "participant-007.wav").is_file()
    for name, pid in (("P1", 1), ("Bond", "007")):
        r = await get(server.url, httpx.URL(parts[name]["download_url"]).raw_path.decode())
        with wave.open(io.BytesIO(r.content)) as w:  # the participant's own audio, whole
            assert abs(w.getnframes() - len(audio[pid])) < 160

    # a rename keyed by either form reaches the participant (1 and "1" are one participant key)
    async with httpx.AsyncClient(verify=TLS, base_url=server.url, timeout=30) as client:
        r = await client.patch(f"/v1/transcripts/{tid}", json={"participants": [{"id": "1", "name": "Pat"}]})
        assert r.status_code == 200, r.text
    people = {p["name"]: p for p in (await get(server.url, f"/v1/transcripts/{tid}/download/participants")).json()}
    assert set(people) == {"Pat", "Bond"} and same(people["Pat"]["extra_data"]["participant_id"], 1)
    segments = (await get(server.url, f"/v1/transcripts/{tid}")).json()["segments"]
    assert {s["speaker"] for s in segments if same(s["participant_id"], 1)} == {"Pat"}


async def start_reply(ws, participant: dict) -> dict:
    """Send ``start`` with ``participant``; the first error, or the first status of a participant of its key
    (another stream's statuses reach every socket of the transcript)."""
    await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000,
                                                            "participant": participant}}))
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        pid = msg["data"].get("participant_id")
        if msg["type"] == "error" or (msg["type"] == "status" and pid is not None
                                      and str(pid) == str(participant.get("id"))):
            return msg


WRONG_IDS = [True, False, 1.0, 1.5, 1e3, MAX_SAFE_ID + 1, -MAX_SAFE_ID - 1, 10**30, "", "x" * 201, None, [1], {"id": 1}]


async def test_ids_that_cannot_round_trip_are_refused(server):
    """Refused with INVALID_PARAMS over a real socket, which stays usable: ``true`` (an int to Python), floats,
    integers past 2^53 - 1. The bounds themselves are accepted. 1 and "1" are one participant: not at once."""
    tid = await create_transcript(server.url, "wrong participant ids")
    async with websockets.connect(ws_url(server.url, tid)) as ws:
        for wrong in WRONG_IDS:
            msg = await start_reply(ws, {"id": wrong, "name": "P"})
            assert msg["type"] == "error" and msg["data"]["code"] == "INVALID_PARAMS", (wrong, msg)
            assert "participant.id" in msg["data"]["message"], msg
        msg = await start_reply(ws, {"id": MAX_SAFE_ID, "name": "Max"})
        assert msg["type"] == "status" and same(msg["data"]["participant_id"], MAX_SAFE_ID), msg
        async with websockets.connect(ws_url(server.url, tid)) as one:
            msg = await start_reply(one, {"id": 1})
            assert same(msg["data"]["participant_id"], 1), msg
            async with websockets.connect(ws_url(server.url, tid)) as text_one:
                msg = await start_reply(text_one, {"id": "1"})
                assert msg["type"] == "error" and msg["data"]["code"] == "ALREADY_STARTED", msg
            await one.send(json.dumps({"action": "stop"}))
        await ws.send(json.dumps({"action": "stop"}))


def test_participant_id_parsing_and_keys() -> None:
    """The parser keeps the JSON type; the key (file names, the segments column) is the text form."""
    for pid in (1, 0, -5, MAX_SAFE_ID, -MAX_SAFE_ID, "007", "1", "²"):
        msg = parse_client_message(json.dumps({"action": "start", "params": {"participant": {"id": pid}}}))
        assert same(msg.params.participant.id, pid)  # type: ignore[attr-defined]
        assert same(json.loads(json.dumps(msg.model_dump(mode="json")))["params"]["participant"]["id"], pid)
    for wrong in WRONG_IDS:
        with pytest.raises(ProtocolError) as caught:
            parse_client_message(json.dumps({"action": "start", "params": {"participant": {"id": wrong}}}))
        assert caught.value.code == ErrorCode.INVALID_PARAMS
    assert participant_key(1) == participant_key("1") == "1" and participant_key("007") == "007"
    assert audio_file_name(1) == audio_file_name("1") == "participant-1.wav"
    assert audio_file_name(0) == "participant-0.wav" != audio_file_name(None), "0 is not the anonymous stream"


async def test_zero_negative_and_largest_ids_in_downloads(public_api: Api):
    """Integer ids at the edges (0, which is falsy; a negative one; 2^53 - 1) as live participants of one
    transcript: every download keeps them, and the PATCH participants list holds ids to the same bounds."""
    api = public_api
    tid = (await api.client.post("/v1/transcripts/", json={"name": "edge ids"})).json()["id"]
    live = api.svc.live.get(tid)
    samples, rate = read_wav(AUDIO / FILES[1])
    assert rate == 16000
    pubs = {0: await live.add_publisher(StartParams(participant=Participant(id=0, name="N0")))}
    await pubs[0].feed_pcm(samples.astype(np.float32) / 32768)
    for pid in (-5, MAX_SAFE_ID):  # one at a time beside the first: two streams are within any admission cap
        pubs[pid] = await live.add_publisher(StartParams(participant=Participant(id=pid, name=f"N{pid}")))
        await pubs[pid].finish()
    await pubs[0].finish()
    row = (await api.client.get(f"/v1/transcripts/{tid}")).json()
    assert row["segments"] and all(same(s["participant_id"], 0) for s in row["segments"])
    got = {}
    for kind, schema in DOWNLOADS.items():
        r = await api.client.get(f"/v1/transcripts/{tid}/download/{kind}")
        assert r.status_code == 200, (kind, r.text)
        jsonschema.validate(r.json(), schema)
        got[kind] = r.json()
    people = {p["name"]: p for p in got["participants"]}
    for pid in pubs:
        assert same(people[f"N{pid}"]["id"], pid) and same(people[f"N{pid}"]["extra_data"]["participant_id"], pid)
    assert [same(t["participant"]["id"], 0) for t in got["transcript"]] == [True] * len(got["transcript"])
    assert {p["participant"]["name"] for p in got["audio_parts"]} == {"N0", "N-5", f"N{MAX_SAFE_ID}"}
    joins = {e["participant"]["name"] for e in got["participant_events"] if e["action"] == "join"}
    assert joins == {"N0", "N-5", f"N{MAX_SAFE_ID}"}

    for bad in (MAX_SAFE_ID + 1, -MAX_SAFE_ID - 1, True, 1.5):
        r = await api.client.patch(f"/v1/transcripts/{tid}", json={"participants": [{"id": bad, "name": "x"}]})
        assert r.status_code == 422 and r.json()["error"]["code"] == "VALIDATION_ERROR", (bad, r.text)
    r = await api.client.patch(f"/v1/transcripts/{tid}", json={"participants": [{"id": 0, "name": "Zed"}]})
    assert r.status_code == 200 and same(r.json()["participants"][0]["id"], 0)
    people = {p["name"]: p for p in (await api.client.get(f"/v1/transcripts/{tid}/download/participants")).json()}
    assert same(people["Zed"]["id"], 0) and same(people["Zed"]["extra_data"]["participant_id"], 0)
