"""Summaries (offline extractive, and through an OpenAI-compatible endpoint), summary jobs, chat.

The LLM path runs against a small HTTP server on 127.0.0.1 that speaks the chat-completions protocol."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bench.metrics import normalize
from server.features.summaries import extractive_summary
from server.settings import Settings
from tests.process_support import KNOWN_CALIBRATION_S
from tests.rest_fixtures import running_app
from tests.rest_support import AUDIO, JWT_SECRET, Api, creds, reference

pytest_plugins = ("tests.rest_fixtures",)

JFK = "single/jfk_inaugural_1961_excerpt.wav"
AMI = "multi/ami_meeting_excerpt_4spk_60s.wav"
MODEL = "fake-llm-1"
KEY = "sk-test-123"


class FakeOpenAI:
    """POST /v1/chat/completions: a JSON summary when asked to summarize, else an answer quoting the question."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if self.path != "/v1/chat/completions" or fake.fail:
                    self._send(500 if fake.fail else 404, {"error": {"message": "nope"}})
                    return
                system = body["messages"][0]["content"]
                if "summarize" in system:
                    transcript = body["messages"][-1]["content"]
                    content = json.dumps({"summary": f"LLM summary of {len(transcript.split())} words.",
                                          "topics": ["country"], "action_items": ["Ask what you can do."],
                                          "key_points": ["Ask not what your country can do for you."]})
                    content = f"```json\n{content}\n```"
                else:
                    question = body["messages"][-1]["content"]
                    content = f"You asked: {question} (transcript has {len(system.split())} words)"
                self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}})

            def _send(self, status: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
async def llm_api(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAI) -> AsyncIterator[Api]:
    tmp = tmp_path_factory.mktemp("llm")
    settings = Settings(data_dir=str(tmp / "data"), cpu_threads=2, auth_mode="public", jwt_secret=JWT_SECRET,
                        status_interval=0, ping_interval=0, llm_url=fake_llm.url, llm_model=MODEL, llm_api_key=KEY,
                        llm_timeout=10, calibration_seconds=KNOWN_CALIBRATION_S)
    async with running_app(settings, private=False) as api:
        yield api


async def upload_and_wait_summary(api: Api, name: str, headers: dict[str, str]) -> tuple[str, list[dict]]:
    r = await api.client.post("/v1/transcripts/", json={"name": "summary me"}, headers=headers)
    tid = r.json()["id"]
    sub = api.svc.hub.subscribe(tid)
    try:
        r = await api.client.post(f"/v1/transcripts_audio/{tid}/upload",
                                  files={"file": ("a.wav", (AUDIO / name).read_bytes(), "audio/wav")}, headers=headers)
        assert r.status_code == 202
        messages = []
        while not messages or messages[-1]["type"] != "summary":
            messages.append(await asyncio.wait_for(sub.queue.get(), 60))
    finally:
        api.svc.hub.unsubscribe(sub)
    return tid, messages


async def poll_job(api: Api, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        r = await api.client.get(f"/api/summary/status/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] != "processing":
            return r.json()
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


def test_extractive_summary_of_real_meeting_text():
    text = reference(AMI)
    result = extractive_summary([text])
    assert result.model_used == "extractive" and result.summary
    flat = " ".join(normalize(text))
    assert all(" ".join(normalize(s)) in flat for s in result.key_points)  # extractive: sentences of the text
    assert "mobile phone" in result.topics
    meeting = ["We need to send the budget to finance by Friday.", "The new design looks good to everyone.",
               "Let's review the remote control prototype tomorrow.", "Action item: Anna writes the minutes.",
               "The weather was nice last week."]
    items = extractive_summary(meeting).action_items
    assert items == [meeting[0], meeting[2], meeting[3]]


async def test_offline_summary_on_completion_jobs_and_chat_without_llm(api: Api):
    tid, messages = await upload_and_wait_summary(api, JFK, creds(api))
    statuses = [m["data"]["status"] for m in messages if m["type"] == "status"]
    assert statuses[-1] == "completed", "the summary comes after `completed`"
    summary = messages[-1]["data"]
    assert "country" in normalize(summary["summary"]) and summary["key_points"]
    row = (await api.client.get(f"/v1/transcripts/{tid}", headers=creds(api))).json()
    stored = row["summary"]
    assert {"summary", "topics", "action_items", "key_points", "model_used"} <= set(stored)
    assert stored["summary"] == summary["summary"] and stored["model_used"] == "extractive"

    # a summary job from segments in the body (the reference's shape)
    pieces = [{"start": i * 2.0, "end": i * 2.0 + 2, "text": s} for i, s in enumerate(reference(AMI).split(". "))]
    r = await api.client.post("/api/summary/", json={"transcript": pieces, "format": "bullet_points",
                                                     "max_length": 60}, headers=creds(api))
    assert r.status_code == 202 and r.json()["status"] == "processing"
    job = r.json()["job_id"]
    assert (await poll_job(api, job, creds(api)))["status"] == "completed"
    result = (await api.client.get(f"/api/summary/{job}", headers=creds(api))).json()
    assert result["model_used"] == "extractive" and result["summary"].startswith("- ")
    assert 0 < result["length"] <= 60 + 10 and result["topics"]
    # a stored transcript by id, as key points
    r = await api.client.post("/api/summary", json={"transcript_id": tid, "format": "key_points"}, headers=creds(api))
    job2 = r.json()["job_id"]
    await poll_job(api, job2, creds(api))
    assert "country" in normalize((await api.client.get(f"/api/summary/{job2}", headers=creds(api))).json()["summary"])
    missing = str(uuid.uuid4())
    assert (await api.client.get(f"/api/summary/{missing}", headers=creds(api))).status_code == 404
    assert (await api.client.get(f"/api/summary/status/{missing}", headers=creds(api))).status_code == 404
    r = await api.client.post("/api/summary/", json={}, headers=creds(api))
    assert r.status_code == 422
    if api.private:  # another user's job and transcript stay invisible
        assert (await api.client.get(f"/api/summary/{job}", headers=creds(api, "mallory"))).status_code == 404
        r = await api.client.post("/api/summary/", json={"transcript_id": tid}, headers=creds(api, "mallory"))
        assert r.status_code == 404

    # chat needs an LLM
    r = await api.client.post("/api/chat/", json={"transcript_id": tid, "messages": [
        {"role": "user", "content": "What should we ask?"}]}, headers=creds(api))
    assert r.status_code == 503 and r.json()["error"]["code"] == "LLM_NOT_CONFIGURED"
    assert "VOXLANE_LLM_URL" in r.json()["error"]["message"]
    assert (await api.client.get("/api/chat/models", headers=creds(api))).json() == {"models": []}


async def test_llm_summaries_and_chat(llm_api: Api, fake_llm: FakeOpenAI):
    api = llm_api
    fake_llm.fail = False
    tid, messages = await upload_and_wait_summary(api, JFK, {})
    summary = messages[-1]["data"]
    assert summary["summary"].startswith("LLM summary of ") and summary["topics"] == ["country"]
    assert summary["action_items"] == ["Ask what you can do."]
    asked = fake_llm.requests[-1]
    assert asked["auth"] == f"Bearer {KEY}" and asked["body"]["model"] == MODEL
    assert "country" in asked["body"]["messages"][-1]["content"].lower(), "the transcript went to the LLM"
    stored = (await api.client.get(f"/v1/transcripts/{tid}")).json()["summary"]
    assert stored["model_used"] == MODEL and stored["key_points"] == summary["key_points"]

    r = await api.client.post("/api/summary/", json={"full_text": reference(AMI)})
    job = r.json()["job_id"]
    await poll_job(api, job, {})
    result = (await api.client.get(f"/api/summary/{job}")).json()
    assert result["model_used"] == MODEL and result["summary"].startswith("LLM summary")
    r = await api.client.post("/api/summary/", json={"full_text": reference(AMI), "model_name": "extractive"})
    job = r.json()["job_id"]
    await poll_job(api, job, {})
    assert (await api.client.get(f"/api/summary/{job}")).json()["model_used"] == "extractive"

    r = await api.client.post("/api/chat/", json={"transcript_id": tid, "temperature": 0.1, "max_tokens": 50,
                                                  "messages": [{"role": "user", "content": "What should we ask?"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"]["role"] == "assistant" and "What should we ask?" in body["message"]["content"]
    assert body["model_used"] == MODEL and body["usage"] == {"prompt": 120, "completion": 30, "total": 150}
    sent = fake_llm.requests[-1]["body"]
    assert "country" in sent["messages"][0]["content"].lower() and sent["max_tokens"] == 50
    assert (await api.client.get("/api/chat/models")).json()["models"][0]["id"] == MODEL

    # the endpoint failing: the automatic summary falls back to the extractive one; jobs and chat say why
    fake_llm.fail = True
    try:
        tid2, messages = await upload_and_wait_summary(api, JFK, {})
        assert "country" in normalize(messages[-1]["data"]["summary"])
        stored = (await api.client.get(f"/v1/transcripts/{tid2}")).json()["summary"]
        assert stored["model_used"] == "extractive" and "500" in stored["error"]
        r = await api.client.post("/api/summary/", json={"transcript_id": tid2})
        status = await poll_job(api, r.json()["job_id"], {})
        assert status["status"] == "failed" and "500" in status["message"]
        assert (await api.client.get(f"/api/summary/{r.json()['job_id']}")).status_code == 409
        r = await api.client.post("/api/chat/", json={"full_text": "hello", "messages": [
            {"role": "user", "content": "hi"}]})
        assert r.status_code == 502 and r.json()["error"]["code"] == "LLM_ERROR"
    finally:
        fake_llm.fail = False
