"""Helpers for the REST tests: the :class:`Api` handle on an in-process app, tokens, real audio."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import numpy as np
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server.http.auth import generate_api_key
from server.services import Services
from server.settings import Settings

AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"
JWT_SECRET = "rest-tests-secret-0123456789abcdef"
JWT_AUDIENCE = "voxlane-tests"
"""The private app takes a JWKS, so it requires this ``aud`` in every JWT."""
LOOPBACK_RECEIVERS = "127.0.0.1/32"
"""``VOXLANE_OUTBOUND_ALLOWLIST`` of apps whose tests run webhook receivers on loopback."""
TERMINAL = ("completed", "failed")


def reference(name: str) -> str:
    return json.loads((AUDIO / "references.json").read_text())[name]["text"]


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.reshape(-1, w.getnchannels())[:, 0].copy(), rate


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


@dataclass
class Api:
    app: Any
    client: httpx.AsyncClient
    settings: Settings
    private: bool
    rsa_private_pem: bytes | None = None
    _server: uvicorn.Server | None = None
    _server_task: asyncio.Task | None = None
    base_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def svc(self) -> Services:
        return self.app.state.services

    @property
    def data_dir(self) -> Path:
        return self.settings.data_path

    # ------------------------------------------------------------ tokens

    def jwt(self, user: str, scopes: list[str] | None = None, *, ttl: float = 3600, alg: str = "HS256",
            **claims: Any) -> str:
        """A token the app accepts (its ``aud`` included); a claim given as None is left out."""
        payload: dict[str, Any] = {"sub": user, "exp": int(time.time() + ttl)}
        if self.settings.jwt_audience:
            payload["aud"] = self.settings.jwt_audience
        payload = {k: v for k, v in {**payload, **claims}.items() if v is not None}
        if scopes is not None:
            payload["scope"] = " ".join(scopes)
        if alg == "HS256":
            return jwt.encode(payload, JWT_SECRET, algorithm="HS256")
        assert self.rsa_private_pem is not None
        return jwt.encode(payload, self.rsa_private_pem, algorithm=alg, headers={"kid": "test-key"})

    def auth(self, user: str = "alice", scopes: list[str] | None = None, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt(user, scopes, **kw)}"}

    async def api_key(self, user: str | None, scopes: list[str]) -> str:
        key_id, token, digest = generate_api_key()
        await self.svc.store.create_api_key(key_id=key_id, key_hash=digest, user=user, scopes=scopes, name="test")
        return token

    # ------------------------------------------------------------ helpers

    async def wait_transcript(self, tid: str, headers: dict[str, str] | None = None, within: float = 60.0,
                              states: tuple[str, ...] = TERMINAL) -> dict[str, Any]:
        """The transcript once its status is one of ``states``. Polled at a growing interval (0.1 s to 0.5 s):
        each poll reads every segment in the test's own process, which the app transcribing it shares."""
        deadline = time.monotonic() + within
        pause = 0.1
        while True:
            r = await self.client.get(f"/v1/transcripts/{tid}", headers=headers or {})
            assert r.status_code == 200, r.text
            if r.json()["status"] in states:
                return r.json()
            assert time.monotonic() < deadline, f"transcript {tid} still {r.json()['status']}"
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.5)

    async def serve(self) -> str:
        """A real HTTP/WebSocket server on this same app (lifespan already running)."""
        if self.base_url is None:
            config = uvicorn.Config(self.app, host="127.0.0.1", port=0, lifespan="off", log_level="warning",
                                    ws_max_size=16 * 1024 * 1024)
            self._server = uvicorn.Server(config)
            self._server_task = asyncio.create_task(self._server.serve())
            for _ in range(500):
                if self._server.started:
                    break
                await asyncio.sleep(0.02)
            port = self._server.servers[0].sockets[0].getsockname()[1]
            self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close_server(self) -> None:
        if self._server is not None and self._server_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server_task, 10)


async def upload_url(api: Api, cid: str, **body: Any) -> dict:
    """A kiosk chunk's upload URL (``get-upload-url``), asserted granted."""
    r = await api.client.post(f"/api/participant/conversations/{cid}/get-upload-url", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def rsa_keys(tmp: Path) -> tuple[bytes, Path]:
    """An RSA key pair: the private PEM (to sign test tokens) and a JWKS file (the server's setting)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="test-key", use="sig", alg="RS256")
    jwks = tmp / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    pem = tmp / "public.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_pem, jwks


def creds(api: Api, user: str = "alice", scopes: list[str] | None = None) -> dict[str, str]:
    """What a client of this mode sends: nothing in public mode, a user's token in private mode."""
    return api.auth(user, scopes) if api.private else {}


def as_plain_text(segments: list[dict]) -> str:
    """What the `text` export promises: each speaker's name opens their turn (uploads are diarized)."""
    lines, last = [], None
    for s in segments:
        lines.append(f"{s['speaker']}: {s['text']}" if s.get("speaker") and s["speaker"] != last else s["text"])
        last = s.get("speaker")
    return " ".join(lines)


def as_cue_texts(segments: list[dict]) -> list[str]:
    """What each SRT cue holds: the speaker, when there is one, then the text."""
    return [f"{s['speaker']}: {s['text']}" if s.get("speaker") else s["text"] for s in segments]
