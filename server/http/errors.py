"""One error shape for every HTTP route: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from server.storage.outage import RETRY_AFTER_S, database_unavailable

log = logging.getLogger("voxlane.http")

_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
          409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE", 422: "VALIDATION_ERROR",
          429: "RATE_LIMITED", 500: "INTERNAL_ERROR", 503: "UNAVAILABLE"}


class ApiError(HTTPException):
    def __init__(self, status: int, message: str, code: str | None = None, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message, headers)
        self.code = code or _CODES.get(status, "ERROR")
        self.message = message
        self.details = details or {}


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details or {}}},
                        status_code=status, headers=headers)


async def http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)
    return error_response(exc.status_code, _CODES.get(exc.status_code, "ERROR"), str(exc.detail), None,
                          exc.headers)


async def unhandled_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    status, body, headers = server_error(exc, request.method, request.url.path)
    return JSONResponse(body, status_code=status, headers=headers)


def server_error(exc: BaseException, method: str | None, path: str | None
                 ) -> tuple[int, dict[str, Any], dict[str, str]]:
    """What an exception no route answered becomes (logged here): 503 with ``Retry-After`` while the database is
    away (an outage, not a bug: the client tries again), else 500."""
    if database_unavailable(exc):
        log.warning("%s %s: the database is not reachable (%s)", method, path, type(exc).__name__)
        return 503, {"error": {"code": "DATABASE_UNAVAILABLE", "message": "the database is not reachable right now;"
                               " try again shortly", "details": {"retry_after_s": RETRY_AFTER_S}}}, \
            {"Retry-After": str(RETRY_AFTER_S)}
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return 500, {"error": {"code": "INTERNAL_ERROR", "message": "internal server error", "details": {}}}, {}
