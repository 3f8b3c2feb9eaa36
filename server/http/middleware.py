"""Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streams and break WebSockets)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol.close import CLOSE_POLICY
from server.http.errors import error_response, server_error
from server.logs import REQUEST_ID

log = logging.getLogger("voxlane.http")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ConnectionMiddleware:
    """The base of voxlane's pure ASGI middleware: HTTP requests and WebSockets (``scope_types``) go to
    :meth:`handle`, anything else (lifespan) passes straight through untouched."""

    scope_types: tuple[str, ...] = ("http", "websocket")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in self.scope_types:
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RequestIdMiddleware(ConnectionMiddleware):
    """Every HTTP response carries ``X-Request-ID`` (the caller's, if sane) and ``X-Process-Time-Ms``."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)  # every log line while it is served carries it (server.logs)
        try:
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
            else:
                await self._http(scope, receive, send, request_id)
        finally:
            REQUEST_ID.reset(token)

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                elapsed = (time.perf_counter() - started) * 1000
                headers.append((b"x-process-time-ms", f"{elapsed:.2f}".encode()))
                message["headers"] = headers
            await send(message)

        started_response = False

        async def tracking_send(message: Message) -> None:
            nonlocal started_response
            started_response = started_response or message["type"] == "http.response.start"
            await send_wrapper(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            # answered here, inside this middleware, so a 500 (or a 503 while the database is away) keeps its
            # request id too
            status, error, extra = server_error(exc, scope.get("method"), scope.get("path"))
            if started_response:
                raise
            body = json.dumps(error).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       *((k.lower().encode(), v.encode()) for k, v in extra.items())]
            await send_wrapper({"type": "http.response.start", "status": status, "headers": headers})
            await send_wrapper({"type": "http.response.body", "body": body})


class PathGuardMiddleware(ConnectionMiddleware):
    """A path with a control character in it names nothing: 404 (a WebSocket is refused before it is accepted).

    Starlette's route patterns end in ``$``, which Python's ``re`` also matches before a final newline, so
    ``GET /v1/rooms/%0A`` was served by ``GET /v1/rooms/``: a list where the schema promises one room, and for
    a route with a path parameter, a request to a resource its caller never named."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _CONTROL.search(scope.get("path", "")):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": CLOSE_POLICY})
        else:
            await error_response(404, "NOT_FOUND", "no such path")(scope, receive, send)
