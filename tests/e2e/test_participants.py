"""Per-participant streams: channel-per-speaker audio (live and uploaded), several participants streaming to one
transcript over real WebSockets, and speaker renames shown by every reader. Real server, real model, real speech."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
import uuid
import wave

import httpx
import jsonschema
import numpy as np
import openpyxl
import srt
import websockets
import webvtt

from bench.metrics import wer_counts
from media import decode_file
from server.cli.live_client import (
    Received,
    StreamRecord,
    create_transcript,
    load_pcm16k,
    send_paced,
    stream_audio,
    ws_url,
)
from server.pipeline.recordings import audio_file_name
from tests.http_support import TLS
from tests.meeting_schemas import DOWNLOADS

pytest_plugins = ("tests.rest_fixtures",)

STEREO = "multi/stereo_2spk_one_per_channel.wav"  # left: LibriSpeech 61-70968-0000, right: another voice
LATE = 5.0


def load_pcm16k_stereo(path) -> np.ndarray:
    """(frames, 2) float32: streamed as interleaved stereo PCM."""
    left, right = decode_file(path, split_channels=True)
    return np.stack([left, right], axis=1)


def wer(ref: str, hyp: str) -> float:
    errors, n = wer_counts(ref, hyp)
    return errors / n


def channel_refs(references: dict) -> dict[int, str]:
    return {seg["channel"]: seg["text"] for seg in references[STEREO]["segments"]}


async def get(base: str, path: str, **params) -> httpx.Response:
    async with httpx.AsyncClient(verify=TLS, base_url=base, timeout=30) as client:
        r = await client.get(path, params=params)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r


async def wait_done(base: str, tid: str, within: float = 90.0) -> dict:
    deadline = time.monotonic() + within
    while True:
        body = (await get(base, f"/v1/transcripts/{tid}")).json()
        if body["status"] in ("completed", "failed"):
            return body
        assert time.monotonic() < deadline, f"{tid} still {body['status']}"
        await asyncio.sleep(0.2)


async def downloads(base: str, tid: str) -> dict[str, list]:
    out = {}
    for kind, schema in DOWNLOADS.items():
        out[kind] = (await get(base, f"/v1/transcripts/{tid}/download/{kind}")).json()
        jsonschema.validate(out[kind], schema)
    return out


async def part_frames(base: str, part: dict) -> int:
    r = await get(base, httpx.URL(part["download_url"]).raw_path.decode())
    with wave.open(io.BytesIO(r.content)) as w:
        assert (w.getframerate(), w.getnchannels()) == (16000, 1)
        return w.getnframes()


def said_by(segments: list[dict]) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for seg in segments:
        out.setdefault(seg["speaker"], []).append(seg["text"])
    return {k: " ".join(v) for k, v in out.items()}


async def stream_bytes(base: str, data: bytes, params: dict, bytes_per_second: int, chunk_s: float = 0.1
                       ) -> StreamRecord:
    """Send an encoded file's bytes at real-time pace after ``start``, then ``stop``; wait for ``completed``."""
    tid = await create_transcript(base, "split container")
    rec = StreamRecord(tid)
    async with websockets.connect(ws_url(base, tid), max_size=None) as ws:
        done = asyncio.Event()

        async def reader() -> None:
            async for raw in ws:
                r = Received(time.monotonic(), json.loads(raw))
                rec.received.append(r)
                if r.type == "status" and r.data["status"] == "completed" and r.data["participant_id"] is None \
                        and rec.stopped is not None:
                    done.set()

        task = asyncio.create_task(reader())
        await ws.send(json.dumps({"action": "start", "params": params}))
        rec.started = time.monotonic()
        step = int(bytes_per_second * chunk_s)
        for n, i in enumerate(range(0, len(data), step)):
            await asyncio.sleep(max(0.0, rec.started + n * chunk_s - time.monotonic()))
            await ws.send(data[i:i + step])
        rec.stopped = time.monotonic()
        await ws.send(json.dumps({"action": "stop"}))
        await asyncio.wait_for(done.wait(), 60)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return rec


async def check_split_transcript(base: str, tid: str, refs: dict[int, str], names: list[str],
                                 seconds: float, rec: StreamRecord | None = None) -> None:
    """Each channel's reference text under its own participant; each channel's own audio file."""
    body = await wait_done(base, tid)
    assert body["status"] == "completed"
    segments = body["segments"]
    assert {s["participant_id"] for s in segments} == {"channel-1", "channel-2"}
    for s in segments:
        assert s["speaker"] == names[int(s["participant_id"].split("-")[1]) - 1]
    said = said_by(segments)
    for channel, name in enumerate(names, 1):
        assert wer(refs[channel], said.get(name, "")) <= 0.2, (name, said)
    if rec is not None:  # the live messages say who speaks, as they are sent
        live = [r.data for r in rec.transcriptions]
        assert live and all(m["participant_id"] in ("channel-1", "channel-2") for m in live)
        assert all(m["speaker"] == names[int(m["participant_id"][-1]) - 1] for m in live)
    got = await downloads(base, tid)
    assert sorted(p["name"] for p in got["participants"]) == sorted(names)
    parts = {p["participant"]["name"]: p for p in got["audio_parts"]}
    assert set(parts) == set(names)
    for p in parts.values():
        assert abs(p["duration"] - seconds) < 0.05 and p["start_timestamp"]["relative"] == 0.0
        assert abs(await part_frames(base, p) - seconds * 16000) < 800


async def test_split_channels_over_the_websocket(server, audio_dir, references):
    """A stereo recording with one speaker per channel, streamed live as raw PCM and as a WAV container: each
    channel is its own participant, and each channel's words come out under it (the downmix garbles both)."""
    stereo = load_pcm16k_stereo(audio_dir / STEREO)
    seconds = len(stereo) / 16000
    refs = channel_refs(references)
    wav = (audio_dir / STEREO).read_bytes()
    names = ["Left talker", "Right talker"]
    log_from = server.log_path.stat().st_size
    pcm, container = await asyncio.gather(
        stream_audio(server.url, stereo, start_params={"channels": 2, "split_channels": True}),
        stream_bytes(server.url, wav, {"format": "wav", "channels": 2, "split_channels": True,
                                       "channel_names": names}, bytes_per_second=64000))
    assert pcm.completed is not None
    with server.log_path.open() as log:  # the client's stop is answered, not a handler that raised
        log.seek(log_from)
        assert "Exception in ASGI application" not in log.read()
    await check_split_transcript(server.url, pcm.transcript_id, refs, ["Channel 1", "Channel 2"], seconds, pcm)
    await check_split_transcript(server.url, container.transcript_id, refs, names, seconds, container)

    # bad combinations are refused with INVALID_PARAMS, and the connection stays usable
    tid = await create_transcript(server.url, "split errors")
    async with websockets.connect(ws_url(server.url, tid)) as ws:
        await asyncio.wait_for(ws.recv(), 5)  # the current status
        for params in ({"split_channels": True, "participant": {"id": "x"}}, {"channel_names": ["A"]},
                       {"split_channels": True, "channels": 1, "channel_names": ["A", "B"]}):
            await ws.send(json.dumps({"action": "start", "params": params}))
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert msg["type"] == "error" and msg["data"]["code"] == "INVALID_PARAMS", msg


async def test_split_channels_upload_and_job(server, audio_dir, references):
    """The same file uploaded with split_channels (form field), and as a job with channel_names (query)."""
    refs = channel_refs(references)
    seconds = len(load_pcm16k(audio_dir / STEREO)) / 16000
    data = (audio_dir / STEREO).read_bytes()
    async with httpx.AsyncClient(verify=TLS, base_url=server.url, timeout=60) as client:
        tid = (await client.post("/v1/transcripts/", json={"name": "split upload"})).json()["id"]
        r = await client.post(f"/v1/transcripts_audio/{tid}/upload", data={"split_channels": "true"},
                              files={"file": ("stereo.wav", data, "audio/wav")})
        assert r.status_code == 202, r.text
        names = ["Agent", "Customer"]
        r = await client.post("/api/transcribe/", params={"split_channels": "1", "channel_names": names},
                              files={"file": ("stereo.wav", data, "audio/wav")})
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        bad = await client.post("/api/transcribe/", data={"channel_names": "Agent"},
                                files={"file": ("stereo.wav", data, "audio/wav")})
        assert bad.status_code == 422, bad.text
    await check_split_transcript(server.url, tid, refs, ["Channel 1", "Channel 2"], seconds)
    await check_split_transcript(server.url, job, refs, names, seconds)
    result = (await get(server.url, f"/api/transcribe/result/{job}")).json()
    assert {s["speaker"] for s in result["segments"]} == set(names)


async def test_three_participants_stream_to_one_transcript(server, audio_dir, references):
    """A meeting bot's three participant streams over real WebSockets, one joining 5 s late: one transcript,
    time-ordered and interleaved, every segment with its participant, the late joiner on the transcript clock,
    join/leave/speech events and each participant's own audio."""
    files = {"ann": "single/librispeech_1089-134686_1utt.wav", "bob": "single/librispeech_2412-153948-0000.wav",
             "cy": "single/librispeech_61-70968-0000.wav"}
    names = {"ann": "Ann", "bob": "Bob", "cy": "Cy (late)"}
    audio = {pid: load_pcm16k(audio_dir / f) for pid, f in files.items()}
    tid = await create_transcript(server.url, "meeting of three")
    seen: list[dict] = []  # a dashboard watching the meeting: every participant's messages on one socket
    live = asyncio.Event()  # the transcript clock starts with its first stream

    async def watch() -> None:
        async with websockets.connect(ws_url(server.url, tid)) as ws:
            async for raw in ws:
                msg = json.loads(raw)
                seen.append(msg)
                if msg["type"] == "status" and msg["data"]["stage"] == "live":
                    live.set()
                if msg["type"] == "status" and msg["data"]["status"] == "completed" \
                        and msg["data"]["participant_id"] is None:
                    return

    async def participant(pid: str, late: bool) -> StreamRecord:
        if late:
            await live.wait()
            await asyncio.sleep(LATE)
        who = {"id": pid, "name": names[pid], "is_host": pid == "ann", "platform": "test-bot"}
        return await stream_audio(server.url, audio[pid], transcript_id=tid, start_params={"participant": who})

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    began = time.monotonic()
    recs = dict(zip(files, await asyncio.gather(participant("ann", False), participant("bob", False),
                                                 participant("cy", True)), strict=True))
    assert time.monotonic() - began < 35, "streams run concurrently"
    for rec in recs.values():
        assert rec.completed is not None
    await asyncio.wait_for(watcher, 30)
    watched = [m["data"] for m in seen if m["type"] == "transcription" and m["data"]["is_final"]]
    assert {m["participant_id"] for m in watched} == set(files)

    # live messages: each stream's transcriptions carry its participant and name
    for pid, rec in recs.items():
        mine = [r.data for r in rec.transcriptions if r.data["participant_id"] == pid]
        assert mine and all(m["speaker"] == names[pid] for m in mine)
        assert all(r.data["speaker"] == names[r.data["participant_id"]] for r in rec.transcriptions)

    body = await wait_done(server.url, tid)
    segments = body["segments"]
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts), "one transcript in time order"
    assert {s["participant_id"] for s in segments} == set(files)
    assert all(s["speaker"] == names[s["participant_id"]] for s in segments)
    late = [s for s in segments if s["participant_id"] == "cy"]
    assert min(s["start"] for s in late) >= LATE, late
    bob = [s for s in segments if s["participant_id"] == "bob"]
    assert bob[0]["start"] < late[0]["start"] < bob[-1]["end"], "the late joiner speaks while Bob does: interleaved"
    for pid, f in files.items():
        text = " ".join(s["text"] for s in segments if s["participant_id"] == pid)
        assert wer(references[f]["text"], text) <= 0.2, (pid, text)

    got = await downloads(server.url, tid)
    people = {p["name"]: p for p in got["participants"]}
    assert set(people) == set(names.values()) and people["Ann"]["is_host"] is True
    assert people["Bob"]["platform"] == "test-bot"
    events = got["participant_events"]
    times = [e["timestamp"]["relative"] for e in events]
    assert times == sorted(times)
    for pid, name in names.items():
        mine = [(e["action"], e["timestamp"]["relative"]) for e in events if e["participant"]["name"] == name]
        actions = [a for a, _ in mine]
        assert actions[0] == "join" and actions[-1] == "leave", actions
        assert actions.count("speech_on") == actions.count("speech_off") >= 1
        joined, left = mine[0][1], mine[-1][1]
        assert abs(left - joined - len(audio[pid]) / 16000) < 0.1
        if pid == "cy":
            assert LATE <= joined < LATE + 1.5
            assert all(t >= joined for _, t in mine)
        else:
            assert joined < 0.5
    parts = {p["participant"]["name"]: p for p in got["audio_parts"]}
    assert set(parts) == set(names.values())
    for pid, name in names.items():
        seconds = len(audio[pid]) / 16000
        assert abs(parts[name]["duration"] - seconds) < 0.05
        assert abs(await part_frames(server.url, parts[name]) - len(audio[pid])) < 160
    assert LATE <= parts["Cy (late)"]["start_timestamp"]["relative"] < LATE + 1.5
    with wave.open(str(server.data_dir / "audio" / tid / "participant-cy.wav")) as w:
        assert abs(w.getnframes() - len(audio["cy"])) < 160
    assert abs(body["duration"] - max(parts["Cy (late)"]["start_timestamp"]["relative"] + len(audio["cy"]) / 16000,
                                      len(audio["bob"]) / 16000)) < 0.2

    # a participant renamed after the meeting: shown under the new name, stored segments keep theirs
    async with httpx.AsyncClient(verify=TLS, base_url=server.url, timeout=30) as client:
        r = await client.patch(f"/v1/transcripts/{tid}", json={"participants": [{"id": "bob", "name": "Robert"}]})
        assert r.status_code == 200, r.text
    renamed = (await get(server.url, f"/v1/transcripts/{tid}")).json()["segments"]
    assert {s["speaker"] for s in renamed if s["participant_id"] == "bob"} == {"Robert"}
    assert {s["speaker_label"] for s in renamed if s["participant_id"] == "bob"} == {"Bob"}
    subs = list(srt.parse((await get(server.url, f"/v1/transcripts/{tid}", transcript_format="srt")).text))
    assert any(s.content.startswith("Robert: ") for s in subs) and not any("Bob" in s.content for s in subs)
    people = {p["name"]: p for p in (await get(server.url, f"/v1/transcripts/{tid}/download/participants")).json()}
    assert set(people) == {"Ann", "Robert", "Cy (late)"} and people["Robert"]["platform"] == "test-bot"


async def publish_as_documented(base: str, tid: str, who: dict, audio: np.ndarray) -> list[dict]:
    """A meeting bot's participant client written from the protocol's words: it sends ``start``, streams once
    the server answers ``receiving audio``, sends ``stop``, and hangs up at the first ``completed`` it hears.
    Returns the finals of its own participant that it heard before hanging up."""
    heard: list[dict] = []
    async with websockets.connect(ws_url(base, tid), max_size=None) as ws:
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "participant": who}}))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
            assert msg["type"] != "error", msg
            if msg["type"] == "status" and msg["data"]["message"] == "receiving audio":
                break
        reader = asyncio.create_task(ws.recv())
        rec = StreamRecord(tid)
        sending = asyncio.create_task(send_paced(ws, rec, audio, 1600))
        messages: list[dict] = []
        stopped = False
        while True:
            done, _ = await asyncio.wait({reader, sending} if not stopped else {reader}, timeout=120,
                                         return_when=asyncio.FIRST_COMPLETED)
            assert done, "nothing from the server for 120 s"
            if sending in done and not stopped:
                sending.result()
                await ws.send(json.dumps({"action": "stop", "params": {}}))
                stopped = True
            if reader in done:
                msg = json.loads(reader.result())
                messages.append(msg)
                if msg["type"] == "status" and msg["data"]["status"] == "completed" and stopped:
                    break
                reader = asyncio.create_task(ws.recv())
        heard = [m["data"] for m in messages if m["type"] == "transcription" and m["data"]["is_final"]
                 and m["data"]["participant_id"] == who["id"]]
    return heard


async def test_every_participant_hears_its_last_words_whatever_order_they_stop(server, audio_dir, references):
    """Three participants of one meeting, each client hanging up at the first ``completed`` it hears after its
    ``stop``: each has been sent every final of its own stream by then, its last utterance included, and each
    is stored. A stream's end told to every subscriber as ``completed`` made the participant that stopped last
    (or second last) hang up before its own last final, in every run."""
    files = {1: "single/jfk_inaugural_1961_excerpt.wav", 2: "single/librispeech_2412-153948-0000.wav",
             3: "single/librispeech_61-70968-0000.wav"}
    audio = {pid: load_pcm16k(audio_dir / f) for pid, f in files.items()}
    tid = await create_transcript(server.url, "participants stopping in turn")

    async def participant(pid: int) -> list[dict]:
        if pid == 3:
            await asyncio.sleep(LATE)
        who = {"id": pid, "name": f"P{pid}", "is_host": pid == 1}
        return await publish_as_documented(server.url, tid, who, audio[pid])

    heard = dict(zip(files, await asyncio.gather(*(participant(pid) for pid in files)), strict=True))
    body = await wait_done(server.url, tid)
    assert body["status"] == "completed"
    for pid, f in files.items():
        stored = [s for s in body["segments"] if s["participant_id"] == pid]
        said = " ".join(s["text"] for s in stored)
        last = words_of(references[f]["text"])[-4:]
        assert words_of(said)[-len(last):] == last, (pid, said)
        assert [(m["segment_id"], m["text"]) for m in heard[pid]] == [(s["id"], s["text"]) for s in stored], (
            f"participant {pid} hung up before its own finals", heard[pid], stored)


def words_of(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


# ---------------------------------------------------------------- speaker rename, every reader


async def test_speaker_rename_is_shown_everywhere(public_api):
    """Diarization-style labels and a live participant, renamed through PATCH participants: the new names in the
    transcript, every format, the meeting downloads, the project table and the WebSocket history; the stored
    labels stay, and a label reassigned later is shown under the name its new label has."""
    api = public_api
    store = api.svc.store
    project = await store.create_project(title=f"renames {uuid.uuid4().hex[:6]}", language=None, portal={},
                                         owner=None)
    t = await store.create_transcript(name="renames", status="completed")
    tid = t["id"]
    await store.create_conversation(transcript_id=tid, project_id=project["id"], name="Renames", email=None, tags=[],
                                    source=None)
    join = {"type": "join", "participant_id": "alice", "data": {}, "time": 0.0,
            "participant": {"id": "alice", "name": "Alice", "is_host": True, "platform": "zoom"}}
    await store.update_transcript(tid, duration=12.0, meta={"participant_events": [join]})
    rows = [("s1", "Speaker 1", None, 0.0, 2.0, "hello there everyone"),
            ("s2", "Speaker 2", None, 2.5, 4.0, "hi how are you"),
            ("s3", "Alice", "alice", 4.5, 6.0, "welcome to the meeting"),
            ("s4", "Speaker 1", None, 6.5, 8.0, "thanks for having me"),
            ("s5", "Speaker 2", None, 8.5, 10.0, "let us begin")]
    for sid, label, pid, start, end, text in rows:
        await store.save_segment(tid, {"id": sid, "text": text, "speaker": label, "participant_id": pid,
                                       "start": start, "end": end, "confidence": 0.9, "words": []})
    renames = [{"id": "Speaker 1", "name": "Dana"}, {"id": "alice", "name": "Alice Smith"},
               {"id": "Speaker 2", "name": "Eve"}]
    r = await api.client.patch(f"/v1/transcripts/{tid}", json={"participants": renames})
    assert r.status_code == 200 and r.json()["participants"] == renames
    shown = {"s1": "Dana", "s2": "Eve", "s3": "Alice Smith", "s4": "Dana", "s5": "Eve"}

    url = f"/v1/transcripts/{tid}"
    segs = (await api.client.get(url)).json()["segments"]
    assert {s["id"]: s["speaker"] for s in segs} == shown
    assert {s["id"]: s["speaker_label"] for s in segs} == {r[0]: r[1] for r in rows}
    stored = await store.get_segments(tid)
    assert [s["speaker"] for s in stored] == [r[1] for r in rows], "stored labels are never rewritten"

    async def fmt(name: str) -> str:
        r = await api.client.get(url, params={"transcript_format": name})
        assert r.status_code == 200, r.text
        return r.text

    text = await fmt("text")
    assert text.splitlines()[0] == "Dana: hello there everyone" and "Alice Smith: welcome" in text
    assert "Speaker 1" not in text and "Speaker 2" not in text
    assert "[00:00:04] Alice Smith: welcome" in await fmt("text-timestamped")
    assert [s.content.split(":")[0] for s in srt.parse(await fmt("srt"))] == [shown[r[0]] for r in rows]
    vtt = webvtt.from_string(await fmt("webvtt-named"))
    assert [c.voice for c in vtt.captions] == [shown[r[0]] for r in rows]
    js = json.loads(await fmt("json"))
    assert js["speakers"] == sorted(set(shown.values()))
    assert [e["speaker"] for e in js["speaker_timeline"]] == [shown[r[0]] for r in rows]
    md = await fmt("markdown")
    assert "- Participants: Alice Smith, Dana, Eve" in md and "] Dana:** hello" in md and "Speaker" not in md
    r = await api.client.get(f"/api/conversations/{tid}/transcript")
    assert "Dana: hello there everyone" in r.text

    got = {kind: (await api.client.get(f"{url}/download/{kind}")).json() for kind in DOWNLOADS}
    for kind, schema in DOWNLOADS.items():
        jsonschema.validate(got[kind], schema)
    people = {p["name"]: p for p in got["participants"]}
    assert set(people) == {"Alice Smith", "Dana", "Eve"}, "a rename is not a participant of its own"
    assert people["Alice Smith"]["is_host"] is True and people["Alice Smith"]["platform"] == "zoom"
    assert people["Dana"]["extra_data"] == {"speaker": "Speaker 1"}
    assert [e["participant"]["name"] for e in got["speaker_timeline"]] == [shown[r[0]] for r in rows]
    assert [t["participant"]["name"] for t in got["transcript"]] == [shown[r[0]] for r in rows]
    assert {e["participant"]["name"] for e in got["participant_events"]} == set(people)

    csv_text = (await api.client.get(f"/api/projects/{project['id']}/export.csv")).text
    [row] = list(csv.DictReader(io.StringIO(csv_text, newline="")))
    assert row["speakers"] == "Alice Smith, Dana, Eve"
    book = openpyxl.load_workbook(io.BytesIO((await api.client.get(f"/api/projects/{project['id']}/export.xlsx"))
                                             .content))
    assert [c.value for c in book.active[2]][6] == "Alice Smith, Dana, Eve"

    base = await api.serve()
    async with websockets.connect(ws_url(base, tid)) as ws:
        history = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in rows]
    assert [m["data"]["speaker"] for m in history] == [shown[r[0]] for r in rows]

    # diarization relabels a segment later: the mapping follows the label, nothing had to be rewritten
    await store.save_segment(tid, {**stored[4], "speaker": "Speaker 1"})
    segs = (await api.client.get(url)).json()["segments"]
    assert segs[4]["speaker"] == "Dana" and segs[4]["speaker_label"] == "Speaker 1"
    # renaming again replaces the list: a label without an entry is shown as stored
    r = await api.client.patch(url, json={"participants": [{"id": "Speaker 1", "name": "Dana Q"}]})
    assert r.status_code == 200
    segs = (await api.client.get(url)).json()["segments"]
    assert [s["speaker"] for s in segs] == ["Dana Q", "Speaker 2", "Alice", "Dana Q", "Dana Q"]


def test_participant_audio_files_never_collide() -> None:
    """Ids that differ only in characters a file name cannot hold, or past 80 characters, kept one file
    between them: the second participant's audio was appended to the first one's recording."""
    ids = ["a b", "a_b", "a/b", "a\\b", "x" * 100, "x" * 100 + "y", "²", "٣", "ok-1", ".."]
    names = [audio_file_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert all(re.fullmatch(r"participant-[A-Za-z0-9_.-]{1,100}\.wav", n) for n in names)
    assert audio_file_name("ok-1") == "participant-ok-1.wav"  # a plain id keeps the name it always had
