"""The schema of the first SQLite store (times as ISO text, schedules as epoch seconds).

Existing files made by that store's CREATE TABLE script are stamped with this revision instead of running it.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _json(name: str, default: str) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=False, server_default=default)


def _text(name: str, required: bool = False) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=not required)


def _id() -> sa.Column:
    return sa.Column("id", sa.Text(), primary_key=True)


def _owned_by(name: str, parent: str) -> sa.Column:
    return sa.Column(name, sa.Text(), sa.ForeignKey(f"{parent}.id", ondelete="CASCADE"), nullable=False)


def _stamps() -> tuple[sa.Column, sa.Column]:
    return _text("created_at", required=True), _text("updated_at", required=True)


def upgrade() -> None:
    op.create_table(
        "transcripts",
        _id(),
        _text("name", required=True),
        _text("status", required=True),
        _text("source_language"),
        _text("owner"),
        *_stamps(),
        sa.Column("duration", sa.Float()),
        _json("participants", "[]"),
        _text("summary"),
        _json("meta", "{}"),
    )
    op.create_index("transcripts_created", "transcripts", ["created_at"])
    op.create_table(
        "segments",
        _id(),
        _owned_by("transcript_id", "transcripts"),
        _text("text", required=True),
        _text("speaker"),
        _text("participant_id"),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float()),
        _json("words", "[]"),
    )
    op.create_index("segments_transcript", "segments", ["transcript_id", "start"])
    op.create_table(
        "chunks",
        _id(),
        _owned_by("transcript_id", "transcripts"),
        _text("kind", required=True),
        sa.Column("idx", sa.Integer(), nullable=False, server_default="0"),
        _text("status", required=True),
        sa.Column("upload_key", sa.Text(), unique=True),
        sa.Column("expires_at", sa.Float()),
        _text("path"),
        _text("format"),
        sa.Column("size", sa.Integer()),
        sa.Column("duration", sa.Float()),
        sa.Column("offset", sa.Float()),
        _text("text"),
        _json("segments", "[]"),
        _text("error"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("merged", sa.Integer(), nullable=False, server_default="0"),
        _json("options", "{}"),
        sa.Column("progress", sa.Float()),
        *_stamps(),
    )
    op.create_index("chunks_transcript", "chunks", ["transcript_id", "idx"])
    op.create_index("chunks_status", "chunks", ["status"])
    op.create_index("chunks_position", "chunks", ["transcript_id", "idx"], unique=True,
                    sqlite_where=sa.text("kind = 'chunk'"), postgresql_where=sa.text("kind = 'chunk'"))
    op.create_table(
        "projects",
        _id(),
        _text("title", required=True),
        _text("language"),
        _json("portal", "{}"),
        _text("owner"),
        *_stamps(),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.Text(), sa.ForeignKey("transcripts.id", ondelete="CASCADE"), primary_key=True),
        _text("project_id", required=True),
        _text("name"),
        _text("email"),
        _json("tags", "[]"),
        _text("source"),
        _text("finished_at"),
        _text("created_at", required=True),
    )
    op.create_index("conversations_project", "conversations", ["project_id"])
    op.create_table(
        "api_keys",
        _id(),
        _text("key_hash", required=True),
        _text("user"),
        _json("scopes", "[]"),
        _text("name"),
        _text("created_at", required=True),
        _text("last_used_at"),
        _text("revoked_at"),
    )
    op.create_table(
        "secrets",
        sa.Column("name", sa.Text(), primary_key=True),
        _text("value", required=True),
    )
    op.create_table(
        "webhooks",
        _id(),
        _owned_by("project_id", "projects"),
        _text("url", required=True),
        _json("events", "[]"),
        _text("secret", required=True),
        _text("description"),
        _text("created_at", required=True),
    )
    op.create_index("webhooks_project", "webhooks", ["project_id"])
    op.create_table(
        "webhook_deliveries",
        _id(),
        _owned_by("webhook_id", "webhooks"),
        _text("event", required=True),
        _text("event_id", required=True),
        _text("payload", required=True),
        _text("status", required=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float()),
        _text("last_error"),
        sa.Column("response_status", sa.Integer()),
        *_stamps(),
        _text("delivered_at"),
    )
    op.create_index("webhook_deliveries_event", "webhook_deliveries", ["webhook_id", "event_id"], unique=True)
    op.create_index("webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])


def downgrade() -> None:
    for table in ("webhook_deliveries", "webhooks", "secrets", "api_keys", "conversations", "projects", "chunks",
                  "segments", "transcripts"):
        op.drop_table(table)
