"""HTTP surface of the spine: health, headers, transcripts CRUD shapes, the published schema, settings."""

from __future__ import annotations

import subprocess
import sys

import httpx

from tests.conftest import REPO


def test_health_and_request_headers(server):
    r = httpx.get(server.url + "/health", headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and isinstance(body["timestamp"], float)
    assert r.headers["x-request-id"] == "abc-123"
    assert float(r.headers["x-process-time-ms"]) >= 0
    r = httpx.get(server.url + "/v1/transcripts/does-not-exist")
    assert r.status_code == 404 and len(r.headers["x-request-id"]) == 32
    assert r.json()["error"]["code"] == "TRANSCRIPT_NOT_FOUND"


def test_web_client_is_served(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and "data-testid" in r.text
    assert httpx.get(server.url + "/static/app.js").status_code == 200


def test_transcripts_create_get_list(server):
    created = httpx.post(server.url + "/v1/transcripts/", json={"name": "standup", "source_language": "en"})
    assert created.status_code == 201
    t = created.json()
    assert {"id", "name", "status", "created_at", "updated_at", "duration"} <= set(t)
    assert t["status"] == "created" and t["name"] == "standup"
    got = httpx.get(f"{server.url}/v1/transcripts/{t['id']}").json()
    assert got["segments"] == [] and got["id"] == t["id"]
    httpx.post(server.url + "/v1/transcripts/", json={})
    listing = httpx.get(server.url + "/v1/transcripts/", params={"size": 2}).json()
    assert set(listing) == {"items", "total", "page", "size"}
    assert listing["size"] == 2 and len(listing["items"]) == 2 and listing["total"] >= 2
    stamps = [i["created_at"] for i in listing["items"]]
    assert stamps == sorted(stamps, reverse=True), "newest first"
    bad = httpx.post(server.url + "/v1/transcripts/", content=b"{oops", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_JSON"
    bad = httpx.post(server.url + "/v1/transcripts/", json={"name": 5})
    assert bad.status_code == 422 and "name" in bad.json()["error"]["message"]


def test_protocol_schema_is_published(server):
    schema = httpx.get(server.url + "/v1/protocol.json").json()
    names = set(schema["$defs"])
    for t in ("Transcription", "Diarization", "Status", "Summary", "Error", "Ping", "Word", "StartParams"):
        assert t in names
    assert schema["$defs"]["Status"]["properties"]["status"]["enum"] == [
        "initializing", "processing", "paused", "completed", "failed"]


def test_wrong_setting_fails_at_start_with_one_line():
    for args, env, name in ((["--device", "gpu"], {}, "VOXLANE_DEVICE"),
                            ([], {"VOXLANE_PORT": "http"}, "VOXLANE_PORT"),
                            (["--model", "./no/such/model"], {}, "VOXLANE_MODEL")):
        proc = subprocess.run([sys.executable, "-m", "server.cli", "serve", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=60, env={"PATH": "/usr/bin:/bin", **env})
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and (name in lines[0] or "--device" in lines[0]), proc.stderr
