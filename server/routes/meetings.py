"""``/v1/meetings``: meetings held in rooms (the API reference's Meetings), and the built-in room page.

``join`` is where a participant gets what publishing needs. It takes either a room URL's ``key`` (the link is
the capability, as on Whereby: no account needed) or, without one, the caller's own token, which must see the
meeting and may publish (a read-only token cannot join).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from server.features.meetings.lifecycle import end_meeting, join_token, start_meeting
from server.features.meetings.platforms import PlatformError
from server.http.auth import WRITE, AuthError, principal
from server.http.errors import ApiError
from server.http.openapi import Param, document, page_params
from server.http.visibility import visible_meeting, visible_room
from server.routes.common import json_body, page_of, paging, public_base, rest_of, services
from server.routes.meeting_schemas import JoinBody, Joined, Meeting, MeetingCreate, MeetingPage
from server.routes.system import WEB_CLIENT

TAG = "meetings"
MAX_AHEAD = timedelta(days=366)
MAX_LENGTH = timedelta(days=31)


def meeting_out(row: dict[str, Any]) -> dict[str, Any]:
    urls = row.get("urls") or {}
    return Meeting(id=row["id"], transcript_id=row["id"], room_id=row.get("room_id"),
                   room_name=(row.get("meta") or {}).get("room_name"), platform=row["platform"], status=row["status"],
                   room_url=urls.get("room_url") or "", host_room_url=urls.get("host_room_url") or "",
                   viewer_room_url=urls.get("viewer_room_url"), start_date=row["start_date"],
                   end_date=row["end_date"], ended_at=row.get("ended_at"),
                   created_at=row["created_at"]).model_dump(mode="json")


async def begin_meeting(request: Request, room: dict[str, Any], name: str | None, start: datetime | None,
                        end: datetime | None) -> Response:
    """A meeting of ``room`` (visible to the caller), answered 201 with its URLs."""
    now = datetime.now(UTC)
    if start is not None and abs(start - now) > MAX_AHEAD:
        raise ApiError(422, f"start_date must be within {MAX_AHEAD.days} days of now")
    if end is not None and not (start or now) < end <= (start or now) + MAX_LENGTH:
        raise ApiError(422, f"end_date must be after the start (and now), at most {MAX_LENGTH.days} days later")
    if end is not None and end <= now:
        raise ApiError(422, "end_date is in the past")
    try:
        meeting = await start_meeting(services(request), rest_of(request).meetings, room, base_url=public_base(request),
                                      name=name, start=start, end=end)
    except PlatformError as exc:
        raise ApiError(exc.status, exc.message, "PLATFORM_ERROR", {"platform": room["platform"]}) from None
    return JSONResponse(meeting_out(meeting), status_code=201)


async def list_meetings(request: Request) -> Response:
    """List your meetings, newest first."""
    page, size = paging(request)
    status = request.query_params.get("status")
    if status not in (None, "active", "ended"):
        raise ApiError(422, "status: expected 'active' or 'ended'")
    room_id = request.query_params.get("room_id")
    if room_id is not None and len(room_id) > 100:
        raise ApiError(422, "room_id: at most 100 characters")
    rows, total = await services(request).store.list_meetings(owner=principal(request).owner_filter, page=page,
                                                               size=size, status=status, room_id=room_id)
    return JSONResponse(page_of([meeting_out(r) for r in rows], total, page, size))


async def create_meeting(request: Request) -> Response:
    """Start a meeting in a room."""
    body = await json_body(request, MeetingCreate)
    room = await visible_room(request, body.room_id)
    return await begin_meeting(request, room, body.name, body.start_date, body.end_date)


async def get_meeting(request: Request) -> Response:
    """Read a meeting."""
    return JSONResponse(meeting_out(await visible_meeting(request)))


async def join_meeting(request: Request) -> Response:
    """Join a meeting: a short-lived token for its live endpoints, and your participant id."""
    mid = request.path_params["meeting_id"]
    body = await json_body(request, JoinBody)
    store = services(request).store
    tokens = rest_of(request).meetings
    who = principal(request)
    if body.key is not None:
        meeting = await store.get_meeting(mid) if len(mid) <= 100 else None
        role = tokens.role_of(mid, body.key) if meeting is not None else None
        if meeting is None or role is None:  # a wrong key reveals nothing about the meeting
            raise ApiError(404, "meeting not found", "MEETING_NOT_FOUND", {"meeting_id": mid})
    else:
        if who.via == "anonymous" and not who.scopes:
            raise AuthError("joining without a room URL's key needs 'Authorization: Bearer <token>'")
        if who.meeting is not None:
            raise ApiError(403, "a meeting token cannot join again: join with the room URL's key",
                           "INSUFFICIENT_SCOPE")
        meeting = await visible_meeting(request)
        if not who.has(WRITE):
            raise ApiError(403, f"joining to publish needs the {WRITE!r} scope", "INSUFFICIENT_SCOPE",
                           {"required": WRITE})
        role = "host"
    if meeting["status"] != "active":
        raise ApiError(409, "this meeting has ended", "MEETING_ENDED", {"meeting_id": mid})
    room = await store.get_room(meeting["room_id"]) if meeting.get("room_id") else None
    if role == "participant" and room is not None and (room.get("settings") or {}).get("is_locked"):
        raise ApiError(403, "this room is locked: only its host may join", "ROOM_LOCKED")
    ttl = min(services(request).settings.meeting_token_ttl, services(request).settings.jwt_max_lifetime)
    token, participant, expires = join_token(tokens, meeting, role=role, name=body.name, ttl=ttl)
    base = public_base(request)
    ws_base = "ws" + base.removeprefix("http")
    return JSONResponse(Joined(
        meeting_id=mid, transcript_id=mid, participant_id=participant["id"], name=body.name, role=role, token=token,
        expires_at=datetime.fromtimestamp(expires, UTC), websocket_url=f"{ws_base}/v1/transcripts_websocket/{mid}",
        webrtc_offer_url=f"{base}/v1/transcripts_webrtc/{mid}/offer",
        webrtc_answer_url=f"{base}/v1/transcripts_webrtc/{mid}/answer").model_dump(mode="json"))


async def end_meeting_route(request: Request) -> Response:
    """End a meeting: every participant stream finishes and its transcript completes."""
    meeting = await visible_meeting(request)
    webrtc = getattr(request.app.state, "webrtc", None)
    ended = await end_meeting(services(request), list(webrtc.sessions.values()) if webrtc is not None else [], meeting)
    return JSONResponse(meeting_out(ended))


async def room_page(request: Request) -> Response:
    """The built-in meeting room (web client)."""
    return FileResponse(str(WEB_CLIENT / "room.html"), media_type="text/html")


routes = [
    Route("/v1/meetings/", list_meetings, methods=["GET"]),
    Route("/v1/meetings/", create_meeting, methods=["POST"]),
    Route("/v1/meetings", list_meetings, methods=["GET"]),
    Route("/v1/meetings", create_meeting, methods=["POST"]),
    Route("/v1/meetings/{meeting_id}", get_meeting, methods=["GET"]),
    Route("/v1/meetings/{meeting_id}/join", join_meeting, methods=["POST"]),
    Route("/v1/meetings/{meeting_id}/end", end_meeting_route, methods=["POST"]),
    Route("/room", room_page, methods=["GET"]),
]

_MEETING = (Meeting, "the meeting and its URLs")
document("GET", "/v1/meetings/", "List meetings", TAG, responses={200: (MeetingPage, "a page of your meetings")},
         query=[*page_params(), Param("status", "only active or ended ones", enum=("active", "ended")),
                Param("room_id", "only this room's")])
document("POST", "/v1/meetings/", "Create a meeting", TAG, body=MeetingCreate,
         responses={201: _MEETING, 502: (None, "the room's video platform failed")})
document("GET", "/v1/meetings/{meeting_id}", "Read a meeting", TAG, responses={200: _MEETING})
document("POST", "/v1/meetings/{meeting_id}/join", "Join a meeting", TAG, body=JoinBody,
         responses={200: (Joined, "a token scoped to this meeting, its endpoints and your participant id")})
document("POST", "/v1/meetings/{meeting_id}/end", "End a meeting", TAG, responses={200: _MEETING})
