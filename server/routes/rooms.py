"""``/v1/rooms``: persistent meeting rooms (the API reference's Rooms), and a meeting started in one."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.http.auth import principal
from server.http.errors import ApiError
from server.http.openapi import document, page_params
from server.http.visibility import visible_project, visible_room
from server.routes.common import json_body, owned_page, patch_body, services
from server.routes.meeting_schemas import (
    Meeting,
    Room,
    RoomCreate,
    RoomMeetingCreate,
    RoomPage,
    RoomSettings,
    RoomUpdate,
)
from server.routes.meetings import begin_meeting

TAG = "rooms"
_SETTING_NAMES = tuple(RoomSettings.model_fields)


def room_out(row: dict[str, Any]) -> dict[str, Any]:
    settings = RoomSettings.model_validate({k: v for k, v in (row.get("settings") or {}).items()
                                            if k in _SETTING_NAMES})
    return Room(id=row["id"], name=row["name"], platform=row["platform"], project_id=row.get("project_id"),
                created_at=row["created_at"], updated_at=row["updated_at"],
                **settings.model_dump()).model_dump(mode="json")


async def list_rooms(request: Request) -> Response:
    """List your rooms, newest first."""
    return await owned_page(request, services(request).store.list_rooms, room_out)


async def create_room(request: Request) -> Response:
    """Create a persistent meeting room."""
    body = await json_body(request, RoomCreate)
    if body.project_id is not None:
        await visible_project(request, body.project_id)  # its webhooks fire: it must be the caller's
    settings = RoomSettings.model_validate(body.model_dump(include=set(_SETTING_NAMES))).model_dump()
    row = await services(request).store.create_room(name=body.name, owner=principal(request).user,
                                                    project_id=body.project_id, platform=body.platform,
                                                    settings=settings)
    return JSONResponse(room_out(row), status_code=201)


async def get_room(request: Request) -> Response:
    """Read a room."""
    return JSONResponse(room_out(await visible_room(request)))


async def update_room(request: Request) -> Response:
    """Change a room's settings; meetings already started keep theirs."""
    row = await visible_room(request)
    given = await patch_body(request, RoomUpdate, "name", "platform")
    fields: dict[str, Any] = {k: given[k] for k in ("name", "platform", "project_id") if k in given}
    if fields.get("project_id") is not None:
        await visible_project(request, fields["project_id"])
    changed = {k: v for k, v in given.items() if k in _SETTING_NAMES and v is not None}
    if changed or "language" in given:
        merged = {**(row.get("settings") or {}), **changed}
        if "language" in given:
            merged["language"] = given["language"]
        fields["settings"] = RoomSettings.model_validate(
            {k: v for k, v in merged.items() if k in _SETTING_NAMES}).model_dump()
    updated = await services(request).store.update_room(row["id"], **fields) if fields else row
    if updated is None:
        raise ApiError(404, "room not found", "ROOM_NOT_FOUND", {"room_id": row["id"]})
    return JSONResponse(room_out(updated))


async def start_room_meeting(request: Request) -> Response:
    """Start a meeting in this room (``POST /v1/meetings/`` with this room)."""
    room = await visible_room(request)
    body = await json_body(request, RoomMeetingCreate)
    return await begin_meeting(request, room, body.name, body.start_date, body.end_date)


routes = [
    Route("/v1/rooms/", list_rooms, methods=["GET"]),
    Route("/v1/rooms/", create_room, methods=["POST"]),
    Route("/v1/rooms", list_rooms, methods=["GET"]),
    Route("/v1/rooms", create_room, methods=["POST"]),
    Route("/v1/rooms/{room_id}", get_room, methods=["GET"]),
    Route("/v1/rooms/{room_id}", update_room, methods=["PATCH"]),
    Route("/v1/rooms/{room_id}/meeting", start_room_meeting, methods=["POST"]),
]

document("GET", "/v1/rooms/", "List rooms", TAG, responses={200: (RoomPage, "a page of your rooms, newest first")},
         query=page_params())
document("POST", "/v1/rooms/", "Create a room", TAG, body=RoomCreate, responses={201: (Room, "the room")})
document("GET", "/v1/rooms/{room_id}", "Read a room", TAG, responses={200: (Room, "the room")})
document("PATCH", "/v1/rooms/{room_id}", "Update room settings", TAG, body=RoomUpdate,
         responses={200: (Room, "the updated room")})
document("POST", "/v1/rooms/{room_id}/meeting", "Start a meeting in a room", TAG, body=RoomMeetingCreate,
         responses={201: (Meeting, "the meeting and its URLs"), 502: (None, "the room's video platform failed")})
