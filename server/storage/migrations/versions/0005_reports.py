"""Project reports: one row per report, its phase, its fan-out's progress and, once generated, its result.

``conversations`` is the set chosen when the report started (a retry or a resumed node works on exactly that
set); ``progress`` maps each conversation id whose summary phase finished to how it finished, so the fan-out
counts each conversation once however often its job runs.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.storage.column_types import ClientText, JSONText, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", ClientText(), primary_key=True),
        sa.Column("project_id", ClientText(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("owner", ClientText()),
        sa.Column("title", ClientText(), nullable=False),
        sa.Column("status", ClientText(), nullable=False),
        sa.Column("filters", JSONText(), nullable=False, server_default="{}"),
        sa.Column("conversations", JSONText(), nullable=False, server_default="[]"),
        sa.Column("progress", JSONText(), nullable=False, server_default="{}"),
        sa.Column("result", JSONText()),
        sa.Column("error", ClientText()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime()),
    )
    op.create_index("reports_project", "reports", ["project_id", "created_at"])


def downgrade() -> None:
    op.drop_table("reports")
