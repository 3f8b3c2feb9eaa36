"""A webhook receiver for tests: a real HTTP endpoint on loopback that checks every signature itself."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "receiver-secret-0123456789abcdef"
BODY_OF_A_REFUSAL = b"no: db=postgres://admin:hunter2@10.0.0.7"
"""What a receiver (or whatever answered) says with an error: never stored, never shown."""


@dataclass
class Hit:
    path: str
    event: dict[str, Any]
    headers: dict[str, str]
    status: int
    signed: bool
    at: float = field(default_factory=time.monotonic)

    @property
    def event_id(self) -> str:
        return self.event["id"]


class Receiver:
    """A real HTTP endpoint on 127.0.0.1: answers 500 to the first ``fail_first`` requests of each event id,
    then 200 (or always ``status``, with ``headers``), and checks every signature with its own HMAC (not the
    server's code)."""

    def __init__(self, secret: str = SECRET, fail_first: int = 2, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.secret = secret.encode()
        self.fail_first = fail_first
        self.status = status
        self.headers = headers or {}
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.record(self.path, dict(self.headers), body, self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def record(self, path: str, headers: dict[str, str], body: bytes, handler: BaseHTTPRequestHandler) -> None:
        stamp = headers.get("X-Voxlane-Timestamp", "")
        expected = "sha256=" + hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(expected, headers.get("X-Voxlane-Signature", "")) and abs(
            time.time() - int(stamp)) < 60
        event = json.loads(body)
        with self.lock:
            seen = sum(1 for h in self.hits if h.event_id == event["id"] and h.path == path)
            status = self.status or (500 if seen < self.fail_first else 200)
            self.hits.append(Hit(path, event, headers, status, signed))
        reply = BODY_OF_A_REFUSAL if status >= 300 else b"ok"
        handler.send_response(status)
        for name, value in self.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)

    def accepted(self, path: str = "/") -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.status == 200 and h.path == path]

    def of(self, event_id: str, path: str = "/") -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.event_id == event_id and h.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
