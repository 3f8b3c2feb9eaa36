"""The request and response bodies of ``/v1/rooms`` and ``/v1/meetings`` (the API reference's Rooms and
Meetings), each field bounded."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from protocol.messages import KeyTerms
from server.features.meetings.platforms import PLATFORMS
from server.http.openapi import Page

PlatformName = Literal[PLATFORMS]  # type: ignore[valid-type]


class RoomSettings(BaseModel):
    """What every meeting of the room starts with."""

    model_config = ConfigDict(extra="forbid")
    language: str | None = Field(default=None, max_length=16, description="the meetings' language (None: detect)")
    diarization: bool = Field(default=False, description="label several voices on one participant's stream")
    recording: bool = Field(default=True, description="keep the meetings' audio (an external platform records to"
                                                      " its cloud, and the recording is transcribed when ready)")
    auto_summary: bool = Field(default=True, description="summarize each meeting once its transcript completes")
    is_locked: bool = Field(default=False, description="only the host (host URL or the owner's token) may join")
    is_shared: bool = Field(default=False, description="meetings get a viewer URL: live captions, read only")
    key_terms: KeyTerms = Field(default_factory=list)  # the meetings' streams are steered towards them


class RoomCreate(RoomSettings):
    name: str = Field(min_length=1, max_length=200)
    platform: PlatformName = "voxlane"
    project_id: str | None = Field(default=None, min_length=1, max_length=100,
                                   description="the project whose webhooks fire for the room's meetings")


class RoomUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    platform: PlatformName | None = None
    project_id: str | None = Field(default=None, min_length=1, max_length=100)
    language: str | None = Field(default=None, max_length=16)
    diarization: bool | None = None
    recording: bool | None = None
    auto_summary: bool | None = None
    is_locked: bool | None = None
    is_shared: bool | None = None
    key_terms: KeyTerms | None = None


class Room(RoomSettings):
    model_config = ConfigDict(extra="ignore")
    id: str
    name: str
    platform: PlatformName
    project_id: str | None
    created_at: str
    updated_at: str


class RoomPage(Page[Room]):
    pass


class MeetingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    room_id: str = Field(min_length=1, max_length=100)
    name: str | None = Field(default=None, min_length=1, max_length=300, description="the transcript's name")
    start_date: AwareDatetime | None = Field(default=None, description="default: now")
    end_date: AwareDatetime | None = Field(default=None, description="default: four hours after the start")


class RoomMeetingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=300)
    start_date: AwareDatetime | None = None
    end_date: AwareDatetime | None = None


class Meeting(BaseModel):
    id: str = Field(description="the meeting's id, also its transcript's id")
    transcript_id: str
    room_id: str | None
    room_name: str | None
    platform: PlatformName
    status: Literal["active", "ended"]
    room_url: str = Field(description="what participants open")
    host_room_url: str = Field(description="what the host opens (may end the meeting)")
    viewer_room_url: str | None = Field(description="live captions, read only (shared rooms)")
    start_date: str
    end_date: str
    ended_at: str | None
    created_at: str


class MeetingPage(Page[Meeting]):
    pass


class JoinBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, description="shown with this participant's captions")
    key: str | None = Field(default=None, min_length=1, max_length=64,
                            description="the key of a room URL; without one, the caller's token must own the"
                                        " meeting and may publish")


class Joined(BaseModel):
    meeting_id: str
    transcript_id: str
    participant_id: str
    name: str
    role: Literal["participant", "host", "viewer"]
    token: str = Field(description="a bearer token for this meeting's endpoints only; connect before it expires")
    expires_at: datetime
    websocket_url: str
    webrtc_offer_url: str
    webrtc_answer_url: str
