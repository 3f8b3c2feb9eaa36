"""Scopes, and the scope each route needs: one table of rules, read by the middleware and by the docs.

A route's scope follows from its method and path (:func:`required_scope`), so a new route is covered the day
it is added: exports need ``export`` (not ``projects:admin``), a project's reports are read with ``export`` and
started with ``projects:admin``, the unredacted text needs its own scope, and anything else reads with
``transcripts:read`` and writes with ``transcripts:write``.
"""

from __future__ import annotations

import re

READ = "transcripts:read"
WRITE = "transcripts:write"
PROJECTS_ADMIN = "projects:admin"
EXPORT = "export"
UNREDACTED = "transcripts:unredacted"  # the text as spoken: granted by name only, never anonymous or by default
SCOPES = (READ, WRITE, PROJECTS_ADMIN, EXPORT, UNREDACTED)
DEFAULT_JWT_SCOPES = (READ, WRITE, EXPORT)
"""Granted to a JWT that names none of voxlane's scopes (an SSO login token, say)."""
AUTHENTICATED = ""

_TRANSCRIPT_PATH = re.compile(r"^/v1/transcripts(?:_[a-z]+)?/(?P<id>[^/]+)")
_EXPORT_PATH = re.compile(r"^/api/projects/[^/]+/(?:transcripts|export\.(?:csv|xlsx))$"
                          r"|^/api/conversations/[^/]+/transcript$|^/v1/transcripts/[^/]+/download/[a-z_]+$")
"""Exports need the ``export`` scope (not ``projects:admin``): a project's zip and tables, a conversation's text,
and the meeting-bot downloads of a transcript."""
_UNREDACTED_PATH = re.compile(r"^/v1/transcripts/[^/]+/unredacted$")
_REPORT_PATH = re.compile(r"^/api/projects/[^/]+/reports(?:/[^/]+)?$")  # read: export; start, delete: admin
MEETING_JOIN = re.compile(r"^/v1/meetings/[^/]+/join$")
"""Open at the middleware: a room URL's key is the capability (the handler checks it, or the caller's token)."""


def is_open(path: str) -> bool:
    """Routes that never need a token: health, the participant API, and everything outside /v1 and /api."""
    if path == "/health" or path == "/api/participant" or path.startswith("/api/participant/"):
        return True
    return not (path.startswith(("/v1/", "/api/")) or path in ("/v1", "/api"))


def required_scope(method: str, path: str, websocket: bool = False) -> str | None:
    """The scope a route needs (None: open to anyone, :data:`AUTHENTICATED`: any valid token)."""
    if is_open(path) or MEETING_JOIN.match(path):
        return None
    if path in ("/v1/openapi.json", "/v1/protocol.json"):
        return AUTHENTICATED
    if _UNREDACTED_PATH.match(path):
        return UNREDACTED
    if _EXPORT_PATH.match(path):
        return EXPORT
    if _REPORT_PATH.match(path):
        return EXPORT if method in ("GET", "HEAD") else PROJECTS_ADMIN
    if path == "/api/projects" or path.startswith("/api/projects/"):
        return PROJECTS_ADMIN
    if "/export" in path:
        return EXPORT
    if path in ("/v1/realtime", "/v1/listen"):  # a Realtime or Deepgram live session exists to publish audio
        return WRITE
    if websocket or method in ("GET", "HEAD", "OPTIONS"):
        return READ
    return WRITE


def transcript_id_in(path: str) -> str | None:
    m = _TRANSCRIPT_PATH.match(path)
    return m.group("id") if m else None
