"""Every stored instant in one column type (server.storage.column_types.UTCDateTime).

PostgreSQL: TIMESTAMPTZ, converted in place. SQLite: fixed-width UTC text with microseconds; record times were
already ISO text, schedules (expires_at, next_attempt_at) were epoch seconds in REAL columns. SQLite cannot
change a column's type, so the two tables holding schedules are copied (both are leaves: no foreign key points
at them, so the copy cascades nowhere).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

from server.storage.column_types import UTCDateTime, to_datetime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RECORD_TIMES = {
    "transcripts": ("created_at", "updated_at"),
    "chunks": ("created_at", "updated_at"),
    "projects": ("created_at", "updated_at"),
    "conversations": ("finished_at", "created_at"),
    "api_keys": ("created_at", "last_used_at", "revoked_at"),
    "webhooks": ("created_at",),
    "webhook_deliveries": ("created_at", "updated_at", "delivered_at"),
}
SCHEDULES = {"chunks": "expires_at", "webhook_deliveries": "next_attempt_at"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        new = UTCDateTime()
        dialect = op.get_bind().dialect
        _rewrite_all(lambda value: new.process_bind_param(value, dialect))
        _retype_schedules(UTCDateTime(), sa.Float())
        return
    for table, columns in RECORD_TIMES.items():
        for column in columns:
            op.alter_column(table, column, type_=UTCDateTime(), existing_type=sa.Text(),
                            postgresql_using=f'"{column}"::timestamptz')
    for table, column in SCHEDULES.items():
        op.alter_column(table, column, type_=UTCDateTime(), existing_type=sa.Float(),
                        postgresql_using=f'to_timestamp("{column}")')


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rewrite_all(lambda value: _legacy_text(to_datetime(value)), lambda value: to_datetime(value).timestamp())
        _retype_schedules(sa.Float(), UTCDateTime())
        return
    for table, columns in RECORD_TIMES.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.Text(), existing_type=UTCDateTime(),
                            postgresql_using=f"""to_char("{column}" AT TIME ZONE 'UTC',"""
                                             """ 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')""")
    for table, column in SCHEDULES.items():
        op.alter_column(table, column, type_=sa.Float(), existing_type=UTCDateTime(),
                        postgresql_using=f'extract(epoch from "{column}")')


def _legacy_text(instant: Any) -> str:
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rewrite_all(record: Callable[[Any], Any], schedule: Callable[[Any], Any] | None = None) -> None:
    """Convert every stored instant in Python (SQLite): row by row, each value through ``record`` (or
    ``schedule`` for the schedule columns, when given)."""
    bind = op.get_bind()
    for table in RECORD_TIMES:
        columns = (*RECORD_TIMES[table], *((SCHEDULES[table],) if table in SCHEDULES else ()))
        converters = [schedule if schedule and column in SCHEDULES.values() else record for column in columns]
        rows = bind.execute(sa.text(f"SELECT id, {', '.join(columns)} FROM {table}")).all()
        if not rows:
            continue
        params = [{"_id": row[0], **{column: None if value is None else convert(value)
                                     for column, convert, value in zip(columns, converters, row[1:], strict=True)}}
                  for row in rows]
        assignments = ", ".join(f"{column} = :{column}" for column in columns)
        bind.execute(sa.text(f"UPDATE {table} SET {assignments} WHERE id = :_id"), params)


def _retype_schedules(type_: sa.types.TypeEngine, existing: sa.types.TypeEngine) -> None:
    for table, column in SCHEDULES.items():
        with op.batch_alter_table(table, copy_from=_reflected(table)) as batch:
            batch.alter_column(column, type_=type_, existing_type=existing)


def _reflected(name: str) -> sa.Table:
    """The table as it is, for the copy. SQLAlchemy reads ON DELETE only from table-level FOREIGN KEY clauses,
    and the first store's script wrote them inline (``REFERENCES t(id) ON DELETE CASCADE``): left to plain
    reflection the copy would drop the cascades. SQLite's own pragma knows them."""
    bind = op.get_bind()
    table = sa.Table(name, sa.MetaData(), autoload_with=bind)
    on_delete = {row[3]: row[6] for row in bind.exec_driver_sql(f"PRAGMA foreign_key_list({name})")}
    for constraint in table.foreign_key_constraints:
        action = on_delete.get(constraint.column_keys[0], "NO ACTION")
        constraint.ondelete = None if action == "NO ACTION" else action
    return table
