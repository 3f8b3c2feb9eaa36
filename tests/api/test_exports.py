"""Exports, each read back by a parser that is not ours: transcript formats (srt, webvtt-py), the meeting-bot
downloads (JSON Schemas from the reference), the project zip (zipfile), CSV (csv) and XLSX (openpyxl)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
import uuid
import wave
import zipfile
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import openpyxl
import srt
import webvtt

from bench.metrics import normalize, wer_counts
from protocol import Participant, ParticipantEventParams, StartParams
from server.features.exports import TABLE_COLUMNS
from tests.meeting_schemas import DOWNLOADS
from tests.rest_support import AUDIO, Api, as_cue_texts, as_plain_text, creds, read_wav, reference

pytest_plugins = ("tests.rest_fixtures",)

JFK = "single/jfk_inaugural_1961_excerpt.wav"
WIZARD = "single/librispeech_61-70968-0000.wav"
ADMIN = ["transcripts:read", "transcripts:write", "projects:admin", "export"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def wer(ref: str, hyp: str) -> float:
    errors, n = wer_counts(ref, hyp)
    return errors / n


async def uploaded(api: Api, name: str, user: str = "alice") -> tuple[str, dict]:
    r = await api.client.post("/v1/transcripts/", json={"name": f"export {uuid.uuid4().hex[:6]}"},
                              headers=creds(api, user))
    tid = r.json()["id"]
    r = await api.client.post(f"/v1/transcripts_audio/{tid}/upload",
                              files={"file": ("speech.wav", (AUDIO / name).read_bytes(), "audio/wav")},
                              headers=creds(api, user))
    assert r.status_code == 202, r.text
    return tid, await api.wait_transcript(tid, creds(api, user))


async def downloads(api: Api, tid: str, headers: dict[str, str]) -> dict[str, list]:
    out = {}
    for kind, schema in DOWNLOADS.items():
        r = await api.client.get(f"/v1/transcripts/{tid}/download/{kind}", headers=headers)
        assert r.status_code == 200, (kind, r.text)
        jsonschema.validate(r.json(), schema)
        out[kind] = r.json()
    return out


async def test_transcript_formats_and_meeting_downloads_of_an_upload(api: Api):
    tid, row = await uploaded(api, JFK)
    assert row["status"] == "completed"
    text = " ".join(s["text"] for s in row["segments"])
    assert wer(reference(JFK), text) < 0.25
    url, h = f"/v1/transcripts/{tid}", creds(api)
    plain = (await api.client.get(url, params={"transcript_format": "text"}, headers=h)).text
    assert normalize(plain) == normalize(as_plain_text(row["segments"]))
    subs = list(srt.parse((await api.client.get(url, params={"transcript_format": "srt"}, headers=h)).text))
    assert [s.content for s in subs] == as_cue_texts(row["segments"])
    assert abs(subs[0].start.total_seconds() - row["segments"][0]["start"]) < 0.002
    vtt = webvtt.from_string((await api.client.get(url, params={"transcript_format": "webvtt-named"},
                                                   headers=h)).text)
    assert [c.text for c in vtt.captions] == [s["text"] for s in row["segments"]]
    js = (await api.client.get(url, params={"transcript_format": "json"}, headers=h)).json()
    assert js["segments"][0]["words"] and normalize(js["text"]) == normalize(text) and "meta" not in js
    md = await api.client.get(url, params={"transcript_format": "markdown"}, headers=h)
    assert md.headers["content-type"].startswith("text/markdown") and "## Transcript" in md.text
    r = await api.client.get(f"/api/conversations/{tid}/transcript", headers=h)
    assert r.status_code == 200 and normalize(r.text) == normalize(as_plain_text(row["segments"]))

    got = await downloads(api, tid, h)
    # a single-voice upload: its one speaker stands in as the only participant
    assert [p["id"] for p in got["participants"]] == [1]
    actions = [e["action"] for e in got["participant_events"]]
    assert actions[0] == "join" and actions[-1] == "leave" and "speech_on" in actions and "speech_off" in actions
    assert actions.count("speech_on") == actions.count("speech_off") == len(got["speaker_timeline"])
    assert abs(got["participant_events"][0]["timestamp"]["relative"] - row["segments"][0]["start"]) < 0.001
    words = [w["text"] for turn in got["transcript"] for w in turn["words"]]
    assert normalize(" ".join(words)) == normalize(text)
    starts = [w["start_timestamp"]["relative"] for turn in got["transcript"] for w in turn["words"]]
    assert starts == sorted(starts) and starts[-1] <= row["duration"]
    first, last = got["speaker_timeline"][0], got["speaker_timeline"][-1]
    assert first["start_timestamp"]["relative"] <= last["end_timestamp"]["relative"] <= row["duration"]
    [part] = got["audio_parts"]
    assert part["participant"]["id"] == 1 and abs(part["duration"] - row["duration"]) < 0.05
    # provider data: each final as the job runner produced it, from the mixed (one-stream) audio
    parts = got["transcript_provider_data"]["parts"]
    assert [p["id"] for p in parts] == [s["id"] for s in row["segments"]]
    assert {p["type"] for p in parts} == {"http_response"}
    assert all(p["source_audio"]["type"] == "mixed" and p["source_audio"]["participant"] is None for p in parts)
    assert [p["data"]["body"]["data"]["text"] for p in parts] == [s["text"] for s in row["segments"]]
    assert all(p["data"]["body"]["type"] == "transcription" and p["data"]["body"]["data"]["is_final"] for p in parts)
    provider = f"{url}/download/transcript_provider_data"
    paged, link = [], f"{provider}?size=1"
    while link:  # a page at a time, by the Link header
        r = await api.client.get(link, headers=h)
        assert r.status_code == 200 and int(r.headers["x-total-count"]) == len(parts)
        jsonschema.validate(r.json(), DOWNLOADS["transcript_provider_data"])
        paged += r.json()["parts"]
        link = httpx.URL(r.links["next"]["url"]).raw_path.decode() if "next" in r.links else ""
    assert paged == parts
    for bad in ({"size": "0"}, {"size": "1001"}, {"page": "0"}, {"page": "x"}):
        r = await api.client.get(provider, params=bad, headers=h)
        assert r.status_code == 422, (bad, r.text)
    past = await api.client.get(provider, params={"page": "999"}, headers=h)
    assert past.status_code == 200 and past.json() == {"parts": []} and "link" not in past.headers
    r = await api.client.get(httpx.URL(part["download_url"]).raw_path.decode(), headers=h)
    assert r.status_code == 200 and r.content == (AUDIO / JFK).read_bytes()

    if api.private:  # exports need the export scope; another user sees nothing
        no_export = creds(api, "alice", ["transcripts:read", "transcripts:write"])
        for path in (f"{url}/download/participants", f"/api/conversations/{tid}/transcript"):
            r = await api.client.get(path, headers=no_export)
            assert r.status_code == 403 and r.json()["error"]["code"] == "INSUFFICIENT_SCOPE"
        r = await api.client.get(url, params={"transcript_format": "srt"}, headers=no_export)
        assert r.status_code == 403
        for path in (f"{url}/download/transcript", f"/api/conversations/{tid}/transcript",
                     f"{url}/download/transcript_provider_data"):
            assert (await api.client.get(path, headers=creds(api, "mallory"))).status_code == 404
        r = await api.client.get(f"{url}/download/transcript_provider_data", headers=no_export)
        assert r.status_code == 403
        assert (await api.client.get(f"{url}/download/participants")).status_code == 401


async def test_live_participants_events_audio_parts_and_summary(public_api: Api):
    """Two live participants (a meeting bot's streams): their metadata, recorded join/leave and chat events,
    their own audio files, words per participant; the completed transcript gets a summary message."""
    api = public_api
    r = await api.client.post("/v1/transcripts/", json={"name": "meeting"})
    tid = r.json()["id"]
    sub = api.svc.hub.subscribe(tid)
    live = api.svc.live.get(tid)
    alice = await live.add_publisher(StartParams(participant=Participant(
        id="alice", name="Alice", is_host=True, platform="zoom", extra_data={"email": "a@example.org"})))
    bob = await live.add_publisher(StartParams(participant=Participant(id="7", name="Bob", is_host=False)))
    audio = {}
    for pub, name in ((alice, JFK), (bob, WIZARD)):
        samples, rate = read_wav(AUDIO / name)
        assert rate == 16000
        audio[pub.participant_id] = samples
        await pub.feed_pcm(samples.astype(np.float32) / 32768)
    said_in_chat = {"text": "hi all", "to": "everyone"}
    await alice.participant_event(ParticipantEventParams(type="chat_message", data=said_in_chat))
    await alice.participant_event(ParticipantEventParams(type="unknown_thing", data={}))
    await bob.finish()
    await alice.finish()
    messages = []
    while True:
        msg = await asyncio.wait_for(sub.queue.get(), 30)
        messages.append(msg)
        if msg["type"] == "summary":
            break
    api.svc.hub.unsubscribe(sub)
    kinds = [(m["type"], m["data"].get("status")) for m in messages if m["type"] in ("status", "summary")]
    assert kinds.index(("status", "completed")) < kinds.index(("summary", None)), "completed is never delayed"
    summary = messages[-1]["data"]
    assert summary["summary"] and summary["key_points"] and summary["topics"]
    row = (await api.client.get(f"/v1/transcripts/{tid}")).json()
    assert row["summary"]["summary"] == summary["summary"] and row["summary"]["model_used"] == "extractive"

    got = await downloads(api, tid, {})
    people = {p["name"]: p for p in got["participants"]}
    assert set(people) == {"Alice", "Bob"}
    assert people["Bob"]["id"] == 7 and people["Alice"]["id"] == 1  # numeric ids kept, others numbered
    assert people["Alice"]["is_host"] is True and people["Alice"]["platform"] == "zoom"
    assert people["Alice"]["extra_data"]["email"] == "a@example.org"
    events = got["participant_events"]
    chat = [e for e in events if e["action"] == "chat_message"]
    assert len(chat) == 1 and chat[0]["data"] == said_in_chat
    assert chat[0]["participant"]["name"] == "Alice"
    for who in ("Alice", "Bob"):
        mine = [e["action"] for e in events if e["participant"]["name"] == who]
        assert mine[0] == "join" and mine[-1] == "leave" and "speech_on" in mine, mine
    times = [e["timestamp"]["relative"] for e in events]
    assert times == sorted(times)
    said = {}
    for turn in got["transcript"]:
        said.setdefault(turn["participant"]["name"], []).extend(w["text"] for w in turn["words"])
    assert wer(reference(JFK), " ".join(said["Alice"])) < 0.25
    assert "wizard" in normalize(" ".join(said["Bob"]))
    # provider data: each final went out on the WebSocket, from its participant's own (separate) audio
    provided = got["transcript_provider_data"]["parts"]
    assert provided and {p["type"] for p in provided} == {"websocket_message"}
    assert all(p["data"]["url"].endswith(f"/v1/transcripts_websocket/{tid}") for p in provided)
    by_name: dict[str, list[str]] = {}
    for p in provided:
        assert p["source_audio"]["type"] == "separate" and p["data"]["event"] == "transcription"
        by_name.setdefault(p["source_audio"]["participant"]["name"], []).append(p["data"]["payload"]["data"]["text"])
    assert wer(reference(JFK), " ".join(by_name["Alice"])) < 0.25 and "wizard" in normalize(" ".join(by_name["Bob"]))
    parts = {p["participant"]["name"]: p for p in got["audio_parts"]}
    assert set(parts) == {"Alice", "Bob"}
    for name, pid in (("Alice", "alice"), ("Bob", "7")):
        r = await api.client.get(httpx.URL(parts[name]["download_url"]).raw_path.decode())
        assert r.status_code == 200
        with wave.open(io.BytesIO(r.content)) as w:  # the participant's own audio, whole
            assert w.getframerate() == 16000 and abs(w.getnframes() - len(audio[pid])) < 160
        assert abs(parts[name]["duration"] - len(audio[pid]) / 16000) < 0.02


async def kiosk_conversation(api: Api, pid: str, name: str | None, tags: list[str], audio: str | None) -> str:
    r = await api.client.post("/api/participant/conversations/initiate",
                              json={"project_id": pid, "name": name, "tag_id_list": tags})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    base = f"/api/participant/conversations/{cid}"
    if audio is not None:
        url = (await api.client.post(base + "/get-upload-url", json={})).json()
        put = await api.client.put(httpx.URL(url["url"]).raw_path.decode(), content=(AUDIO / audio).read_bytes(),
                                   headers={"Content-Type": "audio/wav"})
        assert put.status_code == 200, put.text
        assert (await api.client.post(base + "/confirm-upload", json={"key": url["key"]})).status_code == 202
    assert (await api.client.post(base + "/finish")).status_code == 200
    return cid


async def test_project_zip_csv_and_xlsx(api: Api):
    admin = creds(api, "alice", ADMIN)
    r = await api.client.post("/api/projects", json={"title": "Town hall, 2026"}, headers=admin)
    pid = r.json()["id"]
    evil = "=HYPERLINK(\"http://x\",\"y\")"
    c1 = await kiosk_conversation(api, pid, "Doe, \"JD\"", ["north", evil], JFK)
    c2 = await kiosk_conversation(api, pid, "+1 555 0100", ["@mention"], WIZARD)
    c3 = await kiosk_conversation(api, pid, None, [], None)
    for cid in (c1, c2):
        await api.wait_transcript(cid, admin)

    # the zip: one Markdown file per conversation
    r = await api.client.get(f"/api/projects/{pid}/transcripts", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert "town-hall-2026-transcripts.zip" in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert len(names) == 3 and all(n.endswith(".md") for n in names)
        pages = {n: zf.read(n).decode() for n in names}
    first = pages[next(n for n in names if c1[:8] in n)]
    assert first.startswith("# Town hall, 2026: Doe") and "- Date: " in first and "- Participants: Doe, \"JD\"" in first
    lines = [line for line in first.splitlines() if line.startswith("**[")]
    assert lines and lines[0].startswith("**[00:00:0") and "] Doe, \"JD\":** " in lines[0]
    spoken = " ".join(line.split(":** ", 1)[1] for line in lines)
    assert wer(reference(JFK), spoken) < 0.25
    assert "_No speech was transcribed._" in pages[next(n for n in names if c3[:8] in n)]

    # CSV: quoting survives a round trip, no cell can run as a formula, optional BOM
    r = await api.client.get(f"/api/projects/{pid}/export.csv", params={"bom": "1"}, headers=admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"), newline="")))
    assert list(rows[0]) == list(TABLE_COLUMNS) and [row["id"] for row in rows] == [c1, c2, c3]
    by_id = {row["id"]: row for row in rows}
    assert by_id[c1]["name"] == "Doe, \"JD\"" and by_id[c1]["tags"] == f"north, {evil}"
    assert by_id[c2]["name"] == "'+1 555 0100" and by_id[c2]["tags"] == "'@mention"
    assert by_id[c1]["status"] == "completed" and int(by_id[c1]["word_count"]) >= 20
    assert by_id[c3]["word_count"] == "0" and float(by_id[c1]["duration"]) > 10
    assert not any(v.startswith(("=", "+", "-", "@")) for row in rows for v in row.values())
    plain = await api.client.get(f"/api/projects/{pid}/export.csv", headers=admin)
    assert not plain.content.startswith(b"\xef\xbb\xbf")

    # XLSX: the same rows, formula-like text stays text
    r = await api.client.get(f"/api/projects/{pid}/export.xlsx", headers=admin)
    assert r.status_code == 200
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    sheet = wb.active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0] == list(TABLE_COLUMNS) and [v[0] for v in values[1:]] == [c1, c2, c3]
    assert values[2][1] == "'+1 555 0100" and values[2][7] == int(by_id[c2]["word_count"])
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
    assert values[1][3].year >= 2026 and values[1][4] == float(by_id[c1]["duration"])

    if api.private:
        exporter = creds(api, "alice", ["export"])  # exports need `export`, not projects:admin
        assert (await api.client.get(f"/api/projects/{pid}/export.csv", headers=exporter)).status_code == 200
        admin_only = creds(api, "alice", ["projects:admin"])
        assert (await api.client.get(f"/api/projects/{pid}/transcripts", headers=admin_only)).status_code == 403
        other = creds(api, "mallory", ADMIN)
        assert (await api.client.get(f"/api/projects/{pid}/export.xlsx", headers=other)).status_code == 404


async def test_project_zip_streams_with_bounded_memory(tmp_path):
    """The zip is produced entry by entry while the client reads it: the server holds about one conversation
    at a time, so four times the conversations take about the same memory. Measured in a process of its own
    (tests/export_memory_probe.py), where nothing but that server and its one client allocates."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.export_memory_probe", str(tmp_path / "data"), cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-4000:]
    m = json.loads(out.decode().strip().splitlines()[-1])
    assert m["received_big"] > 3.5 * m["received_small"], m
    # 4x the conversations: the peak grows only by the zip's directory (about a kilobyte per entry), never with
    # the text; what stays is about one conversation plus the deflate state (~270 KB)
    assert m["peak_big"] < 1.25 * m["peak_small"] + 150_000, m
    assert m["peak_big"] - m["peak_small"] < (m["text_big"] - m["text_small"]) / 10, m
    assert m["whole_big"] == m["received_big"], m
    assert m["entries"] == 160 and m["bad_entry"] is None and m["unpacked"] > m["text_big"], m
    assert m["eighth_entry_head"].startswith("# conversation 7\n"), m


ODD_IDS = ["²", "٣", "007", "7", "0", "1000000000", "-1", "1e3", " ", "a/b?c#d&e=%2F", "名前", "🎤", "x" * 256,
           "../../etc/passwd", "NaN", "\u202eevil", "line\nbreak", "42"]


async def test_odd_participant_ids_round_trip_in_downloads_and_markdown(api: Api):
    """Participant ids are any text (up to 256 characters): "²" passes ``str.isdigit`` but not ``int``, "007"
    is not the number of "7". Every download, the Markdown and the project zip answer, each id comes back
    as it was, the numbers are unique, and only plain decimals keep their number."""
    admin = creds(api, "alice", ADMIN)
    project = (await api.client.post("/api/projects", json={"title": "Odd ids"}, headers=admin)).json()
    store = api.svc.store
    t = await store.create_transcript(name="odd ids", owner="alice" if api.private else None, status="completed")
    tid = t["id"]
    await store.create_conversation(transcript_id=tid, project_id=project["id"], name="Kiosk", email=None, tags=[],
                                    source=None)
    declared = [{"id": pid, "name": f"Person {i}"} for i, pid in enumerate(ODD_IDS)]
    declared.append({"id": 99, "name": ["not", "text"], "is_host": "yes", "platform": 3})  # free-form JSON
    r = await api.client.patch(f"/v1/transcripts/{tid}", json={"participants": declared}, headers=admin)
    assert r.status_code == 200, r.text
    for i, pid in enumerate([*ODD_IDS, "99"]):
        await store.save_segment(tid, {"id": f"{tid}-{i}", "text": f"words of person {i}", "start": i * 2.0,
                                       "end": i * 2.0 + 1.5, "participant_id": pid, "words": []})
    got = await downloads(api, tid, admin)
    people = got["participants"]
    assert [p["extra_data"]["participant_id"] for p in people] == [*ODD_IDS, "99"]
    ids = {p["extra_data"]["participant_id"]: p["id"] for p in people}
    assert len(set(ids.values())) == len(ids), "every participant has its own number"
    assert ids["7"] == 7 and ids["0"] == 0 and ids["42"] == 42 and ids["99"] == 99
    assert ids["007"] != 7 and ids["²"] != 2 and ids["٣"] != 3 and ids["1000000000"] < 1000
    assert people[-1]["name"] == '["not", "text"]' and people[-1]["is_host"] is None and people[-1]["platform"] == "3"
    said = {t["participant"]["id"]: " ".join(w["text"] for w in t["words"]) for t in got["transcript"]}
    for i, pid in enumerate(ODD_IDS):
        assert said[ids[pid]] == f"words of person {i}"
    r = await api.client.get(f"/v1/transcripts/{tid}/download/audio_parts", headers=admin)
    assert r.status_code == 200 and r.json() == []  # no recordings, and no error
    for fmt in ("text", "text-timestamped", "srt", "webvtt-named", "json", "markdown"):
        r = await api.client.get(f"/v1/transcripts/{tid}", params={"transcript_format": fmt}, headers=admin)
        assert r.status_code == 200, (fmt, r.text)
    md = (await api.client.get(f"/v1/transcripts/{tid}", params={"transcript_format": "markdown"},
                               headers=admin)).text
    for i in range(len(ODD_IDS)):
        assert f"] Person {i}:** words of person {i}" in md
    r = await api.client.get(f"/api/projects/{project['id']}/transcripts", headers=admin)
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        (page,) = [zf.read(n).decode() for n in zf.namelist()]
    assert "- Participants: Person 0, Person 1" in page and "] Person 12:** words of person 12" in page
    # past 256 characters, or not text or a number: a clear 422, nothing stored
    for bad in ("y" * 257, {"nested": 1}, True):
        r = await api.client.patch(f"/v1/transcripts/{tid}", json={"participants": [{"id": bad}]}, headers=admin)
        assert r.status_code == 422 and r.json()["error"]["code"] == "VALIDATION_ERROR", r.text
    row = (await api.client.get(f"/v1/transcripts/{tid}", headers=admin)).json()
    assert [p["id"] for p in row["participants"]] == [*ODD_IDS, 99]


async def test_xlsx_of_names_with_control_characters(api: Api):
    """Found by tests/api/test_schemathesis.py: a control character in a name made openpyxl raise (a 500), and one in
    the project title made a workbook Excel cannot open. Those characters are dropped from the workbook only."""
    admin = creds(api, "alice", ADMIN)
    r = await api.client.post("/api/projects", json={"title": "Bell\x07 hall"}, headers=admin)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    cid = await kiosk_conversation(api, pid, "An\x01n\x1fe", ["tag\x0b"], None)
    r = await api.client.get(f"/api/projects/{pid}/export.xlsx", headers=admin)
    assert r.status_code == 200, r.text
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    assert wb.active.title == "Bell hall"
    values = [[c.value for c in row] for row in wb.active.iter_rows()]
    assert values[1][:3] == [cid, "Anne", "tag"]
    rows = list(csv.DictReader(io.StringIO((await api.client.get(f"/api/projects/{pid}/export.csv",
                                                                 headers=admin)).text, newline="")))
    assert rows[0]["name"] == "An\x01n\x1fe"  # the CSV keeps the name as it was given
