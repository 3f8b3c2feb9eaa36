"""Webhooks: endpoints per project, signed deliveries to a real HTTP receiver on loopback, retries with
backoff, the delivery log, and exactly one successful delivery per event, also across a kill -9 and restart."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx

from server.cli.live_client import load_pcm16k, stream_audio
from server.features.webhooks import emit_event, emit_project_event
from server.settings import Settings
from tests.conftest import start_server, stop_server
from tests.db_support import fetch_rows
from tests.http_support import TLS
from tests.rest_support import AUDIO, JWT_SECRET, LOOPBACK_RECEIVERS, Api, read_wav, wav_bytes
from tests.webhook_support import BODY_OF_A_REFUSAL, SECRET, Receiver

pytest_plugins = ("tests.rest_fixtures",)

SPEECH = "single/librispeech_61-70968-0000.wav"  # 5.3 s
EVENTS = ("conversation.transcribed", "conversation.summarized", "report.generated")
P = "/api/participant"


async def until(check, within: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def deliveries(client: httpx.AsyncClient, pid: str, wid: str, headers: dict | None = None) -> list[dict]:
    r = await client.get(f"/api/projects/{pid}/webhooks/{wid}/deliveries", params={"size": 200},
                         headers=headers or {})
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def all_settled(client: httpx.AsyncClient, pid: str, wid: str, at_least: int) -> list[dict] | None:
    rows = await deliveries(client, pid, wid)
    return rows if len(rows) >= at_least and all(d["status"] != "pending" for d in rows) else None


def check_exactly_once(receiver: Receiver, rows: list[dict], path: str = "/") -> None:
    """Every delivery in the log was accepted exactly once by the receiver, after two refusals."""
    accepted = Counter(h.event_id for h in receiver.accepted(path))
    assert all(n == 1 for n in accepted.values()), accepted
    for d in rows:
        assert d["status"] == "delivered" and d["response_status"] == 200 and d["last_error"] is None, d
        assert d["attempts"] == receiver.fail_first + 1 and d["next_attempt_at"] is None, d
        assert accepted[d["event_id"]] == 1 and d["payload"]["id"] == d["event_id"]
        hits = receiver.of(d["event_id"], path)
        assert [h.status for h in hits] == [500] * receiver.fail_first + [200]
        assert all(h.signed for h in hits), "every attempt is signed with the endpoint's secret"
        assert all(h.headers["X-Voxlane-Event-Id"] == d["event_id"] and h.headers["X-Voxlane-Event"] == d["event"]
                   for h in hits)
        assert len({h.headers["X-Voxlane-Delivery"] for h in hits}) == 1


# ------------------------------------------------------------ endpoints, scopes, the log, idempotent events


async def test_webhook_endpoints_scopes_and_idempotent_events(private_api: Api):
    api = private_api
    admin = api.auth("admin", ["projects:admin"])
    receiver = Receiver(fail_first=0)
    try:
        pid = (await api.client.post("/api/projects", json={"title": "hooks"}, headers=admin)).json()["id"]
        base = f"/api/projects/{pid}/webhooks"
        r = await api.client.post(base, json={"url": receiver.url}, headers=api.auth("admin", ["transcripts:write"]))
        assert r.status_code == 403 and r.json()["error"]["code"] == "INSUFFICIENT_SCOPE"
        assert (await api.client.get(base)).status_code == 401
        for bad in ({"url": "ftp://example.org/x"}, {"url": receiver.url, "events": ["conversation.deleted"]},
                    {"url": receiver.url, "events": []}, {"url": receiver.url, "secret": "short"}):
            r = await api.client.post(base, json=bad, headers=admin)
            assert r.status_code == 422 and r.json()["error"]["code"] == "VALIDATION_ERROR", (bad, r.text)
        r = await api.client.post(base, json={"url": receiver.url, "events": ["conversation.summarized"],
                                              "description": "crm"}, headers=admin)
        assert r.status_code == 201, r.text
        hook = r.json()
        assert hook["secret"].startswith("whsec_") and hook["events"] == ["conversation.summarized"]
        wid = hook["id"]
        listed = (await api.client.get(base, headers=admin)).json()["items"]
        assert [h["id"] for h in listed] == [wid] and "secret" not in listed[0], "the secret is shown once"
        assert (await api.client.get(f"{base}/{wid}", headers=admin)).json()["url"] == receiver.url
        # another admin sees neither the project nor its endpoints
        eve = api.auth("eve", ["projects:admin"])
        assert (await api.client.get(base, headers=eve)).status_code == 404
        assert (await api.client.get(f"{base}/{wid}/deliveries", headers=eve)).status_code == 404
        assert (await deliveries(api.client, pid, wid, admin)) == []

        # the same event emitted twice with one key is stored, and delivered, once per endpoint
        receiver.secret = hook["secret"].encode()
        cid = (await api.client.post(P + "/conversations/initiate", json={"project_id": pid})).json()["id"]
        first = await emit_event(api.svc, cid, "conversation.summarized", {"summary": "Hello."}, key="v1")
        again = await emit_event(api.svc, cid, "conversation.summarized", {"summary": "Hello."}, key="v1")
        assert len(first) == 1 and again == []
        # events nobody subscribed to, and transcripts outside any project, fire nothing
        assert await emit_event(api.svc, cid, "conversation.transcribed", {}) == []
        loose = (await api.client.post("/v1/transcripts/", json={}, headers=api.auth("admin"))).json()["id"]
        assert await emit_event(api.svc, loose, "conversation.summarized", {"summary": "x"}) == []
        r = await api.client.post(f"{base}/{wid}/test", json={"event": "conversation.summarized"}, headers=admin)
        assert r.status_code == 202 and r.json()["status"] == "pending" and r.json()["payload"]["test"] is True

        async def settled():
            rows = await deliveries(api.client, pid, wid, admin)
            return rows if len(rows) == 2 and all(d["status"] == "delivered" for d in rows) else None

        rows = await until(settled, 30, "two deliveries")
        assert [d["attempts"] for d in rows] == [1, 1] and rows[1]["event_id"] == first[0]["event_id"]
        event = next(h.event for h in receiver.hits if h.event_id == first[0]["event_id"])
        assert event["type"] == "conversation.summarized" and event["project_id"] == pid
        assert event["data"] == {"conversation_id": cid, "project_id": pid, "summary": "Hello."}
        assert len(receiver.hits) == 2 and all(h.signed for h in receiver.hits)
        r = await api.client.get(f"{base}/{wid}/deliveries", params={"status": "failed"}, headers=admin)
        assert r.json()["total"] == 0
        assert (await api.client.get(f"{base}/{wid}/deliveries", params={"status": "x"}, headers=admin)
                ).status_code == 422

        assert (await api.client.delete(f"{base}/{wid}", headers=admin)).status_code == 204
        assert (await api.client.get(f"{base}/{wid}", headers=admin)).json()["error"]["code"] == "WEBHOOK_NOT_FOUND"
        assert await emit_event(api.svc, cid, "conversation.summarized", {"summary": "later"}) == []
    finally:
        receiver.close()


# ------------------------------------------------------------ retries: two refusals, then exactly one success


async def test_each_event_delivered_exactly_once_despite_failures(tmp_path, database_url):
    settings = Settings(data_dir=str(tmp_path / "data"), database_url=database_url, cpu_threads=2,
                        auth_mode="public", jwt_secret=JWT_SECRET, status_interval=0, ping_interval=0,
                        webhook_retry_base=0.2, asr_backend="synthetic",  # what is delivered, not what is said
                        outbound_allowlist=LOOPBACK_RECEIVERS)
    from tests.rest_fixtures import running_app  # here: the module is this file's pytest plugin too

    receiver = Receiver()
    try:
        async with running_app(settings, private=False) as api:
            c = api.client
            pid = (await c.post("/api/projects", json={"title": "retries"})).json()["id"]
            base = f"/api/projects/{pid}/webhooks"
            wid = (await c.post(base, json={"url": receiver.url + "/", "secret": SECRET})).json()["id"]
            only_reports = (await c.post(base, json={"url": receiver.url + "/reports", "secret": SECRET,
                                                     "events": ["report.generated"]})).json()["id"]
            # a live stream into a kiosk conversation: stopping it completes the transcript
            cid = (await c.post(P + "/conversations/initiate", json={"project_id": pid})).json()["id"]
            rec = await stream_audio(await api.serve(), load_pcm16k(AUDIO / SPEECH), transcript_id=cid, speed=4.0)
            assert rec.completed is not None and rec.finals
            # what the summaries and reports code calls
            await emit_event(api.svc, cid, "conversation.summarized", {"summary": "A complaint."}, key="s1")
            await emit_project_event(api.svc, pid, "report.generated", {"report_id": "r1"}, key="r1")

            rows = await until(lambda: all_settled(c, pid, wid, 3), 60, "three delivered events")
            reports = await until(lambda: all_settled(c, pid, only_reports, 1), 30, "the report event")
        assert {d["event"] for d in rows} == set(EVENTS)
        check_exactly_once(receiver, rows)
        check_exactly_once(receiver, reports, "/reports")
        assert [d["event"] for d in reports] == ["report.generated"], "an endpoint gets only what it subscribed to"
        transcribed = next(d for d in rows if d["event"] == "conversation.transcribed")
        data = transcribed["payload"]["data"]
        assert data["conversation_id"] == cid and data["project_id"] == pid and data["status"] == "completed"
        assert data["segment_count"] == len(rec.finals) and data["word_count"] > 5 and data["duration"] > 5
        # backoff: 0.2 s before the second attempt, twice that before the third (a busy machine only adds to each
        # wait, so their order says nothing more: 0.51 s then 0.46 s on a loaded one)
        hits = receiver.of(transcribed["event_id"])
        gaps = [b.at - a.at for a, b in zip(hits, hits[1:], strict=False)]
        assert gaps[0] >= 0.18 and gaps[1] >= 0.38, gaps
        await asyncio.sleep(0.5)
        assert len(receiver.accepted()) == len(rows), "nothing more arrives"
    finally:
        receiver.close()


# ------------------------------------------------------------ kill -9 between attempts, then a restart


async def test_deliveries_survive_a_kill_and_restart(tmp_path, database_url):
    receiver = Receiver()
    # what is delivered, not what is said: the synthetic backend transcribes the chunk (tests/fake_backend.py)
    env = {"VOXLANE_REST_WORKERS": "1", "VOXLANE_CPU_THREADS": "2", "VOXLANE_OUTBOUND_ALLOWLIST": LOOPBACK_RECEIVERS,
           "VOXLANE_DATABASE_URL": database_url, "VOXLANE_ASR_BACKEND": "synthetic", "VOXLANE_DIARIZATION": "off"}
    srv = start_server(tmp_path, VOXLANE_WEBHOOK_RETRY_BASE="4", **env)
    try:
        async with httpx.AsyncClient(verify=TLS, base_url=srv.url, timeout=60) as c:
            pid = (await c.post("/api/projects", json={"title": "durable"})).json()["id"]
            base = f"/api/projects/{pid}/webhooks"
            wid = (await c.post(base, json={"url": receiver.url + "/", "secret": SECRET})).json()["id"]
            # a kiosk conversation: one chunk, confirmed, finished -> merged -> conversation.transcribed
            cid = (await c.post(P + "/conversations/initiate", json={"project_id": pid})).json()["id"]
            url = (await c.post(f"{P}/conversations/{cid}/get-upload-url", json={})).json()
            parts = urlsplit(url["url"])
            samples, rate = read_wav(AUDIO / SPEECH)
            r = await c.put(parts.path + "?" + parts.query, content=wav_bytes(samples, rate),
                            headers={"Content-Type": "audio/wav"})
            assert r.status_code == 200, r.text
            r = await c.post(f"{P}/conversations/{cid}/confirm-upload", json={"key": url["key"]})
            assert r.status_code == 202, r.text
            await c.post(f"{P}/conversations/{cid}/finish")

            async def transcribed():
                rows = await deliveries(c, pid, wid)
                return [d for d in rows if d["event"] == "conversation.transcribed"]

            ours = [(await until(transcribed, 60, "conversation.transcribed"))[0]["id"]]
            for event in ("conversation.summarized", "report.generated"):  # the other kinds, as test events
                r = await c.post(f"{base}/{wid}/test", json={"event": event})
                assert r.status_code == 202
                ours.append(r.json()["id"])

            async def first_attempts_failed():
                rows = {d["id"]: d for d in await deliveries(c, pid, wid)}
                return all(rows[i]["attempts"] == 1 and rows[i]["last_error"] for i in ours)

            await until(first_attempts_failed, 30, "the first failed attempts")
    finally:
        srv.process.kill()  # SIGKILL: no shutdown code runs
        srv.process.wait()
    states = await fetch_rows(database_url, "SELECT status, attempts, last_error, event_id FROM webhook_deliveries"
                              " WHERE id IN (:a, :b, :c)", a=ours[0], b=ours[1], c=ours[2])
    assert len(states) == 3 and all(s[0] == "pending" and s[1] == 1 and "HTTP 500" in s[2] for s in states), states
    assert all(len(receiver.of(s[3])) == 1 for s in states), "killed after the first attempt, before the second"

    srv = start_server(tmp_path, VOXLANE_WEBHOOK_RETRY_BASE="0.2", **env)
    try:
        async with httpx.AsyncClient(verify=TLS, base_url=srv.url, timeout=60) as c:
            await until(lambda: all_settled(c, pid, wid, 3), 60, "every delivery settled after the restart")
            await asyncio.sleep(0.6)
            rows = await deliveries(c, pid, wid)
    finally:
        stop_server(srv)
        receiver.close()
    assert {d["event"] for d in rows} == set(EVENTS)
    check_exactly_once(receiver, rows)
    mine = {d["event"]: d for d in rows if d["id"] in ours}
    assert len(mine) == 3 and all(d["payload"]["data"]["project_id"] == pid for d in mine.values())
    assert mine["conversation.transcribed"]["payload"]["data"]["conversation_id"] == cid


# ------------------------------------------------------------ outbound requests: only where they may go


INTERNAL_RECEIVERS = ("http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:9/", "http://[::1]:9/",
                      "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.0.1/", "http://[fd00::1]/",
                      "http://[fe80::1]/", "http://224.0.0.1/", "http://0.0.0.0/", "http://[::]/",
                      "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/", "http://localhost:9/", "http://0x7f.1/")


async def test_webhook_urls_to_internal_addresses_are_refused(public_api: Api):
    c = public_api.client
    pid = (await c.post("/api/projects", json={"title": "ssrf"})).json()["id"]
    base = f"/api/projects/{pid}/webhooks"
    for url in INTERNAL_RECEIVERS:
        r = await c.post(base, json={"url": url})
        assert r.status_code == 422, (url, r.text)
        error = r.json()["error"]
        assert error["code"] == "URL_NOT_ALLOWED" and error["details"]["reason"] == "internal", (url, error)
        assert "internal address" in error["message"] and "VOXLANE_OUTBOUND_ALLOWLIST" in error["message"]
    r = await c.post(base, json={"url": "http://user:password@hooks.example.com/"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "URL_NOT_ALLOWED"
    r = await c.post(base, json={"url": "https://no-such-receiver.invalid/hook"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "URL_UNRESOLVABLE"
    assert (await c.get(base)).json()["items"] == [], "nothing was registered"


async def test_the_log_keeps_status_codes_redirects_stay_unfollowed_and_each_attempt_is_checked(tmp_path,
                                                                                                database_url):
    settings = Settings(data_dir=str(tmp_path / "data"), database_url=database_url, cpu_threads=2,
                        auth_mode="public", jwt_secret=JWT_SECRET, status_interval=0, ping_interval=0,
                        webhook_retry_base=0.05, webhook_max_attempts=1, asr_backend="synthetic",
                        outbound_allowlist=LOOPBACK_RECEIVERS)
    from tests.rest_fixtures import running_app

    inside = Receiver(fail_first=0)
    refusing = Receiver(status=500)
    redirecting = Receiver(status=302, headers={"Location": inside.url + "/moved"})
    try:
        async with running_app(settings, private=False) as api:
            c = api.client
            pid = (await c.post("/api/projects", json={"title": "outbound"})).json()["id"]
            base = f"/api/projects/{pid}/webhooks"
            ids = {}
            for name, receiver in (("inside", inside), ("refusing", refusing), ("redirecting", redirecting)):
                r = await c.post(base, json={"url": receiver.url + "/", "secret": SECRET})
                assert r.status_code == 201, "the allowlist lets loopback receivers through"
                ids[name] = r.json()["id"]
            await emit_project_event(api.svc, pid, "report.generated", {"report_id": "r1"}, key="r1")
            logs = {n: (await until(lambda w=w: all_settled(c, pid, w, 1), 30, n))[0] for n, w in ids.items()}
            assert logs["inside"]["status"] == "delivered" and logs["inside"]["response_status"] == 200
            assert logs["refusing"]["status"] == "failed" and logs["refusing"]["response_status"] == 500
            assert logs["refusing"]["last_error"] == "HTTP 500", "the status code, not the receiver's body"
            assert logs["redirecting"]["response_status"] == 302 and logs["redirecting"]["status"] == "failed"
            assert "HTTP 302" in logs["redirecting"]["last_error"]
            assert [h.path for h in inside.hits] == ["/"], "the redirect to /moved was not followed"
            for wid in ids.values():
                r = await c.get(f"{base}/{wid}/deliveries")
                assert BODY_OF_A_REFUSAL.decode() not in r.text and "hunter2" not in r.text

            # the operator removes the allowlist: every attempt is checked again, nothing is sent
            api.svc.settings.outbound_allowlist = ""
            before = [len(inside.hits), len(refusing.hits), len(redirecting.hits)]
            r = await c.post(f"{base}/{ids['inside']}/test", json={})
            assert r.status_code == 422 and r.json()["error"]["code"] == "URL_NOT_ALLOWED"
            await emit_project_event(api.svc, pid, "report.generated", {"report_id": "r2"}, key="r2")
            for name, wid in ids.items():
                rows = await until(lambda w=wid: all_settled(c, pid, w, 2), 30, name)
                latest = rows[0]
                assert latest["status"] == "failed" and latest["response_status"] is None, latest
                assert latest["last_error"].startswith("refused: 127.0.0.1 is an internal address"), latest
            await asyncio.sleep(0.2)
            assert [len(inside.hits), len(refusing.hits), len(redirecting.hits)] == before, "no request was sent"
            stored_errors = await fetch_rows(database_url, "SELECT last_error FROM webhook_deliveries")
            assert not any("hunter2" in (e or "") for (e,) in stored_errors), "nor stored"
            # a row an older version wrote, body and all, shows its status only
            await api.svc.store.update_delivery(logs["refusing"]["id"],
                                                last_error="HTTP 500: " + BODY_OF_A_REFUSAL.decode())
            r = await c.get(f"{base}/{ids['refusing']}/deliveries")
            assert "hunter2" not in r.text and r.json()["items"][-1]["last_error"] == "HTTP 500"
    finally:
        for receiver in (inside, refusing, redirecting):
            receiver.close()
