"""Project reports: a report over conversations of real speech read back as JSON, Markdown and PDF (the PDF
parsed by pypdf, not by us), ``report.generated`` delivered once to a real receiver, scopes, visibility and
bounds, and a fan-out that resumes without redoing a finished summary.

The conversations' transcripts are the reference transcripts of ../shared/audio, stored with their utterance
times (what the speech model would have written, without spending the test's time on ASR: it is not what is
tested here).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

import pypdf

from server.features import reports, summaries
from server.jobs.queue import Claimed
from server.jobs.runner import JobContext
from tests.rest_support import AUDIO, Api
from tests.webhook_support import SECRET, Receiver

pytest_plugins = ("tests.rest_fixtures",)

ADMIN = ["transcripts:read", "transcripts:write", "projects:admin", "export"]
REFS = json.loads((AUDIO / "references.json").read_text())
SPEECH = {
    "Phone call": "multi/pyannote_sample_2spk_phone_conversation.wav",
    "Remote control design meeting": "multi/ami_meeting_excerpt_4spk_60s.wav",
    "On printing": "single/ljspeech_LJ001-0001_0016.wav",
    "Printing and type": "single/ljspeech_LJ001-0017_0032.wav",
    "Acoustic corpus": "single/mfa_acoustic_corpus.wav",
    "Entretien café – Привет 東京": "single/jfk_inaugural_1961_excerpt.wav",
}
UNICODE_NAME_IN_PDF = "Entretien café – Privet DongJing"
"""The PDF's core fonts keep Windows-1252 (é, the dash) and transliterate the rest."""


async def stored_conversation(api: Api, project_id: str, name: str, owner: str | None, tags: list[str],
                              extra: str = "") -> str:
    """A completed conversation whose transcript is the reference transcript of ``SPEECH[name]``."""
    store = api.svc.store
    ref = REFS[SPEECH[name]]
    t = await store.create_transcript(name=name, owner=owner, status="completed")
    await store.update_transcript(t["id"], duration=ref["duration_s"])
    await store.create_conversation(transcript_id=t["id"], project_id=project_id, name=name, email=None, tags=tags,
                                    source="test")
    for i, seg in enumerate(ref["segments"]):
        text = seg["text"] + (extra if i == 0 else "")
        await store.save_segment(t["id"], {"id": f"{t['id']}-{i}", "text": text, "start": seg["start"],
                                           "end": seg["end"], "speaker": seg.get("speaker"), "words": []})
    return t["id"]


async def until_done(api: Api, url: str, headers: dict[str, str], within: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        r = await api.client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("completed", "failed"):
            return r.json()
        assert time.monotonic() < deadline, f"report not done: {r.json()['progress']}"
        await asyncio.sleep(0.1)


async def test_report_over_real_conversations_as_json_markdown_and_pdf(private_api: Api):
    api = private_api
    owner = api.auth("rhea", ADMIN)
    receiver = Receiver(fail_first=0)
    try:
        pid = (await api.client.post("/api/projects", json={"title": "Field interviews"}, headers=owner)).json()["id"]
        r = await api.client.post(f"/api/projects/{pid}/webhooks", headers=owner, json={
            "url": receiver.url + "/", "secret": SECRET, "events": ["report.generated"]})
        assert r.status_code == 201, r.text
        ids = {}
        for n, name in enumerate(SPEECH):
            extra = " I will send the notes to [EMAIL] by Friday." if n == 0 else ""
            ids[name] = await stored_conversation(api, pid, name, "rhea", ["interview"] if n < 5 else ["misc"], extra)
        # one conversation already has its summary: the report keeps it
        kept = {"summary": "A kept summary about the design of a remote control.", "topics": ["remote control"],
                "action_items": [], "key_points": [], "model_used": "extractive", "created_at": "2024-01-01T00:00:00Z"}
        await api.svc.store.update_transcript(ids["Remote control design meeting"], summary=kept)

        r = await api.client.post(f"/api/projects/{pid}/reports", json={"title": "Interview findings"}, headers=owner)
        assert r.status_code == 202, r.text
        started = r.json()
        assert started["status"] == "summarizing" and started["progress"]["total"] == len(SPEECH)
        assert r.headers["location"] == started["links"]["self"] == f"/api/projects/{pid}/reports/{started['id']}"
        report = await until_done(api, started["links"]["self"], owner)
        assert report["status"] == "completed", report
        assert report["progress"] == {"phase": None, "done": 6, "total": 6,
                                      "summaries": {"reused": 1, "summarized": 5}}
        again = await api.svc.store.get_transcript(ids["Remote control design meeting"])
        assert again["summary"] == kept, "an existing summary is reused, not rewritten"

        result = report["result"]
        assert result["title"] == "Interview findings" and result["overview"]["conversation_count"] == 6
        assert result["overview"]["summary"] and result["overview"]["model_used"] == "extractive"
        assert result["topics"] and all(t["conversations"] >= 1 and t["mentions"] >= t["conversations"]
                                        for t in result["topics"])
        assert max(t["conversations"] for t in result["topics"]) >= 2, "a topic shared across conversations"
        assert result["key_points"] and result["action_items"]
        quotes = result["quotes"]
        assert len({q["conversation_id"] for q in quotes}) >= 5, "quotes from most conversations"
        for q in quotes:
            segments = (await api.client.get(f"/v1/transcripts/{q['conversation_id']}", headers=owner)).json()
            spoken = next(s for s in segments["segments"] if q["text"] in " ".join(s["text"].split()))
            assert spoken["start"] - 0.05 <= q["start"] <= spoken["end"], (q, spoken)
            assert q["url"] == f"/api/conversations/{q['conversation_id']}/transcript#t={q['start']:.1f}"
        assert {c["id"] for c in result["conversations"]} == set(ids.values())

        md = await api.client.get(started["links"]["markdown"], headers=owner)
        assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
        for text in ("# Interview findings", "## Overview", "## Topics", "## Key points", "## Action items",
                     "## Notable quotes", "## Conversations", "[EMAIL]", quotes[0]["text"], quotes[0]["url"],
                     "Entretien café – Привет 東京", "A kept summary about the design of a remote control."):
            assert text in md.text, text

        pdf = await api.client.get(started["links"]["pdf"], headers=owner)
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        reader = pypdf.PdfReader(io.BytesIO(pdf.content))
        assert reader.metadata.title == "Interview findings"
        text = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
        for part in ("Interview findings", "Overview", "Topics", "Key points", "Action items", "Notable quotes",
                     "Conversations", UNICODE_NAME_IN_PDF, "[EMAIL]"):
            assert part in text, part
        for q in quotes:
            assert " ".join(q["text"].split()[:6]) in text
            name = reports.pdf_text(q["conversation_name"])
            assert f"{name} at {q['time']} (conversation {q['conversation_id']}, {q['start']:.1f} s)" in text

        # report.generated: delivered once, with the report's links
        async def delivered():
            return receiver.accepted()

        deadline = time.monotonic() + 30
        while not await delivered():
            assert time.monotonic() < deadline, "no report.generated delivery"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        hits = receiver.accepted()
        assert len(hits) == 1 and len(receiver.hits) == 1 and hits[0].signed
        event = hits[0].event
        assert event["type"] == "report.generated" and event["project_id"] == pid
        assert event["data"]["report_id"] == started["id"] and event["data"]["pdf_url"] == started["links"]["pdf"]
        assert event["data"]["conversation_count"] == 6

        listed = (await api.client.get(f"/api/projects/{pid}/reports", headers=owner)).json()
        assert listed["total"] == 1 and listed["items"][0]["id"] == started["id"] and "result" not in listed["items"][0]

        # a tag narrows the report: the five interviews
        r = await api.client.post(f"/api/projects/{pid}/reports", json={"tags": ["INTERVIEW"]}, headers=owner)
        assert r.status_code == 202 and r.json()["progress"]["total"] == 5 and r.json()["title"] == \
            "Field interviews report"
        tagged = await until_done(api, r.json()["links"]["self"], owner)
        assert tagged["progress"]["summaries"] == {"reused": 5}, "phase one found every summary already written"
        assert ids["Entretien café – Привет 東京"] not in {c["id"] for c in tagged["result"]["conversations"]}
    finally:
        receiver.close()


async def test_report_scopes_visibility_and_bounds(private_api: Api):
    api = private_api
    owner = api.auth("sam", ADMIN)
    pid = (await api.client.post("/api/projects", json={"title": "Bounds"}, headers=owner)).json()["id"]
    other_pid = (await api.client.post("/api/projects", json={"title": "Other"}, headers=owner)).json()["id"]
    await stored_conversation(api, pid, "Phone call", "sam", ["call"])
    base = f"/api/projects/{pid}/reports"

    # who may do what
    assert (await api.client.post(base, json={}, headers=api.auth("sam", ["transcripts:read", "export"]))
            ).status_code == 403, "a read-only token cannot start a report"
    assert (await api.client.get(base, headers=api.auth("sam", ["transcripts:read"]))).status_code == 403
    assert (await api.client.get(base)).status_code == 401
    mallory = api.auth("mallory", ADMIN)
    assert (await api.client.post(base, json={}, headers=mallory)).status_code == 404
    assert (await api.client.get(base, headers=mallory)).status_code == 404

    # bad filters and bodies: clear 4xx
    for bad in ({"tags": ["x"] * 21}, {"tags": ["x" * 101]}, {"tags": [""]}, {"since": "not a date"},
                {"since": "2024-02-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, {"title": "t" * 301},
                {"tags": "call"}, {"limit": 5}):
        r = await api.client.post(base, json=bad, headers=owner)
        assert r.status_code == 422 and r.json()["error"]["code"] == "VALIDATION_ERROR", (bad, r.text)
    r = await api.client.post(base, json={"tags": ["nothing-has-this"]}, headers=owner)
    assert r.status_code == 422 and r.json()["error"]["code"] == "NO_CONVERSATIONS"
    r = await api.client.post(base, json={"until": "2000-01-01T00:00:00"}, headers=owner)
    assert r.status_code == 422 and r.json()["error"]["code"] == "NO_CONVERSATIONS"
    try:
        await reports.select_conversations(api.svc.store, pid, tags=[], since=None, until=None, limit=0)
        raise AssertionError("a selection past the bound is refused")
    except reports.SelectionError as exc:
        assert exc.code == "REPORT_TOO_LARGE"

    # reports being made at once, per project; a report not yet made cannot be downloaded
    store = api.svc.store
    waiting = [await store.create_report(project_id=pid, owner="sam", title=f"w{i}", filters={},
                                         conversation_ids=["nope"]) for i in range(reports.MAX_UNFINISHED)]
    r = await api.client.post(base, json={}, headers=owner)
    assert r.status_code == 429 and r.json()["error"]["code"] == "REPORTS_BUSY"
    rid = waiting[0]["id"]
    for suffix in (".md", ".pdf"):
        r = await api.client.get(f"{base}/{rid}{suffix}", headers=owner)
        assert r.status_code == 409 and r.json()["error"]["code"] == "REPORT_NOT_READY"
        assert (await api.client.get(f"{base}/{rid}{suffix}", headers=mallory)).status_code == 404
    assert (await api.client.get(f"{base}/{rid}", headers=mallory)).status_code == 404
    assert (await api.client.get(f"/api/projects/{other_pid}/reports/{rid}", headers=owner)).status_code == 404
    assert (await api.client.get(f"{base}/unknown", headers=owner)).json()["error"]["code"] == "REPORT_NOT_FOUND"
    assert (await api.client.get(base, params={"size": 201}, headers=owner)).status_code == 422
    page = (await api.client.get(base, params={"size": 2}, headers=owner)).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    assert (await api.client.delete(f"{base}/{rid}", headers=api.auth("sam", ["export"]))).status_code == 403
    assert (await api.client.delete(f"{base}/{rid}", headers=mallory)).status_code == 404
    for row in waiting:
        assert (await api.client.delete(f"{base}/{row['id']}", headers=owner)).status_code == 204
    assert (await api.client.get(f"{base}/{rid}", headers=owner)).status_code == 404


def _ctx(api: Api, task: str, args: dict[str, Any]) -> JobContext:
    return JobContext(api.svc, Claimed(id=f"manual-{time.monotonic_ns()}", task=task, args=args, attempts=1))


async def test_fan_out_is_idempotent_and_resumes(public_api: Api):
    """A node that died mid fan-out (here: jobs run by hand, some twice, one cut after its summary was stored)
    leaves a report that the runner finishes, with no summary written twice."""
    api = public_api
    store = api.svc.store
    pid = (await api.client.post("/api/projects", json={"title": "Resume"})).json()["id"]
    cids = [await stored_conversation(api, pid, name, None, []) for name in ("On printing", "Acoustic corpus",
                                                                             "Phone call")]
    row = await store.create_report(project_id=pid, owner=None, title="Resumed", filters={}, conversation_ids=cids)
    rid = row["id"]
    first = _ctx(api, reports.REPORT_SUMMARIZE, {"report_id": rid, "conversation_id": cids[0]})
    await reports.summarize_conversation(first)
    written = (await store.get_transcript(cids[0]))["summary"]
    await reports.summarize_conversation(_ctx(api, reports.REPORT_SUMMARIZE, first.args))  # a retry
    assert (await store.get_transcript(cids[0]))["summary"] == written, "a retry does not summarize again"
    assert (await store.get_report(rid))["progress"] == {cids[0]: "summarized"}
    # the second conversation's job died after storing its summary, before noting it
    assert await summaries.summarize_transcript(api.svc, cids[1]) is not None
    # the node comes back: every job of the report runs (again)
    await api.svc.jobs.stage([reports.jobs.summarize_job(rid, cid) for cid in cids])
    deadline = time.monotonic() + 30
    while (done := await store.get_report(rid))["status"] != "completed":
        assert done["status"] != "failed" and time.monotonic() < deadline, done
        await asyncio.sleep(0.05)
    assert done["progress"] == {cids[0]: "summarized", cids[1]: "reused", cids[2]: "summarized"}
    assert (await store.get_transcript(cids[0]))["summary"] == written
    assert len(done["result"]["conversations"]) == 3 and done["result"]["quotes"]
    r = await api.client.get(f"/api/projects/{pid}/reports/{rid}.pdf")
    assert r.status_code == 200 and r.content.startswith(b"%PDF-")
