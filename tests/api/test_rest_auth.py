"""Access control in both modes, the API description and docs page, and the shape of unexpected errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.routing import Mount, Route, WebSocketRoute

from server.http.auth import Authenticator, AuthError
from server.settings import Settings, SettingsError
from tests.rest_support import AUDIO, JWT_AUDIENCE, JWT_SECRET, Api, creds, read_wav

pytest_plugins = ("tests.rest_fixtures",)
REPO = Path(__file__).resolve().parents[2]  # the checkout, whatever its folder is called
SHORT = "single/librispeech_61-70968-0000.wav"


async def create(api: Api, headers: dict[str, str] | None = None, name: str = "t") -> str:
    r = await api.client.post("/v1/transcripts/", json={"name": name}, headers=headers or {})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_public_mode_needs_no_token_and_a_token_makes_a_user(public_api: Api):
    api = public_api
    anon = await create(api)
    assert (await api.client.get(f"/v1/transcripts/{anon}")).status_code == 200
    alice = api.auth("alice")
    mine = await create(api, alice, "alice's")
    assert (await api.client.get(f"/v1/transcripts/{mine}", headers=alice)).status_code == 200
    r = await api.client.get(f"/v1/transcripts/{mine}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "TRANSCRIPT_NOT_FOUND", "not 403: not even a hint"
    assert (await api.client.get(f"/v1/transcripts/{anon}", headers=alice)).status_code == 404
    listed = (await api.client.get("/v1/transcripts/", params={"size": 200}, headers=alice)).json()["items"]
    assert mine in [t["id"] for t in listed] and anon not in [t["id"] for t in listed]
    # a bad voxlane token is an error even where none is needed
    r = await api.client.get("/v1/transcripts/", headers={"Authorization": "Bearer not.a.token"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_TOKEN"
    assert r.headers["www-authenticate"].startswith("Bearer")
    # ...while a bearer that is no voxlane token at all (the OpenAI SDK's placeholder key) is ignored: anonymous
    r = await api.client.get("/v1/transcripts/", params={"size": 200}, headers={"Authorization": "Bearer anything"})
    assert r.status_code == 200 and anon in [t["id"] for t in r.json()["items"]]
    r = await api.client.get("/v1/transcripts/", headers=api.auth("alice", ttl=-3600))
    assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_EXPIRED"


async def test_private_mode_requires_a_token_except_health_and_participant(private_api: Api):
    api = private_api
    for path in ("/v1/transcripts/", "/api/transcribe/models", "/api/transcribe/jobs", "/v1/openapi.json",
                 "/api/projects", "/v1/protocol.json"):
        r = await api.client.get(path)
        assert r.status_code == 401, path
        assert r.json()["error"]["code"] == "UNAUTHORIZED" and "Bearer" in r.json()["error"]["message"]
    assert (await api.client.post("/v1/transcripts/", json={})).status_code == 401
    assert (await api.client.get("/health")).status_code == 200
    # the verbose health (process size, tasks, live load) is for a token's holder: anyone else gets the plain one
    for headers in ({}, {"Authorization": "Bearer a.b.c"}):
        body = (await api.client.get("/health?verbose=1", headers=headers)).json()
        assert body["status"] == "ok" and "rss_mb" not in body and "live_streams" not in body, body
    assert "rss_mb" in (await api.client.get("/health?verbose=1", headers=api.auth("x", ["export"]))).json()
    assert (await api.client.get("/api/participant/projects/nope")).json()["error"]["code"] == "PROJECT_NOT_FOUND"
    for bad in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer a.b.c", "Bearer vxl_0123456789ab_" + "x" * 43):
        r = await api.client.get("/v1/transcripts/", headers={"Authorization": bad})
        assert r.status_code == 401, bad
    # any valid token may read the API description, whatever its scopes
    r = await api.client.get("/v1/openapi.json", headers=api.auth("x", ["export"]))
    assert r.status_code == 200 and r.json()["x-auth-mode"] == "private"


async def test_scopes(private_api: Api):
    api = private_api
    reader, writer = api.auth("sam", ["transcripts:read"]), api.auth("sam", ["transcripts:write"])
    r = await api.client.post("/v1/transcripts/", json={}, headers=reader)
    assert r.status_code == 403 and r.json()["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert r.json()["error"]["details"]["required"] == "transcripts:write"
    tid = await create(api, writer)
    assert (await api.client.get(f"/v1/transcripts/{tid}", headers=reader)).status_code == 200
    assert (await api.client.get(f"/v1/transcripts/{tid}", headers=writer)).status_code == 403
    assert (await api.client.delete(f"/v1/transcripts/{tid}", headers=reader)).status_code == 403
    assert (await api.client.get("/api/transcribe/models", headers=reader)).status_code == 200
    assert (await api.client.post("/api/transcribe/", headers=reader, files={"file": ("a.wav", b"")})).status_code \
        == 403
    # a JWT that names none of voxlane's scopes (an SSO token) gets read, write and export, not admin
    sso = api.auth("sam", ["openid", "email"])
    assert (await api.client.get(f"/v1/transcripts/{tid}", headers=sso)).status_code == 200
    assert (await api.client.get("/api/projects", headers=sso)).status_code == 403


async def test_rs256_jwks_and_a_pem_key(private_api: Api):
    api = private_api
    rs = {"Authorization": "Bearer " + api.jwt("rita", alg="RS256")}
    tid = await create(api, rs)
    hs = api.auth("rita")
    assert (await api.client.get(f"/v1/transcripts/{tid}", headers=hs)).status_code == 200, "same user, any key"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"sub": "rita", "exp": time.time() + 60}, stranger, algorithm="RS256",
                        headers={"kid": "test-key"})
    r = await api.client.get("/v1/transcripts/", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_TOKEN"
    wrong_secret = jwt.encode({"sub": "rita", "exp": time.time() + 60}, "x" * 40, algorithm="HS256")
    assert (await api.client.get("/v1/transcripts/", headers={"Authorization": f"Bearer {wrong_secret}"})
            ).status_code == 401
    unsigned = jwt.encode({"sub": "rita"}, None, algorithm="none")
    assert (await api.client.get("/v1/transcripts/", headers={"Authorization": f"Bearer {unsigned}"})
            ).status_code == 401
    no_sub = jwt.encode({"exp": time.time() + 60}, JWT_SECRET, algorithm="HS256")
    assert (await api.client.get("/v1/transcripts/", headers={"Authorization": f"Bearer {no_sub}"})
            ).status_code == 401
    # the setting also takes a PEM (text or file); a bad one stops the server at start
    auth = Authenticator(Settings(auth_mode="private", jwt_public_key=api.extra["public_pem"],
                                  jwt_audience=JWT_AUDIENCE), store=None)
    who = await auth.authenticate(api.jwt("pem-user", ["transcripts:read"], alg="RS256"))
    assert who.user == "pem-user" and who.scopes == {"transcripts:read"}
    with pytest.raises(AuthError):
        await auth.authenticate(api.jwt("pem-user"))  # HS256 is not configured on this one
    with pytest.raises(SettingsError):
        Authenticator(Settings(jwt_public_key="/no/such/key.pem", jwt_audience=JWT_AUDIENCE), store=None)


async def test_api_keys_from_the_cli(private_api: Api):
    api = private_api

    def cli(*args: str) -> subprocess.CompletedProcess:
        where = ["--data-dir", str(api.data_dir), "--database-url", api.settings.database_url or ""]
        return subprocess.run([sys.executable, "-m", "server.cli", "token", *args, *where],
                              cwd=REPO, capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "VOXLANE_JWT_SECRET": JWT_SECRET})

    made = cli("create", "--scope", "transcripts:read", "--scope", "transcripts:write", "--user", "carol",
               "--name", "recorder")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("vxl_") and "shown only now" in made.stderr
    headers = {"Authorization": f"Bearer {key}"}
    tid = await create(api, headers)
    assert (await api.client.get(f"/v1/transcripts/{tid}", headers=api.auth("carol"))).status_code == 200
    assert (await api.client.get(f"/v1/transcripts/{tid}", headers=api.auth("dave"))).status_code == 404
    assert (await api.client.get("/api/projects", headers=headers)).status_code == 403
    listed = cli("list", "--json")
    keys = json.loads(listed.stdout)
    mine = next(k for k in keys if k["user"] == "carol")
    assert "key_hash" not in mine and key not in listed.stdout, "the key is never shown again"
    row = await api.svc.store.get_api_key(mine["id"])
    assert row["key_hash"] != key and len(row["key_hash"]) == 64, "stored hashed"
    assert cli("create", "--scope", "admin").returncode == 2
    assert cli("revoke", mine["id"]).returncode == 0
    api.app.state.rest.authenticator.forget_cached_keys()  # running servers notice within ~10 s
    r = await api.client.get("/v1/transcripts/", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_REVOKED"
    assert cli("revoke", mine["id"]).returncode == 1


async def test_a_private_transcript_is_invisible_to_another_token(private_api: Api):
    api = private_api
    alice, bob = api.auth("alice"), api.auth("bob")
    tid = await create(api, alice, "alice only")
    data = (AUDIO / SHORT).read_bytes()
    r = await api.client.post(f"/v1/transcripts_audio/{tid}/upload", files={"file": ("a.wav", data)}, headers=alice)
    assert r.status_code == 202
    await api.wait_transcript(tid, alice)
    bob_key = {"Authorization": "Bearer " + await api.api_key("bob", ["transcripts:read", "transcripts:write",
                                                                       "export"])}
    for who in (bob, bob_key):
        for method, path in (("GET", f"/v1/transcripts/{tid}"), ("PATCH", f"/v1/transcripts/{tid}"),
                             ("DELETE", f"/v1/transcripts/{tid}"),
                             ("POST", f"/v1/transcripts_audio/{tid}/upload"),
                             ("GET", f"/v1/transcripts_audio/{tid}/download"),
                             ("GET", f"/v1/transcripts_audio/{tid}/stream"),
                             ("GET", f"/api/transcribe/result/{tid}")):
            r = await api.client.request(method, path, headers=who, json={} if method == "PATCH" else None)
            assert r.status_code == 404, (method, path, r.status_code)
        listed = (await api.client.get("/v1/transcripts/", params={"search": "alice only"}, headers=who)).json()
        assert listed["total"] == 0
    assert (await api.client.get(f"/api/transcribe/status/{tid}", headers=bob)).json()["status"] == "not_found"
    assert (await api.client.get(f"/v1/transcripts/{tid}", headers=alice)).json()["status"] == "completed"


async def test_websocket_takes_the_token_as_query_or_header(private_api: Api):
    api = private_api
    base = await api.serve()
    ws_base = base.replace("http", "ws", 1)
    alice = api.auth("alice")
    tid = await create(api, alice)
    url = f"{ws_base}/v1/transcripts_websocket/{tid}"
    for target, headers, code in ((url, {}, 4401), (url + "?token=junk", {}, 4401),
                                  (url + "?token=" + api.jwt("bob"), {}, 4404)):
        async with websockets.connect(target, additional_headers=headers) as ws:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd.code == code
    # the header works too; the query token is stripped before the app sees it
    async with websockets.connect(url, additional_headers=alice) as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "status"
    samples, _ = read_wav(AUDIO / SHORT)
    async with websockets.connect(url + "?token=" + api.jwt("alice")) as ws:
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}}))
        pcm = samples.astype("<i2").tobytes()
        for i in range(0, len(pcm), 32000):
            await ws.send(pcm[i:i + 32000])
            await asyncio.sleep(0.01)
        await ws.send(json.dumps({"action": "stop"}))
        finals = []
        async with asyncio.timeout(30):
            while True:
                m = json.loads(await ws.recv())
                if m["type"] == "transcription" and m["data"]["is_final"]:
                    finals.append(m["data"]["text"])
                if m["type"] == "status" and m["data"]["status"] == "completed" and not m["data"]["participant_id"]:
                    break
    assert "wizard" in " ".join(finals).lower()
    # the recorded live audio is what /download and /stream serve for a live transcript
    r = await api.client.get(f"/v1/transcripts_audio/{tid}/download", headers=alice)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert abs((len(r.content) - 44) / 2 - len(samples)) < 320
    r = await api.client.get(f"/v1/transcripts_audio/{tid}/stream", headers={**alice, "Range": "bytes=44-"})
    assert r.status_code == 206 and r.content == samples.astype("<i2").tobytes()[:len(r.content)]


async def test_openapi_describes_every_route_with_schemas(api: Api):
    r = await api.client.get("/v1/openapi.json", headers=creds(api))
    assert r.status_code == 200
    spec = r.json()
    assert spec["openapi"].startswith("3.") and spec["x-auth-mode"] == ("private" if api.private else "public")
    for route in api.app.routes:
        if isinstance(route, Mount):
            continue
        path = route.path if route.path in spec["paths"] else route.path.rstrip("/") + "/"
        if path not in spec["paths"]:
            path = route.path.rstrip("/")
        assert path in spec["paths"], route.path
        methods = ["get"] if isinstance(route, WebSocketRoute) else [
            m.lower() for m in (route.methods or ()) if m != "HEAD"] if isinstance(route, Route) else []
        for m in methods:
            op = spec["paths"][path][m]
            assert op["summary"] and op["responses"], (m, path)
            assert "500" in op["responses"]
    schemas = spec["components"]["schemas"]
    upload = spec["paths"]["/v1/transcripts_audio/{transcript_id}/upload"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert upload["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("UploadAccepted")
    assert upload["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    initiate = spec["paths"]["/api/participant/conversations/initiate"]["post"]
    assert initiate["security"] == [] and "project_id" in schemas["Initiate"]["properties"]
    jobs = spec["paths"]["/api/transcribe/live/{job_id}"]["get"]
    assert jobs["x-websocket"] is True
    patch = spec["paths"]["/v1/transcripts/{transcript_id}"]["patch"]
    assert set(schemas["TranscriptUpdate"]["properties"]) >= {"name", "language", "participants", "summary",
                                                              "status"}
    assert patch["security"][0] == {"bearer": ["transcripts:write"]}
    # responses match their documented schemas
    validator_for = {name: jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                                            "components": spec["components"]})
                     for name in ("TranscriptPage", "ModelList", "ErrorResponse", "JobList")}
    validator_for["TranscriptPage"].validate((await api.client.get("/v1/transcripts/", headers=creds(api))).json())
    validator_for["ModelList"].validate((await api.client.get("/api/transcribe/models", headers=creds(api))).json())
    validator_for["JobList"].validate((await api.client.get("/api/transcribe/jobs", headers=creds(api))).json())
    validator_for["ErrorResponse"].validate((await api.client.get("/v1/transcripts/nope", headers=creds(api))).json())


async def test_docs_page(api: Api):
    r = await api.client.get("/docs")
    if api.private:  # off by default in private mode (VOXLANE_API_DOCS=on turns it on)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
        api.svc.settings.api_docs = "on"
        try:
            r = await api.client.get("/docs")
        finally:
            api.svc.settings.api_docs = "auto"
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "/v1/openapi.json" in page and "Try it" in page
    for external in ("http://", "https://", "//cdn", "<link", "src="):
        assert external not in page, f"the page must be self-contained ({external})"


async def test_unexpected_errors_are_500_without_a_traceback(api: Api, monkeypatch):
    store = api.svc.store

    async def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(store, "list_projects", boom)
    monkeypatch.setattr(store, "get_project", boom)
    admin = creds(api, "admin", ["projects:admin"])
    tid = await create(api, creds(api))
    monkeypatch.setattr(store, "get_transcript", boom)
    for path, headers in (("/api/projects", admin), ("/api/participant/projects/x", {}),
                          (f"/v1/transcripts_audio/{tid}/download", creds(api))):
        r = await api.client.get(path, headers=headers)
        assert r.status_code == 500, path
        assert r.json() == {"error": {"code": "INTERNAL_ERROR", "message": "internal server error", "details": {}}}
        assert "secret" not in r.text and "Traceback" not in r.text


# ------------------------------------------------------------ token lifetime and audience


async def refused(api: Api, token: str) -> str:
    """The 401 message for ``token`` (asserting it is refused as invalid)."""
    r = await api.client.get("/v1/transcripts/", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_TOKEN", r.text
    return r.json()["error"]["message"]


async def test_a_jwt_must_expire_and_not_live_too_long(api: Api):
    now = int(time.time())
    assert "'exp'" in await refused(api, api.jwt("alice", exp=None)), "a token that never expires"
    if api.private:
        assert "'exp'" in await refused(api, api.jwt("alice", alg="RS256", exp=None))
    limit = api.settings.jwt_max_lifetime
    assert limit == 86400
    assert "VOXLANE_JWT_MAX_LIFETIME" in await refused(api, api.jwt("alice", ttl=2 * limit))  # no iat: exp - now
    assert "VOXLANE_JWT_MAX_LIFETIME" in await refused(api, api.jwt("alice", ttl=3600, iat=now - limit))  # 25 h
    for ok in (api.jwt("alice", ttl=limit - 60, iat=now), api.jwt("alice", ttl=limit - 60)):
        r = await api.client.get("/v1/transcripts/", headers={"Authorization": f"Bearer {ok}"})
        assert r.status_code == 200, r.text


async def test_an_outside_key_needs_an_audience_and_tokens_must_carry_it(private_api: Api):
    api = private_api
    pem = api.extra["public_pem"]
    env = {"VOXLANE_AUTH_MODE": "private", "VOXLANE_JWT_PUBLIC_KEY": pem}
    with pytest.raises(SettingsError, match="VOXLANE_JWT_AUDIENCE"):
        Settings.from_sources({}, env=env)
    assert Settings.from_sources({}, env={**env, "VOXLANE_JWT_AUDIENCE": "voxlane"}).jwt_audience == "voxlane"
    with pytest.raises(SettingsError, match="VOXLANE_JWT_AUDIENCE"):  # also when Settings skipped validate()
        Authenticator(Settings(auth_mode="private", jwt_public_key=pem), store=None)
    serve = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "server.cli", "serve"], cwd=REPO,
                                    capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", **env})
    assert serve.returncode != 0 and "VOXLANE_JWT_AUDIENCE" in serve.stderr, serve.stderr[-2000:]
    # the key signs the identity provider's tokens for other services too: only ours are accepted
    for aud in ("another-service", None, ["another-service", "and-one-more"]):
        await refused(api, api.jwt("rita", alg="RS256", aud=aud))
    await refused(api, api.jwt("rita", aud="another-service"))  # the audience holds for every JWT
    for aud in (JWT_AUDIENCE, ["another-service", JWT_AUDIENCE]):
        token = api.jwt("rita", alg="RS256", aud=aud)
        r = await api.client.get("/v1/transcripts/", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text


async def test_the_cli_mints_tokens_that_expire(public_api: Api):
    def mint(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "server.cli", "token", "jwt", "--user", "cli-user", *args],
                              cwd=REPO, capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "VOXLANE_JWT_SECRET": JWT_SECRET})

    made = mint()
    assert made.returncode == 0, made.stderr
    claims = jwt.decode(made.stdout.strip(), JWT_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 3600
    r = await public_api.client.get("/v1/transcripts/", headers={"Authorization": f"Bearer {made.stdout.strip()}"})
    assert r.status_code == 200
    for ttl in ("0", "-5", str(2 * 86400)):
        bad = mint("--ttl", ttl)
        assert bad.returncode == 2 and "VOXLANE_JWT_MAX_LIFETIME" in bad.stderr and not bad.stdout
