"""Log output: text for a terminal, or JSON lines for a log pipeline, each line carrying its request's id.

:class:`server.http.middleware.RequestIdMiddleware` sets :data:`REQUEST_ID` for every HTTP request and WebSocket;
a filter on the root handler copies it into every record, so a line logged anywhere while a request is served
(a route, the store, uvicorn's access line) can be joined with the ``X-Request-ID`` the client saw.
"""

from __future__ import annotations

import contextvars
import logging

from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("voxlane_request_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request) to every record that passes the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                         rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                         json_ensure_ascii=False)


def configure_logging(level: str, fmt: str = "text") -> None:
    """One handler on the root logger; in json mode uvicorn's loggers are left to propagate to it (the caller
    passes ``log_config=None`` to uvicorn) so its lines are JSON too."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
