"""The one visibility rule for stored things: a caller sees what it owns (or everything, with the admin scope,
or in public mode what has no owner), and anything else is answered exactly like something that does not exist.

The auth middleware already loaded the transcript of a ``/v1/transcripts*/{id}`` path to check it; handlers
take that row from here instead of reading it again.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection

from server.http.auth import principal
from server.http.errors import ApiError

TRANSCRIPT_STATE = "transcript"  # the request-state key the middleware leaves the checked row under


def remember_transcript(scope: dict[str, Any], row: dict[str, Any]) -> None:
    scope.setdefault("state", {})[TRANSCRIPT_STATE] = row


async def find_visible_transcript(conn: HTTPConnection, transcript_id: str) -> dict[str, Any] | None:
    """The transcript if the caller may see it, else None."""
    checked = conn.scope.get("state", {}).get(TRANSCRIPT_STATE)
    row = checked if checked is not None and checked.get("id") == transcript_id else None
    if row is None and transcript_id:
        row = await conn.app.state.services.store.get_transcript(transcript_id)
    if row is None or not principal(conn).can_see(row.get("owner")):
        return None
    return row


async def visible_transcript(conn: HTTPConnection, transcript_id: str | None = None, *,
                             missing: str = "transcript not found", code: str = "TRANSCRIPT_NOT_FOUND"
                             ) -> dict[str, Any]:
    """The transcript (by default the path's) if the caller may see it; 404 otherwise."""
    tid = conn.path_params["transcript_id"] if transcript_id is None else transcript_id
    row = await find_visible_transcript(conn, tid)
    if row is None:
        raise ApiError(404, missing, code, {"transcript_id": tid} if tid else None)
    return row


async def _visible(conn: HTTPConnection, kind: str, row: dict[str, Any] | None, key: str) -> dict[str, Any]:
    """``row`` (a project, room or meeting) if the caller may see it; 404 otherwise, the same for one that is not
    there and one of someone else's."""
    if row is None or not principal(conn).can_see(row.get("owner")):
        details = {f"{kind}_id": key} if kind != "project" else None
        raise ApiError(404, f"{kind} not found", f"{kind.upper()}_NOT_FOUND", details)
    return row


async def visible_project(conn: HTTPConnection, project_id: str | None = None) -> dict[str, Any]:
    """The project (by default the path's) if the caller may see it; 404 otherwise."""
    pid = conn.path_params["project_id"] if project_id is None else project_id
    return await _visible(conn, "project", await conn.app.state.services.store.get_project(pid), pid)


async def visible_room(conn: HTTPConnection, room_id: str | None = None) -> dict[str, Any]:
    """The room (by default the path's) if the caller may see it; 404 otherwise."""
    rid = conn.path_params["room_id"] if room_id is None else room_id
    return await _visible(conn, "room", await conn.app.state.services.store.get_room(rid), rid)


async def visible_meeting(conn: HTTPConnection, meeting_id: str | None = None) -> dict[str, Any]:
    """The meeting (by default the path's) if the caller may see it; 404 otherwise."""
    mid = conn.path_params["meeting_id"] if meeting_id is None else meeting_id
    return await _visible(conn, "meeting", await conn.app.state.services.store.get_meeting(mid), mid)
