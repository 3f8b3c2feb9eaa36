"""Admission over HTTP: who is calling (:data:`~server.pipeline.admission.CALLER`, set for every request and
WebSocket), the bound on audio uploads received at once, and a live refusal as an HTTP answer. The policy itself
is the live pipeline's (:mod:`server.pipeline.admission`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from protocol import ErrorCode
from server.http.addresses import DEFAULT_IPV6_PREFIX, address_key
from server.http.errors import ApiError, error_response
from server.http.middleware import ConnectionMiddleware
from server.pipeline.admission import CALLER, UPLOAD_RETRY_S, Admission, Caller, Refusal, Refused


def caller_of(scope: Scope) -> Caller:
    principal = scope.get("state", {}).get("principal")
    identity = getattr(principal, "user", None)
    client = scope.get("client")
    services = getattr(scope["app"].state, "services", None) if "app" in scope else None
    prefix = getattr(getattr(services, "settings", None), "ipv6_prefix_length", DEFAULT_IPV6_PREFIX)
    return Caller(identity=identity, address=address_key(client[0], prefix) if client else None)


def api_error(refusal: Refusal) -> ApiError:
    """A refusal as an HTTP answer: 503 ``OVERLOADED`` or 429 ``RATE_LIMITED``, with ``Retry-After``."""
    return ApiError(refusal.http_status, refusal.message, refusal.code.value, refusal.wire_details,
                    headers={"Retry-After": str(refusal.retry_after_s)})


async def refused_handler(request: Request, exc: Exception) -> JSONResponse:
    """The app's handler for :class:`~server.pipeline.admission.Refused` raised while serving a request."""
    assert isinstance(exc, Refused)
    r = exc.refusal
    return error_response(r.http_status, r.code.value, r.message, r.wire_details,
                          headers={"Retry-After": str(r.retry_after_s)})


# ---------------------------------------------------------------- ASGI

_UPLOAD_TYPES = ("multipart/form-data", "audio/", "video/", "application/octet-stream")


def _is_upload(scope: Scope) -> bool:
    if scope.get("method") not in ("POST", "PUT"):
        return False
    headers = dict(scope.get("headers") or [])
    ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
    has_body = headers.get(b"content-length", b"0") not in (b"0", b"") or b"transfer-encoding" in headers
    return has_body and ctype.startswith(_UPLOAD_TYPES)


class AdmissionMiddleware(ConnectionMiddleware):
    """Records the caller of every request and WebSocket (after authentication) in :data:`CALLER`, and bounds
    the audio uploads being received at once: their bodies hold a connection and a file open each."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = CALLER.set(caller_of(scope))
        try:
            services = getattr(scope["app"].state, "services", None) if "app" in scope else None
            admission: Admission | None = getattr(services, "admission", None)
            if scope["type"] == "http" and admission is not None and _is_upload(scope):
                await self._upload(admission, scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            CALLER.reset(token)

    async def _upload(self, admission: Admission, scope: Scope, receive: Receive, send: Send) -> None:
        limit = admission.settings.max_concurrent_uploads
        if limit and admission.uploads_in_flight >= limit:
            admission.refused["uploads"] += 1
            response = error_response(429, ErrorCode.RATE_LIMITED.value,
                                      f"{limit} uploads are being received already; try again shortly",
                                      {"reason": "uploads", "retry_after_s": UPLOAD_RETRY_S, "limit": limit},
                                      headers={"Retry-After": str(UPLOAD_RETRY_S)})
            await response(scope, receive, send)
            return
        admission.uploads_in_flight += 1
        receiving = True

        def done() -> None:
            nonlocal receiving
            if receiving:
                receiving = False
                admission.uploads_in_flight -= 1

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                done()  # the body is in: what follows (probing, transcribing) is no longer receiving
            return message

        try:
            await self.app(scope, counted_receive, send)
        finally:
            done()
