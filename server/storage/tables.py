"""The schema at the newest migration, as SQLAlchemy Core tables (the store's queries are built on these).

Keep it equal to what ``migrations/versions`` build: tests compare a migrated database against this metadata.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, MetaData, Table, text

from server.storage.column_types import ClientText, JSONText, UTCDateTime

metadata = MetaData()


def _id() -> Column:
    return Column("id", ClientText, primary_key=True)


def _json(name: str, default: str) -> Column:
    return Column(name, JSONText, nullable=False, server_default=default)


def _at(name: str, nullable: bool = False) -> Column:
    return Column(name, UTCDateTime, nullable=nullable)


def _owned_by(name: str, parent: str) -> Column:
    """A row that lives and dies with its parent's: deleting the parent (a transcript, a project, a webhook)
    deletes it in the same statement, on both databases."""
    return Column(name, ClientText, ForeignKey(f"{parent}.id", ondelete="CASCADE"), nullable=False)


def _stamps() -> tuple[Column, Column]:
    """When a row was made and last written: the store sets both on insert and moves ``updated_at`` on every
    write of the row."""
    return _at("created_at"), _at("updated_at")


transcripts = Table(
    "transcripts", metadata,
    _id(),
    Column("name", ClientText, nullable=False),
    Column("status", ClientText, nullable=False),
    Column("source_language", ClientText),
    Column("owner", ClientText),
    *_stamps(),
    Column("duration", Float),
    _json("participants", "[]"),
    Column("summary", JSONText),
    _json("meta", "{}"),
    # a live stream's fence: moved on by each stream that starts and by a sweep that finishes a dead node's
    # stream; a stream's writes carry the value it started with and are refused once it moved (Store.take_live)
    Column("live_fence", Integer, nullable=False, server_default="0"),
    Index("transcripts_created", "created_at"),
    Index("transcripts_status", "status"),  # the lease sweep looks for `live` ones every second
)

segments = Table(
    "segments", metadata,
    _id(),
    _owned_by("transcript_id", "transcripts"),
    Column("text", ClientText, nullable=False),
    Column("speaker", ClientText),
    Column("participant_id", ClientText),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("confidence", Float),
    _json("words", "[]"),
    Index("segments_transcript", "transcript_id", "start"),
)

# The text as spoken, of segments the correction pass redacted, where VOXLANE_KEEP_UNREDACTED keeps it (keyed by
# the segment's id; gone with its transcript).
unredacted_segments = Table(
    "unredacted_segments", metadata,
    _id(),
    _owned_by("transcript_id", "transcripts"),
    Column("text", ClientText, nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    _json("words", "[]"),
    Index("unredacted_segments_transcript", "transcript_id", "start"),
)

# Kiosk chunks hold one position each; uploads and jobs all sit at index 0.
_ONE_CHUNK_PER_POSITION = text("kind = 'chunk'")

chunks = Table(
    "chunks", metadata,
    _id(),
    _owned_by("transcript_id", "transcripts"),
    Column("kind", ClientText, nullable=False),
    Column("idx", Integer, nullable=False, server_default="0"),
    Column("status", ClientText, nullable=False),
    Column("upload_key", ClientText, unique=True),
    _at("expires_at", nullable=True),
    Column("path", ClientText),
    Column("format", ClientText),
    Column("size", Integer),
    Column("duration", Float),
    Column("offset", Float),
    Column("text", ClientText),
    _json("segments", "[]"),
    Column("error", ClientText),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("merged", Integer, nullable=False, server_default="0"),
    _json("options", "{}"),
    Column("progress", Float),
    *_stamps(),
    Index("chunks_transcript", "transcript_id", "idx"),
    Index("chunks_status", "status"),
    Index("chunks_position", "transcript_id", "idx", unique=True,
          sqlite_where=_ONE_CHUNK_PER_POSITION, postgresql_where=_ONE_CHUNK_PER_POSITION),
)

projects = Table(
    "projects", metadata,
    _id(),
    Column("title", ClientText, nullable=False),
    Column("language", ClientText),
    _json("portal", "{}"),
    Column("owner", ClientText),
    _json("key_terms", "[]"),
    *_stamps(),
)

# No foreign key to projects (as in the first schema): the kiosk removes a project's conversations itself.
conversations = Table(
    "conversations", metadata,
    Column("id", ClientText, ForeignKey("transcripts.id", ondelete="CASCADE"), primary_key=True),
    Column("project_id", ClientText, nullable=False),
    Column("name", ClientText),
    Column("email", ClientText),
    _json("tags", "[]"),
    Column("source", ClientText),
    _at("finished_at", nullable=True),
    _at("created_at"),
    Index("conversations_project", "project_id"),
)

api_keys = Table(
    "api_keys", metadata,
    _id(),
    Column("key_hash", ClientText, nullable=False),
    Column("user", ClientText),
    _json("scopes", "[]"),
    Column("name", ClientText),
    _at("created_at"),
    _at("last_used_at", nullable=True),
    _at("revoked_at", nullable=True),
)

secrets = Table(
    "secrets", metadata,
    Column("name", ClientText, primary_key=True),
    Column("value", ClientText, nullable=False),
)

webhooks = Table(
    "webhooks", metadata,
    _id(),
    _owned_by("project_id", "projects"),
    Column("url", ClientText, nullable=False),
    _json("events", "[]"),
    Column("secret", ClientText, nullable=False),
    Column("description", ClientText),
    _at("created_at"),
    Index("webhooks_project", "project_id"),
)

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    _id(),
    _owned_by("webhook_id", "webhooks"),
    Column("event", ClientText, nullable=False),
    Column("event_id", ClientText, nullable=False),
    Column("payload", ClientText, nullable=False),
    Column("status", ClientText, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    _at("next_attempt_at", nullable=True),
    Column("last_error", ClientText),
    Column("response_status", Integer),
    *_stamps(),
    _at("delivered_at", nullable=True),
    Index("webhook_deliveries_event", "webhook_id", "event_id", unique=True),
    Index("webhook_deliveries_due", "status", "next_attempt_at"),
)

# Summaries asked for through POST /api/summary/: any node answers for them, and a restart loses none.
summary_jobs = Table(
    "summary_jobs", metadata,
    _id(),
    Column("owner", ClientText),
    Column("status", ClientText, nullable=False),
    Column("message", ClientText),
    Column("progress", Float, nullable=False, server_default="0"),
    _json("request", "{}"),
    Column("result", JSONText),
    *_stamps(),
    Index("summary_jobs_created", "created_at"),
)

# Project reports (server.features.reports): the conversations chosen at the start, the fan-out's progress by
# conversation, and the generated result.
reports = Table(
    "reports", metadata,
    _id(),
    _owned_by("project_id", "projects"),
    Column("owner", ClientText),
    Column("title", ClientText, nullable=False),
    Column("status", ClientText, nullable=False),
    _json("filters", "{}"),
    _json("conversations", "[]"),
    _json("progress", "{}"),
    Column("result", JSONText),
    Column("error", ClientText),
    *_stamps(),
    _at("completed_at", nullable=True),
    Index("reports_project", "project_id", "created_at"),
)

# The embedded job runner's queue (server.jobs.embedded), for SQLite. On PostgreSQL the queue library's own tables
# hold the jobs; this one stays empty there.
_QUEUED = text("status = 'queued'")

jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task", ClientText, nullable=False),
    _json("args", "{}"),
    Column("lock", ClientText),
    Column("dedupe", ClientText),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("status", ClientText, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    _at("run_at"),
    _at("lease_until", nullable=True),
    Column("error", ClientText),
    _at("created_at"),
    Index("jobs_due", "status", "run_at"),
    Index("jobs_dedupe", "dedupe", unique=True, sqlite_where=_QUEUED, postgresql_where=_QUEUED),
)

# Persistent meeting-room settings (``settings``: language, diarization, recording, auto summary, locked,
# key terms), and the meetings held in them: a meeting is one transcript, with the same id.
rooms = Table(
    "rooms", metadata,
    _id(),
    Column("name", ClientText, nullable=False),
    Column("owner", ClientText),
    Column("project_id", ClientText),
    Column("platform", ClientText, nullable=False),
    _json("settings", "{}"),
    *_stamps(),
    Index("rooms_owner", "owner", "created_at"),
)

meetings = Table(
    "meetings", metadata,
    Column("id", ClientText, ForeignKey("transcripts.id", ondelete="CASCADE"), primary_key=True),
    Column("room_id", ClientText, ForeignKey("rooms.id", ondelete="SET NULL")),
    Column("owner", ClientText),
    Column("status", ClientText, nullable=False),
    Column("platform", ClientText, nullable=False),
    Column("external_id", ClientText),
    _json("urls", "{}"),
    _json("meta", "{}"),
    _at("start_date"),
    _at("end_date"),
    _at("ended_at", nullable=True),
    _at("created_at"),
    Index("meetings_owner", "owner", "created_at"),
    Index("meetings_room", "room_id"),
)

# Instants callers schedule with ``time.time()``: epoch seconds at the store's edge. Every other instant is the
# ISO text ``utcnow()`` writes.
EPOCH_COLUMNS = frozenset({"expires_at", "next_attempt_at", "run_at", "lease_until"})
