"""A fence per transcript for its live streams: a stream's writes carry the fence it started with, and the
database refuses them once a newer stream or a node's sweep has moved it on.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases (SQLite has ADD and DROP COLUMN): a batch copy of ``transcripts`` would drop
# the old table, and SQLite's cascades then empty every table that points at it.


def upgrade() -> None:
    op.add_column("transcripts", sa.Column("live_fence", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("transcripts", "live_fence")
