"""Request and response bodies of the participant (kiosk) API."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

TAG = "participant"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_receiving: set[str] = set()  # upload keys whose PUT is in flight
OPEN_CONVERSATION_IDLE = timedelta(hours=24)
"""An unfinished conversation with no new chunk for this long no longer counts as open (a kiosk that never
called finish must not lock its project out for good)."""


class Initiate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    project_id: str = Field(min_length=1, max_length=100)
    name: str | None = Field(default=None, max_length=300)
    email: str | None = Field(default=None, max_length=320)
    tag_id_list: list[str] = Field(default_factory=list, max_length=100)
    source: str | None = Field(default="PORTAL_AUDIO", max_length=64)


class Conversation(BaseModel):
    id: str
    project_id: str
    name: str | None
    email: str | None
    tag_id_list: list[str]
    source: str | None
    status: str
    created_at: str


class UploadUrlRequest(BaseModel):
    """All optional. ``index`` is the chunk's place in the recording (default: the next one)."""

    model_config = ConfigDict(extra="ignore")
    index: int | None = Field(default=None, ge=0, le=1_000_000)
    filename: str | None = Field(default=None, max_length=300)
    content_type: str | None = Field(default=None, max_length=100)


class UploadUrl(BaseModel):
    url: str = Field(description="PUT the chunk's bytes here (single use, until expires_at).")
    key: str = Field(description="Confirm the chunk with this key once the PUT succeeded.")
    expires_at: str
    index: int
    method: str = "PUT"
    headers: dict[str, str] = Field(default_factory=dict, description="Send these headers with the PUT: with an S3"
                                    " store, the signed Content-Type named in the request.")


class ChunkReceived(BaseModel):
    key: str
    size: int
    format: str


class ConfirmUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str = Field(min_length=1, max_length=200)


class Chunk(BaseModel):
    id: str
    key: str | None
    index: int
    status: str = Field(description="uploaded | processing | transcribed | failed")
    text: str | None
    error: str | None
    duration: float | None
    offset: float | None = Field(description="Where the chunk starts in the merged conversation (s).")
    created_at: str
    updated_at: str


class StorageCheck(BaseModel):
    ok: bool
    storage: str
    writable: bool
    free_bytes: int


class ChunkCounts(BaseModel):
    total: int
    uploaded: int
    processing: int
    transcribed: int
    failed: int


class MergedSegment(BaseModel):
    id: str
    start: float
    end: float
    text: str
    speaker: str | None


class ConversationState(BaseModel):
    id: str
    project_id: str
    name: str | None
    status: str = Field(description="created | processing | completed | failed (of the merged transcript)")
    finished: bool
    finished_at: str | None
    created_at: str
    duration: float | None
    chunks: ChunkCounts
    text: str
    segments: list[MergedSegment]
