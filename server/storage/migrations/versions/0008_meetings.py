"""Rooms and meetings: persistent meeting-room settings, and the meetings held in them.

A meeting is one transcript (same id), with one participant stream per speaker; the room keeps what every
meeting in it starts with (language, diarization, recording, the project whose webhooks fire, key terms).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.storage.column_types import ClientText, JSONText, UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("id", ClientText(), primary_key=True),
        sa.Column("name", ClientText(), nullable=False),
        sa.Column("owner", ClientText()),
        sa.Column("project_id", ClientText()),
        sa.Column("platform", ClientText(), nullable=False),
        sa.Column("settings", JSONText(), nullable=False, server_default="{}"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("rooms_owner", "rooms", ["owner", "created_at"])
    op.create_table(
        "meetings",
        sa.Column("id", ClientText(), sa.ForeignKey("transcripts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("room_id", ClientText(), sa.ForeignKey("rooms.id", ondelete="SET NULL")),
        sa.Column("owner", ClientText()),
        sa.Column("status", ClientText(), nullable=False),
        sa.Column("platform", ClientText(), nullable=False),
        sa.Column("external_id", ClientText()),
        sa.Column("urls", JSONText(), nullable=False, server_default="{}"),
        sa.Column("meta", JSONText(), nullable=False, server_default="{}"),
        sa.Column("start_date", UTCDateTime(), nullable=False),
        sa.Column("end_date", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("meetings_owner", "meetings", ["owner", "created_at"])
    op.create_index("meetings_room", "meetings", ["room_id"])


def downgrade() -> None:
    op.drop_table("meetings")
    op.drop_table("rooms")
