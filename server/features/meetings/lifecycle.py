"""A meeting's life: started in a room (its transcript, its platform room, its URLs), joined, ended.

The meeting's transcript is an ordinary transcript: each participant's stream goes through the live pipeline
(admission, limits, recordings, storage) exactly as any participant stream does. A room with a project makes each
meeting a conversation of that project, so the project's webhooks fire when the transcript completes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

from server.features.meetings.platforms import PlatformError, RoomRequest, platform_for
from server.features.meetings.recordings import recording_job
from server.http.meeting_tokens import MeetingGrant, MeetingTokens
from server.pipeline import lifecycle
from server.storage.base import isoformat

if TYPE_CHECKING:
    from server.jobs.queue import JobQueue
    from server.pipeline.transcripts import LiveRegistry
    from server.settings import Settings


class MeetingParts(lifecycle.Completing, Protocol):
    """What starting and ending a meeting take: its transcript's rows and completion, the platforms' settings,
    the queue (its recording's job), and the live streams this node carries (ending it finishes them)."""

    settings: Settings
    jobs: JobQueue
    live: LiveRegistry


class Peer(Protocol):
    """A browser's stream into the meeting on this node, ended from the server side."""

    @property
    def transcript_id(self) -> str | None: ...

    async def end(self, reason: str) -> Any: ...

log = logging.getLogger("voxlane.meetings")
DEFAULT_LENGTH = timedelta(hours=4)
"""A meeting's planned end when the request gives none (a platform room expires then)."""
ROOM_PAGE = "/room"


def room_urls(tokens: MeetingTokens, base: str, meeting_id: str, *, viewer: bool) -> dict[str, str | None]:
    """The built-in room page's URLs: each carries the key of what its holder may do in this meeting."""
    def url(role: str) -> str:
        return f"{base}{ROOM_PAGE}?" + urlencode({"meeting": meeting_id, "key": tokens.room_key(meeting_id, role)})

    return {"room_url": url("participant"), "host_room_url": url("host"),
            "viewer_room_url": url("viewer") if viewer else None}


async def start_meeting(services: MeetingParts, tokens: MeetingTokens, room: dict[str, Any], *, base_url: str,
                        name: str | None, start: datetime | None, end: datetime | None) -> dict[str, Any]:
    """A new meeting of ``room``: its transcript (and the project's conversation), then its platform room; a
    platform that refuses leaves nothing behind (PlatformError)."""
    store = services.store
    settings = room.get("settings") or {}
    begins = (start or datetime.now(UTC)).astimezone(UTC)
    ends = (end or begins + DEFAULT_LENGTH).astimezone(UTC)
    title = name or f"{room['name']} {begins:%Y-%m-%d %H:%M}"
    meta = {"meeting": {"room_id": room["id"], "platform": room["platform"]},
            "key_terms": list(settings.get("key_terms") or []),
            "auto_summary": bool(settings.get("auto_summary", True))}
    transcript = await store.create_transcript(name=title, source_language=settings.get("language"),
                                               owner=room.get("owner"), meta=meta)
    mid = transcript["id"]
    builtin = room_urls(tokens, base_url, mid, viewer=bool(settings.get("is_shared")))
    request = RoomRequest(meeting_id=mid, room_name=room["name"], start_date=isoformat(begins),
                          end_date=isoformat(ends), record=bool(settings.get("recording", True)),
                          locked=bool(settings.get("is_locked")), builtin_urls=builtin)
    try:
        made = await platform_for(room["platform"], services.settings).create_room(request)
    except PlatformError:
        await store.delete_transcript(mid)
        raise
    urls = {"room_url": made.room_url, "host_room_url": made.host_room_url, "viewer_room_url": made.viewer_room_url}
    async with store.transaction():
        meeting = await store.create_meeting(meeting_id=mid, room_id=room["id"], owner=room.get("owner"),
                                             platform=room["platform"], start_date=isoformat(begins),
                                             end_date=isoformat(ends), urls=urls, external_id=made.external_id,
                                             meta={**made.meta, "room_name": room["name"],
                                                   "recording": request.record,
                                                   "diarization": bool(settings.get("diarization"))})
        if room.get("project_id") and await store.get_project(room["project_id"]) is not None:
            await store.create_conversation(transcript_id=mid, project_id=room["project_id"], name=title,
                                            email=None, tags=["meeting"], source="meeting")
    return meeting


def join_token(tokens: MeetingTokens, meeting: dict[str, Any], *, role: str, name: str, ttl: int
               ) -> tuple[str, dict[str, Any], int]:
    """(token, participant, expiry) for one participant joining: a fresh participant id each time, so two people
    with one name are two streams."""
    participant = {"id": f"p-{uuid.uuid4().hex[:12]}", "name": name, "is_host": role == "host",
                   "platform": meeting["platform"]}
    expires = int(time.time()) + ttl
    grant = MeetingGrant(meeting_id=meeting["id"], owner=meeting.get("owner"), role=role, participant=participant,
                         expires=expires)
    return tokens.mint(grant), participant, expires


async def end_meeting(services: MeetingParts, peers: Sequence[Peer], meeting: dict[str, Any]) -> dict[str, Any]:
    """Finish every participant stream this node carries (finals stored, ``completed`` sent to each), complete
    the transcript, and delete the platform's room. ``peers``: this node's WebRTC sessions (those of the meeting
are ended). Ending an ended meeting changes nothing."""
    store = services.store
    ended = await store.end_meeting(meeting["id"])
    if ended is None:
        return await store.get_meeting(meeting["id"]) or meeting
    mid = meeting["id"]
    await asyncio.gather(*(s.end("the meeting ended") for s in peers if s.transcript_id == mid),
                         return_exceptions=True)
    live = services.live.find(mid)
    if live is not None:
        await asyncio.gather(*(p.finish() for p in list(live.publishers)), return_exceptions=True)
    row = await store.get_transcript(mid)
    recorded_elsewhere = ended["platform"] != "voxlane" and (ended.get("meta") or {}).get("recording")
    if recorded_elsewhere and row is not None and row["status"] == "created":  # the platform's recording is its audio
        await services.jobs.stage([recording_job(mid)])
    elif row is not None and row["status"] in ("created", "processing"):  # nobody spoke: nothing else completes it
        await lifecycle.complete(services, mid, duration=float(row.get("duration") or 0.0), message="meeting ended")
    if await store.get_conversation(mid) is not None:
        await store.update_conversation(mid, finished_at=isoformat(datetime.now(UTC)))
    if ended.get("external_id"):
        try:
            await platform_for(ended["platform"], services.settings).delete_room(ended["external_id"])
        except PlatformError as exc:  # the platform's room expires at its end date anyway
            log.warning("meeting %s: the %s room was not deleted: %s", mid, ended["platform"], exc.message)
    return ended
