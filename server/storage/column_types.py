"""Column types that store the same values the same way on SQLite and PostgreSQL.

Migrations import these too, so they must stay backward compatible: a change of storage format needs a migration.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

# Fixed width, so SQLite compares and sorts the text exactly like the instants it holds.
SQLITE_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def to_datetime(value: datetime | str | float) -> datetime:
    """An instant as an aware UTC datetime: callers hand in ISO text (``utcnow()``) or epoch seconds."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str):
        return to_datetime(datetime.fromisoformat(value))
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    raise TypeError(f"not an instant: {value!r}")


class UTCDateTime(TypeDecorator[datetime]):
    """One instant type: TIMESTAMPTZ on PostgreSQL, fixed-width ISO-8601 UTC text (microseconds) on SQLite.

    Binds accept a datetime, ISO text or epoch seconds, so query parameters (``created_at >= :since``) go through
    the same conversion as stored values; results are aware UTC datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        instant = to_datetime(value)
        return instant.strftime(SQLITE_FORMAT) if dialect.name == "sqlite" else instant

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else to_datetime(value)


class JSONText(TypeDecorator[Any]):
    """JSON kept as text on both databases.

    Not the native JSON/JSONB: the server never queries inside these documents, text round-trips byte for byte
    (key order included) on both backends and needs no conversion of existing SQLite files. ``ensure_ascii``
    (the default) keeps lone surrogates that ``json.loads`` lets through storable as escapes. ``None`` is stored
    as JSON ``null`` so NOT NULL columns take it, as the SQLite store did.
    """

    impl = Text
    cache_ok = True
    should_evaluate_none = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str:
        return json.dumps(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return json.loads(value) if value else None


class ClientText(TypeDecorator[str]):
    """Text a client may have written. PostgreSQL cannot store U+0000 in text (SQLite can): it is stored as
    U+FFFD on both, so a hostile name or segment is kept, not answered with a database error."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value
