"""The text as spoken of redacted segments, kept only where VOXLANE_KEEP_UNREDACTED says so.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.storage.column_types import ClientText, JSONText

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unredacted_segments",
        sa.Column("id", ClientText(), primary_key=True),
        sa.Column("transcript_id", ClientText(), sa.ForeignKey("transcripts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("text", ClientText(), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("words", JSONText(), nullable=False, server_default="[]"),
    )
    op.create_index("unredacted_segments_transcript", "unredacted_segments", ["transcript_id", "start"])


def downgrade() -> None:
    op.drop_index("unredacted_segments_transcript", table_name="unredacted_segments")
    op.drop_table("unredacted_segments")
