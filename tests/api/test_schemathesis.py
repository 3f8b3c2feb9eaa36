"""Generated requests over the published OpenAPI document: no operation answers a 500, whatever it is sent.

Schemathesis reads ``GET /v1/openapi.json`` from a real uvicorn server on the shared test app and, for every
operation, sends a bounded number of generated requests (valid by the schema, and invalid ones), each twice
over: once with generated path parameters (which mostly name nothing: the 404 paths) and once with the ids of
real resources made for the run (a transcript with segments, a project, a kiosk conversation, a webhook, a
room and its meeting), so the requests reach the handlers' real logic. Each generated request goes to both
access modes' servers, public and private with a user's token, each with its own resources in the path: the
modes publish the same operations, and generating the requests costs more than serving them.

What counts as a failure: any 500, or another 5xx the operation does not document (502/503 are documented
where an LLM is needed and none is configured); and, for requests valid by the schema, a 2xx body that does not
match its documented schema.

Left out on purpose: the WebSocket routes (schemathesis speaks HTTP; tests/api/test_protocol_properties.py fuzzes
the live channel) and the operations that transcribe a request's audio (file uploads, transcription jobs,
the OpenAI- and Deepgram-compatible endpoints, segment re-transcription): thousands of generated uploads would
each start real model work. Kiosk chunk PUTs stay in: without a valid signature (which generation never forges) they are
refused before any audio is stored.

``VOXLANE_FUZZ_EXAMPLES`` (default 12) bounds the examples per operation and pass; 30 is a good local run.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.core.failures import Failure
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from server.http.auth import SCOPES
from tests.rest_support import Api

pytest_plugins = ("tests.rest_fixtures",)

EXAMPLES = int(os.environ.get("VOXLANE_FUZZ_EXAMPLES", "12"))

# (method, path) -> why it is not fuzzed here
EXCLUDED = {
    ("POST", "/v1/transcripts_audio/{transcript_id}/upload"): "transcribes the uploaded file",
    ("POST", "/api/transcribe/"): "a transcription job over the uploaded file",
    ("POST", "/v1/audio/transcriptions"): "transcribes the uploaded file",
    ("POST", "/api/retranslate/segment"): "transcribes the uploaded audio again",
    ("POST", "/v1/listen"): "transcribes the posted audio (Deepgram's pre-recorded API)",
}


@dataclass
class Mode:
    """One access mode's server: its schema's operations, the caller's headers and its real resources."""

    name: str
    base: str
    headers: dict[str, str]
    known: dict[str, str]
    operations: dict[tuple[str, str], Any] = field(default_factory=dict)


@dataclass
class Findings:
    """What the run found, per mode and operation; collected rather than raised so one run reports every problem."""

    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    tested: dict[str, list[str]] = field(default_factory=dict)
    seen: dict[tuple[str, str, int | None], int] = field(default_factory=dict)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)

    def add(self, label: str, what: str, case: Any, response: requests.Response | None) -> None:
        detail = ""
        if response is not None:
            detail = f" -> {response.status_code} {response.text[:300]!r}"
        kind = (label, what.split(":")[0], response.status_code if response is not None else None)
        with self.lock:
            self.seen[kind] = self.seen.get(kind, 0) + 1
            if self.seen[kind] <= 2:  # two examples of each kind of failure are enough to reproduce it
                self.failures.append(f"{label}: {what}: {case.as_curl_command()}{detail}")


def _documented_5xx(op: Any) -> set[int]:
    """The 5xx statuses an operation documents explicitly, 500 aside (documented everywhere as 'never')."""
    return {int(s) for s in op.definition.raw.get("responses", {}) if s.isdigit() and 500 < int(s) < 600}


def _skip(op: Any) -> bool:
    raw = op.definition.raw
    return bool(raw.get("x-websocket")) or (op.method.upper(), op.path) in EXCLUDED


KNOWN = "known-"
"""Generation draws a path parameter of a known resource as this prefix and its name; each mode sends its own
resource's id there (a mode without such a resource sends the placeholder: a path that names nothing)."""


def _known_params(op: Any, modes: list[Mode]) -> dict[str, str] | None:
    names = [p.name for p in op.path_parameters]
    if not names or not all(any(n in m.known for m in modes) for n in names):
        return None
    return {n: KNOWN + n for n in names}


def _for_mode(case: Any, mode: Mode) -> Any:
    """The generated request as ``mode``'s operation: the same parts, its own resources in the path."""
    op = mode.operations[(case.operation.method.upper(), case.operation.path)]
    params = {n: mode.known.get(v[len(KNOWN):], v) if isinstance(v, str) and v.startswith(KNOWN) else v
              for n, v in (case.path_parameters or {}).items()}
    return op.Case(method=case.method, path_parameters=params, headers=dict(case.headers or {}),
                   cookies=dict(case.cookies or {}), query=dict(case.query or {}), body=case.body,
                   media_type=case.media_type, multipart_content_types=case.multipart_content_types,
                   _meta=case._meta)


def send(case: Any, mode: Mode, findings: Findings, session: requests.Session) -> None:
    """One generated request to one mode's server, and what its answer says."""
    op = case.operation
    label = f"{mode.name} {op.method.upper()} {op.path}"
    try:
        response = case.call(base_url=mode.base, session=session, headers=mode.headers, timeout=60,
                             allow_redirects=False)
    except requests.exceptions.InvalidHeader:  # a generated header value requests refuses to send
        return
    except requests.exceptions.RequestException as exc:
        findings.add(label, f"transport error {exc!r}", case, None)
        return
    status = response.status_code
    with findings.lock:
        counts = findings.statuses.setdefault(label, {})
        counts[status] = counts.get(status, 0) + 1
    if status == 500 or (status > 500 and status not in _documented_5xx(op)):
        findings.add(label, "server error", case, response)
        return
    if 200 <= status < 300 and case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE:
        try:
            case.validate_response(response, checks=[response_schema_conformance])
        except (AssertionError, Failure) as exc:
            findings.add(label, f"response does not match its schema: {str(exc)[:400]}", case, response)


def fuzz_operation(op: Any, modes: list[Mode], findings: Findings, session: requests.Session) -> None:
    """Run one operation's generated cases against every mode's server (in a worker thread: the servers' loop
    runs). Each case is generated once, from the first mode's schema, and sent to each mode: generating is most
    of the work, and the modes' schemas differ only in whom they let in."""
    strategies = [op.as_strategy(generation_mode=GenerationMode.POSITIVE),
                  op.as_strategy(generation_mode=GenerationMode.NEGATIVE)]
    fixed = _known_params(op, modes)
    if fixed is not None:
        strategies += [op.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=fixed),
                       op.as_strategy(generation_mode=GenerationMode.NEGATIVE, path_parameters=fixed)]

    @settings(max_examples=EXAMPLES * len(strategies), deadline=None, database=None, derandomize=False,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies))
    def run(case: Any) -> None:
        for mode in modes:
            send(_for_mode(case, mode), mode, findings, session)

    run()
    for mode in modes:
        findings.tested.setdefault(mode.name, []).append(f"{op.method.upper()} {op.path}")


def load_operations(mode: Mode) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{mode.base}/v1/openapi.json", headers=mode.headers, timeout=30)
    ops = [r.ok() for r in schema.get_all_operations()]
    mode.operations = {(op.method.upper(), op.path): op for op in ops}
    return ops


def fuzz_api(modes: list[Mode]) -> Findings:
    ops = load_operations(modes[0])
    for mode in modes[1:]:
        load_operations(mode)
        missing = {(op.method.upper(), op.path) for op in ops} ^ set(mode.operations)
        assert not missing, f"operations published in one mode only: {sorted(missing)}"
    # destructive operations last (deepest path first), so the known resources live through the other requests
    ops.sort(key=lambda op: (op.method.upper() == "DELETE", -op.path.count("/")))
    findings = Findings()
    with requests.Session() as session:
        for op in ops:
            if not _skip(op):
                fuzz_operation(op, modes, findings, session)
    return findings


def caller(api: Api) -> dict[str, str]:
    """Nothing in public mode; in private mode a user's token with every scope (scope checks have their tests)."""
    return api.auth("fuzzer", list(SCOPES)) if api.private else {}


async def make_resources(api: Api) -> dict[str, str]:
    """Real resources of the caller for the path parameters: the requests then reach the handlers' logic."""
    h = caller(api)
    known: dict[str, str] = {}
    r = await api.client.post("/v1/transcripts/", json={"name": "fuzzed"}, headers=h)
    assert r.status_code == 201, r.text
    known["transcript_id"] = r.json()["id"]
    for j in range(3):
        await api.svc.store.save_segment(known["transcript_id"], {
            "text": f"segment {j} of the fuzzed transcript", "start": j * 2.0, "end": j * 2.0 + 1.5,
            "speaker": f"Speaker {j % 2 + 1}", "confidence": 0.9,
            "words": [{"text": "segment", "start": j * 2.0, "end": j * 2.0 + 0.5, "probability": 0.9, "final": True}]})
    r = await api.client.post("/api/projects", json={"title": "fuzzed project"}, headers=h)
    assert r.status_code == 201, r.text
    known["project_id"] = r.json()["id"]
    r = await api.client.post("/api/participant/conversations/initiate",
                              json={"project_id": known["project_id"], "name": "Kiosk"}, headers=h)
    assert r.status_code == 201, r.text
    known["conversation_id"] = r.json()["id"]
    r = await api.client.post(f"/api/projects/{known['project_id']}/webhooks",
                              json={"url": "http://127.0.0.1:9/hook", "events": ["conversation.transcribed"]},
                              headers=h)
    if r.status_code == 201:
        known["webhook_id"] = r.json()["id"]
    r = await api.client.post(f"/api/participant/conversations/{known['conversation_id']}/get-upload-url", json={},
                              headers=h)
    if r.status_code == 200:
        known["key"] = r.json()["key"]
    r = await api.client.post("/v1/rooms/", json={"name": "fuzzed room"}, headers=h)
    assert r.status_code == 201, r.text
    known["room_id"] = r.json()["id"]
    r = await api.client.post(f"/v1/rooms/{known['room_id']}/meeting", json={}, headers=h)
    assert r.status_code == 201, r.text
    known["meeting_id"] = r.json()["id"]
    return known


async def test_no_generated_request_gets_a_server_error(public_api: Api, private_api: Api) -> None:
    """Public mode (on SQLite) and private mode with a user's token (on PostgreSQL), each request in both."""
    modes = [Mode(name, await api.serve(), caller(api), await make_resources(api))
             for name, api in (("public", public_api), ("private", private_api))]
    findings = await asyncio.to_thread(fuzz_api, modes)
    statuses = "\n".join(f"{label}: {dict(sorted(counts.items()))}" for label, counts in findings.statuses.items())
    assert all(len(findings.tested.get(m.name, [])) > 40 for m in modes), findings.tested
    assert not findings.failures, "\n".join(findings.failures) + "\n\nstatuses per operation:\n" + statuses
