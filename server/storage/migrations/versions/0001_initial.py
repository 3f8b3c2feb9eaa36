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


def upgrade() -> None:
    op.create_table(
        "transcripts",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("source_language", sa.Text()),
        sa.Column("owner", sa.Text()),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("duration", sa.Float()),
        _json("participants", "[]"),
        sa.Column("summary", sa.Text()),
        _json("meta", "{}"),
    )
    op.create_index("transcripts_created", "transcripts", ["created_at"])
    op.create_table(
        "segments",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("transcript_id", sa.Text(), sa.ForeignKey("transcripts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("speaker", sa.Text()),
        sa.Column("participant_id", sa.Text()),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float()),
        _json("words", "[]"),
    )
    op.create_index("segments_transcript", "segments", ["transcript_id", "start"])
    op.create_table(
        "chunks",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("transcript_id", sa.Text(), sa.ForeignKey("transcripts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("upload_key", sa.Text(), unique=True),
        sa.Column("expires_at", sa.Float()),
        sa.Column("path", sa.Text()),
        sa.Column("format", sa.Text()),
        sa.Column("size", sa.Integer()),
        sa.Column("duration", sa.Float()),
        sa.Column("offset", sa.Float()),
        sa.Column("text", sa.Text()),
        _json("segments", "[]"),
        sa.Column("error", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("merged", sa.Integer(), nullable=False, server_default="0"),
        _json("options", "{}"),
        sa.Column("progress", sa.Float()),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
    )
    op.create_index("chunks_transcript", "chunks", ["transcript_id", "idx"])
    op.create_index("chunks_status", "chunks", ["status"])
    op.create_index("chunks_position", "chunks", ["transcript_id", "idx"], unique=True,
                    sqlite_where=sa.text("kind = 'chunk'"), postgresql_where=sa.text("kind = 'chunk'"))
    op.create_table(
        "projects",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("language", sa.Text()),
        _json("portal", "{}"),
        sa.Column("owner", sa.Text()),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.Text(), sa.ForeignKey("transcripts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text()),
        sa.Column("email", sa.Text()),
        _json("tags", "[]"),
        sa.Column("source", sa.Text()),
        sa.Column("finished_at", sa.Text()),
        sa.Column("created_at", sa.Text(), nullable=False),
    )
    op.create_index("conversations_project", "conversations", ["project_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("user", sa.Text()),
        _json("scopes", "[]"),
        sa.Column("name", sa.Text()),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("last_used_at", sa.Text()),
        sa.Column("revoked_at", sa.Text()),
    )
    op.create_table(
        "secrets",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("project_id", sa.Text(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        _json("events", "[]"),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("created_at", sa.Text(), nullable=False),
    )
    op.create_index("webhooks_project", "webhooks", ["project_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("webhook_id", sa.Text(), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float()),
        sa.Column("last_error", sa.Text()),
        sa.Column("response_status", sa.Integer()),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("delivered_at", sa.Text()),
    )
    op.create_index("webhook_deliveries_event", "webhook_deliveries", ["webhook_id", "event_id"], unique=True)
    op.create_index("webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])


def downgrade() -> None:
    for table in ("webhook_deliveries", "webhooks", "secrets", "api_keys", "conversations", "projects", "chunks",
                  "segments", "transcripts"):
        op.drop_table(table)
