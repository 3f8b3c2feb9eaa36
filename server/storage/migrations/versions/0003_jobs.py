"""Durable jobs: the embedded runner's queue and summary jobs; transcripts found by status.

``jobs`` is the queue of the in-process runner used with SQLite (PostgreSQL keeps its jobs in the queue library's
tables, added by the next revision). ``summary_jobs`` holds what ``POST /api/summary/`` kept in one process's
memory. ``transcripts_status``: the nodes look for ``live`` transcripts whose node stopped, every second.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.storage.column_types import ClientText, JSONText, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_QUEUED = "status = 'queued'"


def upgrade() -> None:
    op.create_index("transcripts_status", "transcripts", ["status"])
    op.create_table(
        "summary_jobs",
        sa.Column("id", ClientText(), primary_key=True),
        sa.Column("owner", ClientText()),
        sa.Column("status", ClientText(), nullable=False),
        sa.Column("message", ClientText()),
        sa.Column("progress", sa.Float(), nullable=False, server_default="0"),
        sa.Column("request", JSONText(), nullable=False, server_default="{}"),
        sa.Column("result", JSONText()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("summary_jobs_created", "summary_jobs", ["created_at"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("task", ClientText(), nullable=False),
        sa.Column("args", JSONText(), nullable=False, server_default="{}"),
        sa.Column("lock", ClientText()),
        sa.Column("dedupe", ClientText()),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("status", ClientText(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("run_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("error", ClientText()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("jobs_due", "jobs", ["status", "run_at"])
    op.create_index("jobs_dedupe", "jobs", ["dedupe"], unique=True, sqlite_where=sa.text(_QUEUED),
                    postgresql_where=sa.text(_QUEUED))


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("summary_jobs")
    op.drop_index("transcripts_status", "transcripts")
