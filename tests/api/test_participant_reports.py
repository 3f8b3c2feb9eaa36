"""The participant report endpoints: a kiosk participant's own report, and the signed unsubscribe link."""

from __future__ import annotations

import asyncio
import io
import time
from urllib.parse import parse_qs, urlsplit

from pypdf import PdfReader

from bench.metrics import wer_counts
from tests.api.test_rest_kiosk import initiate, make_project, put
from tests.rest_support import AUDIO, Api, creds, read_wav, reference, upload_url, wav_bytes

pytest_plugins = ("tests.rest_fixtures",)

P = "/api/participant"
SPEECH = "single/librispeech_61-70968-0000.wav"


async def recorded_conversation(api: Api, pid: str) -> str:
    """A kiosk conversation of one real chunk, finished."""
    cid = await initiate(api, pid)
    samples, rate = read_wav(AUDIO / SPEECH)
    url = await upload_url(api, cid)
    await put(api, url["url"], wav_bytes(samples, rate))
    r = await api.client.post(f"{P}/conversations/{cid}/confirm-upload", json={"key": url["key"]})
    assert r.status_code == 202, r.text
    assert (await api.client.post(f"{P}/conversations/{cid}/finish")).status_code == 200
    return cid


async def ready_report(api: Api, path: str, within: float = 60.0) -> dict:
    deadline = time.monotonic() + within
    while True:
        r = await api.client.get(path)
        assert r.status_code == 200, r.text
        if r.json()["status"] != "pending":
            return r.json()
        assert time.monotonic() < deadline, "the report stayed pending"
        await asyncio.sleep(0.2)


async def test_a_participant_reads_their_report_and_unsubscribes(public_api: Api):
    api = public_api
    project = await make_project(api, participant_report=True)
    pid = project["id"]
    assert project["portal"]["participant_report"] is True
    cid = await recorded_conversation(api, pid)
    path = f"{P}/projects/{pid}/conversations/{cid}/report"
    report = await ready_report(api, path)
    assert report["status"] == "ready" and report["conversation_id"] == cid and report["project_id"] == pid
    errors, n = wer_counts(reference(SPEECH), " ".join(s["text"] for s in report["transcript"]))
    assert errors / n < 0.25
    assert report["summary"]["summary"]
    [pdf] = report["artifacts"]
    assert pdf["type"] == "pdf" and urlsplit(pdf["url"]).path == path + ".pdf"
    assert report["notifications"]["subscribed"] is True
    r = await api.client.get(urlsplit(pdf["url"]).path)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(r.content)).pages)
    assert "Summary" in text and "Transcript" in text and report["transcript"][0]["text"][:20] in text

    # the unsubscribe link: signed for this conversation only, idempotent, shown in the report
    link = urlsplit(report["notifications"]["unsubscribe_url"])
    assert link.path == f"{P}/conversations/{cid}/unsubscribe"
    signature = parse_qs(link.query)["signature"][0]
    wrong_digit = "1" if signature.endswith("0") else "0"  # a changed digit: "0" alone keeps 1 signature in 16
    forged = await api.client.post(link.path, params={"signature": signature[:-1] + wrong_digit})
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "BAD_SIGNATURE"
    other = await initiate(api, pid)
    moved = await api.client.post(f"{P}/conversations/{other}/unsubscribe", params={"signature": signature})
    assert moved.status_code == 403, "a link unsubscribes its own conversation only"
    for _ in range(2):
        r = await api.client.post(link.path + "?" + link.query)
        assert r.status_code == 200 and r.json() == {"conversation_id": cid, "subscribed": False}
    assert (await api.client.get(path)).json()["notifications"]["subscribed"] is False
    assert (await api.client.get(link.path + "?" + link.query)).status_code == 405, "a GET changes nothing"

    # the project id stays the capability: another project's id, or none, finds nothing
    elsewhere = (await make_project(api, participant_report=True))["id"]
    for bad in (f"{P}/projects/{elsewhere}/conversations/{cid}/report", f"{P}/projects/{pid}/conversations/x/report",
                f"{P}/projects/nope/conversations/{cid}/report"):
        r = await api.client.get(bad)
        assert r.status_code == 404 and r.json()["error"]["code"] == "CONVERSATION_NOT_FOUND", bad


async def test_a_project_without_participant_reports_offers_none(api: Api):
    pid = (await make_project(api))["id"]
    cid = await initiate(api, pid)
    r = await api.client.get(f"{P}/projects/{pid}/conversations/{cid}/report")
    assert r.status_code == 404 and r.json()["error"]["code"] == "REPORT_NOT_ENABLED"
    # turned on by the project's admin, the report is there (pending: nothing was recorded yet)
    r = await api.client.patch(f"/api/projects/{pid}", json={"portal": {"participant_report": True}},
                               headers=creds(api, "admin", ["projects:admin"]))
    assert r.status_code == 200, r.text
    report = (await api.client.get(f"{P}/projects/{pid}/conversations/{cid}/report")).json()
    assert report["status"] == "pending" and report["artifacts"] == [] and report["transcript"] == []
    r = await api.client.get(f"{P}/projects/{pid}/conversations/{cid}/report.pdf")
    assert r.status_code == 409 and r.json()["error"]["code"] == "REPORT_NOT_READY"
