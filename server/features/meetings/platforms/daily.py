"""Daily (https://docs.daily.co/reference/rest-api): rooms through its REST API.

``POST {api}/rooms`` with a Bearer API key creates a room (``privacy``, ``properties.exp``, cloud recording with
``properties.enable_recording = "cloud"``) and answers its ``name`` and ``url``; the host joins with an owner
meeting token (``POST {api}/meeting-tokens`` with ``properties.is_owner``) appended as ``?t=``. ``DELETE
{api}/rooms/{name}`` removes the room.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from server.features.meetings.platforms.base import PlatformError, PlatformRoom, Recording, RoomRequest

DEFAULT_API = "https://api.daily.co/v1"


class DailyPlatform:
    name = "daily"

    def __init__(self, api_url: str | None, api_key: str | None, *, timeout: float = 10.0) -> None:
        self.api = (api_url or DEFAULT_API).rstrip("/")
        self.key = api_key
        self.timeout = timeout

    async def create_room(self, request: RoomRequest) -> PlatformRoom:
        exp = int(datetime.fromisoformat(request.end_date.replace("Z", "+00:00")).timestamp())
        props: dict[str, Any] = {"exp": exp}
        if request.record:
            props["enable_recording"] = "cloud"
        room = await self._call("POST", "/rooms", {"privacy": "private" if request.locked else "public",
                                                   "properties": props})
        try:
            name, url = str(room["name"]), str(room["url"])
        except (KeyError, TypeError):
            raise PlatformError("Daily answered a room without its name or url") from None
        token = await self._call("POST", "/meeting-tokens", {"properties": {"room_name": name, "is_owner": True,
                                                                             "exp": exp}})
        host = f"{url}?t={token['token']}" if isinstance(token.get("token"), str) else url
        return PlatformRoom(room_url=url, host_room_url=host, viewer_room_url=None, external_id=name,
                            meta={"room_id": room.get("id")})

    async def delete_room(self, external_id: str) -> None:
        await self._call("DELETE", f"/rooms/{external_id}", None, missing_ok=True)

    async def recordings(self, external_id: str, meta: dict[str, Any]) -> list[Recording]:
        """``GET {api}/recordings?room_name=`` (``data``, each ``id`` and ``status``), then ``GET
        {api}/recordings/{id}/access-link`` (``download_link``)."""
        listing = await self._call("GET", f"/recordings?room_name={external_id}", None)
        found = []
        for item in listing.get("data") or []:
            if isinstance(item, dict) and item.get("status") == "finished" and item.get("id"):
                link = await self._call("GET", f"/recordings/{item['id']}/access-link", None)
                if isinstance(link.get("download_link"), str):
                    found.append(Recording(id=str(item["id"]), url=link["download_link"]))
        return found

    async def _call(self, method: str, path: str, body: dict[str, Any] | None, missing_ok: bool = False
                    ) -> dict[str, Any]:
        if not self.key:
            raise PlatformError("Daily is not configured on this server (VOXLANE_DAILY_API_KEY)", 409)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                r = await client.request(method, self.api + path, json=body,
                                         headers={"Authorization": f"Bearer {self.key}"})
        except httpx.HTTPError as exc:
            raise PlatformError(f"Daily could not be reached: {exc}") from None
        if r.status_code == 404 and missing_ok:
            return {}
        if r.status_code >= 300:
            raise PlatformError(f"Daily answered {r.status_code}: {r.text[:200]}")
        try:
            data = r.json() if r.content else {}
        except ValueError:
            raise PlatformError("Daily answered something that is not JSON") from None
        if not isinstance(data, dict):
            raise PlatformError("Daily answered something that is not a JSON object")
        return data
