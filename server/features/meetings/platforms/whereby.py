"""Whereby (https://docs.whereby.com/reference/whereby-rest-api-reference): rooms through its REST API.

``POST {api}/meetings`` with a Bearer API key creates a room for a time window and answers its ``meetingId``,
``roomUrl`` and, when asked for in ``fields``, ``hostRoomUrl`` and ``viewerRoomUrl``; ``DELETE
{api}/meetings/{meetingId}`` removes it (204; 404 when it is already gone, which is fine). With the room's
recording setting on, the room records to Whereby's cloud (``recording.type = "cloud"``) and starts recording
when the second participant arrives. Finished recordings are listed by ``GET {api}/recordings?roomName=...``
(``results``, each with its ``recordingId`` and ``state``) and fetched through the short-lived URL of ``GET
{api}/recordings/{recordingId}/access-link`` (``accessLink``).
"""

from __future__ import annotations

from typing import Any

import httpx

from server.features.meetings.platforms.base import PlatformError, PlatformRoom, Recording, RoomRequest

DEFAULT_API = "https://api.whereby.dev/v1"


class WherebyPlatform:
    name = "whereby"

    def __init__(self, api_url: str | None, api_key: str | None, *, timeout: float = 10.0) -> None:
        self.api = (api_url or DEFAULT_API).rstrip("/")
        self.key = api_key
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        if not self.key:
            raise PlatformError("Whereby is not configured on this server (VOXLANE_WHEREBY_API_KEY)", 409)
        return {"Authorization": f"Bearer {self.key}"}

    async def create_room(self, request: RoomRequest) -> PlatformRoom:
        body: dict[str, Any] = {
            "endDate": request.end_date, "isLocked": request.locked, "roomNamePrefix": "voxlane",
            "roomNamePattern": "uuid", "roomMode": "normal", "fields": ["hostRoomUrl", "viewerRoomUrl"]}
        if request.record:
            body["recording"] = {"type": "cloud", "destination": {"provider": "whereby"},
                                 "startTrigger": "automatic-2nd-participant"}
        data = await self._call("POST", "/meetings", body)
        try:
            return PlatformRoom(room_url=str(data["roomUrl"]), host_room_url=str(data.get("hostRoomUrl")
                                                                                  or data["roomUrl"]),
                                viewer_room_url=data.get("viewerRoomUrl"), external_id=str(data["meetingId"]),
                                meta={"platform_room_name": data.get("roomName")})
        except (KeyError, TypeError):
            raise PlatformError("Whereby answered a meeting without its meetingId or roomUrl") from None

    async def delete_room(self, external_id: str) -> None:
        await self._call("DELETE", f"/meetings/{external_id}", None, missing_ok=True)

    async def recordings(self, external_id: str, meta: dict[str, Any]) -> list[Recording]:
        name = meta.get("platform_room_name")
        if not isinstance(name, str) or not name:
            return []
        listing = await self._call("GET", "/recordings", None, params={"roomName": name})
        found = []
        for item in listing.get("results") or []:
            if not isinstance(item, dict) or item.get("state") not in (None, "completed"):
                continue
            rid = str(item.get("recordingId") or "")
            link = await self._call("GET", f"/recordings/{rid}/access-link", None) if rid else {}
            if isinstance(link.get("accessLink"), str):
                found.append(Recording(id=rid, url=link["accessLink"]))
        return found

    async def _call(self, method: str, path: str, body: dict[str, Any] | None, missing_ok: bool = False,
                    params: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                r = await client.request(method, self.api + path, json=body, params=params, headers=self._headers())
        except httpx.HTTPError as exc:
            raise PlatformError(f"Whereby could not be reached: {exc}") from None
        if r.status_code == 404 and missing_ok:
            return {}
        if r.status_code >= 300:
            raise PlatformError(f"Whereby answered {r.status_code}: {r.text[:200]}")
        if r.status_code == 204 or not r.content:
            return {}
        try:
            data = r.json()
        except ValueError:
            raise PlatformError("Whereby answered something that is not JSON") from None
        if not isinstance(data, dict):
            raise PlatformError("Whereby answered something that is not a JSON object")
        return data
