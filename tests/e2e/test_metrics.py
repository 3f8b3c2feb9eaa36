"""``/metrics`` and JSON logs of real server processes, after real traffic (speech over a WebSocket, HTTP errors,
a bad control message)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import jwt
import pytest
import websockets
from conftest import free_port, start_server, stop_server
from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.cli.live_client import create_transcript, load_pcm16k, stream_audio, ws_url
from server.settings import Settings
from tests.http_support import TLS

SECRET = "metrics-tests-secret-0123456789abcdef"


def samples(text: str) -> dict[str, list]:
    """Every sample by its name (labels kept), from a scrape."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(found: dict[str, list], name: str, **labels: str) -> float:
    matches = [s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert matches, f"no {name} {labels} in {sorted(found)}"
    return sum(matches)


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    srv = start_server(tmp_path_factory.mktemp("metrics"), VOXLANE_LOG_FORMAT="json", VOXLANE_METRICS_PORT=str(port),
                       VOXLANE_ASR_BACKEND="synthetic")  # what is counted, not what is said
    srv.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
    yield srv
    stop_server(srv)


async def test_scrape_after_traffic(json_server, audio_dir):
    srv = json_server
    speech = load_pcm16k(audio_dir / "single/librispeech_61-70968-0000.wav")
    async with httpx.AsyncClient(verify=TLS, base_url=srv.url, timeout=30) as http:
        assert (await http.get("/health")).status_code == 200
        missing = await http.get("/v1/transcripts/no-such-transcript")
        assert missing.status_code == 404
        assert (await http.get("/metrics")).status_code == 404  # it has a port of its own here
        tid = await create_transcript(srv.url, "metrics")
        async with websockets.connect(ws_url(srv.url, tid)) as ws:  # a listener, and a bad control message
            await ws.send("{not json")
            await stream_audio(srv.url, speech, transcript_id=tid, speed=2.0)
            while json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] != "error":
                pass
            during = samples((await http.get(srv.metrics_url)).text)  # type: ignore[attr-defined]
        found = samples((await http.get(srv.metrics_url)).text)  # type: ignore[attr-defined]
    assert value(during, "voxlane_subscribers") >= 1

    for gauge in ("voxlane_live_streams", "voxlane_live_transcripts", "voxlane_live_lag_seconds_max",
                  "voxlane_inference_queue_depth", "voxlane_work_queue_depth", "voxlane_webrtc_connections",
                  "voxlane_uploads_in_flight"):
        assert gauge in found, gauge
    assert value(found, "voxlane_inference_batch_size_count") > 0
    assert value(found, "voxlane_inference_decode_seconds_count", kind="urgent") > 0  # the stream's finals
    assert value(found, "voxlane_inference_decode_seconds_bucket", le="+Inf") > 0
    assert value(found, "voxlane_inference_requests_total") > 0
    assert value(found, "voxlane_admissions_refused_total", reason="capacity") == 0
    assert value(found, "voxlane_errors_total", transport="live", code="INVALID_JSON") >= 1
    assert value(found, "voxlane_errors_total", transport="http", code="TRANSCRIPT_NOT_FOUND") == 1
    assert value(found, "voxlane_http_requests_total", method="GET", route="/health", status="200") >= 1
    assert value(found, "voxlane_http_requests_total", route="/v1/transcripts/{transcript_id}", status="404") == 1
    assert value(found, "voxlane_http_request_duration_seconds_count", route="/health") >= 1
    routes = {s.labels["route"] for s in found["voxlane_http_requests_total"]}
    assert not any("no-such-transcript" in r for r in routes), routes  # templates, never raw paths


def test_json_log_lines_carry_the_request_id(json_server):
    srv = json_server
    assert httpx.get(srv.url + "/v1/transcripts/", headers={"X-Request-ID": "trace-me-42"}).status_code == 200
    lines = [json.loads(line) for line in srv.log().splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    mine = [line for line in lines if line.get("request_id") == "trace-me-42"]
    assert mine and any("/v1/transcripts/" in line["message"] for line in mine), lines[-5:]


def test_private_metrics_need_the_admin_scope(tmp_path):
    srv = start_server(tmp_path, VOXLANE_AUTH_MODE="private", VOXLANE_JWT_SECRET=SECRET,
                       VOXLANE_ASR_BACKEND="synthetic", VOXLANE_DIARIZATION="off")  # who may read, not what is said
    try:
        def get(scope: str | None) -> httpx.Response:
            claims = {"sub": "ops", "exp": time.time() + 600} | ({"scope": scope} if scope else {})
            headers = {"Authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}
            return httpx.get(srv.url + "/metrics", headers=headers if scope is not None else {})

        assert get(None).status_code == 401
        denied = get("transcripts:read transcripts:write")
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "INSUFFICIENT_SCOPE"
        ok = get("projects:admin")
        assert ok.status_code == 200 and "voxlane_live_streams" in ok.text
    finally:
        stop_server(srv)


def test_each_app_has_its_own_registry():
    """Two apps in one process: no clash over metric names, and one's traffic is not the other's."""
    first, second = create_app(Settings()), create_app(Settings())
    first.state.metrics.http_requests.labels("GET", "/health", "200").inc()
    assert re.search(r'voxlane_http_requests_total\{.*\} 1\.0', first.state.metrics.render().body.decode())
    assert "voxlane_http_requests_total{" not in second.state.metrics.render().body.decode()
