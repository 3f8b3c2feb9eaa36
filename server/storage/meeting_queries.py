"""The store's rooms and meetings: a part of :class:`server.storage.sql.SqlStore`, kept in its own module.

A room row keeps its settings as one JSON document (``settings``), so a new setting needs no migration; a meeting
row shares its transcript's id (deleting the transcript deletes the meeting).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Delete, Insert, Select, Table, Update, insert, select, update
from sqlalchemy.engine import RowMapping

from server.storage.base import ANY, isoformat, new_id
from server.storage.tables import meetings, rooms

ROOM_FIELDS = ("name", "project_id", "platform", "settings")
MEETING_STATUSES = ("active", "ended")
MEETING_FIELDS = ("status", "external_id", "urls", "meta", "ended_at")


def _row(row: RowMapping | None) -> dict[str, Any] | None:
    """A row as a plain dict, instants as the one ISO text form (these tables schedule nothing)."""
    if row is None:
        return None
    return {k: isoformat(v) if isinstance(v, datetime) else v for k, v in dict(row).items()}


def _owned(table: Table, owner: str | None) -> ColumnElement[bool]:
    return table.c.owner.is_(None) if owner is None else table.c.owner == owner


def _check(fields: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in fields:
        if key not in allowed:
            raise ValueError(f"cannot update {key!r}")


class MeetingQueries:
    """Mixed into SqlStore: uses its transaction-joining read and write helpers."""

    if TYPE_CHECKING:
        async def _read_row(self, stmt: Select) -> RowMapping | None: ...
        async def _read_page(self, table: Table, where: Sequence[ColumnElement[bool]], page: int, size: int
                             ) -> tuple[list[RowMapping], int]: ...
        async def _write_row(self, stmt: Insert | Update) -> RowMapping | None: ...
        async def _write_count(self, stmt: Update | Delete) -> int: ...
        def _now(self) -> datetime: ...

    # ------------------------------------------------------------ rooms

    async def create_room(self, *, name: str, owner: str | None, project_id: str | None, platform: str,
                          settings: dict[str, Any]) -> dict[str, Any]:
        now = self._now()
        row = _row(await self._write_row(insert(rooms).values(
            id=new_id(), name=name, owner=owner, project_id=project_id, platform=platform, settings=settings,
            created_at=now, updated_at=now).returning(*rooms.c)))
        assert row is not None
        return row

    async def get_room(self, room_id: str) -> dict[str, Any] | None:
        return _row(await self._read_row(select(rooms).where(rooms.c.id == room_id)))

    async def list_rooms(self, *, owner: str | None = ANY, page: int = 1, size: int = 50
                         ) -> tuple[list[dict[str, Any]], int]:
        """Newest first."""
        rows, total = await self._read_page(rooms, [] if owner is ANY else [_owned(rooms, owner)], page, size)
        return [r for r in map(_row, rows) if r is not None], total

    async def update_room(self, room_id: str, **fields: Any) -> dict[str, Any] | None:
        _check(fields, ROOM_FIELDS)
        return _row(await self._write_row(update(rooms).where(rooms.c.id == room_id)
                                          .values(**fields, updated_at=self._now()).returning(*rooms.c)))

    # ------------------------------------------------------------ meetings

    async def create_meeting(self, *, meeting_id: str, room_id: str | None, owner: str | None, platform: str,
                             start_date: str, end_date: str, urls: dict[str, Any],
                             external_id: str | None = None, meta: dict[str, Any] | None = None
                             ) -> dict[str, Any]:
        """``meeting_id``: its transcript's id (the transcript exists first)."""
        row = _row(await self._write_row(insert(meetings).values(
            id=meeting_id, room_id=room_id, owner=owner, status="active", platform=platform, external_id=external_id,
            urls=urls, meta=meta or {}, start_date=start_date, end_date=end_date, created_at=self._now()
        ).returning(*meetings.c)))
        assert row is not None
        return row

    async def get_meeting(self, meeting_id: str) -> dict[str, Any] | None:
        return _row(await self._read_row(select(meetings).where(meetings.c.id == meeting_id)))

    async def list_meetings(self, *, owner: str | None = ANY, room_id: str | None = None, status: str | None = None,
                            page: int = 1, size: int = 50) -> tuple[list[dict[str, Any]], int]:
        """Newest first."""
        where = [] if owner is ANY else [_owned(meetings, owner)]
        if room_id is not None:
            where.append(meetings.c.room_id == room_id)
        if status is not None:
            where.append(meetings.c.status == status)
        rows, total = await self._read_page(meetings, where, page, size)
        return [r for r in map(_row, rows) if r is not None], total

    async def update_meeting(self, meeting_id: str, **fields: Any) -> dict[str, Any] | None:
        _check(fields, MEETING_FIELDS)
        return _row(await self._write_row(update(meetings).where(meetings.c.id == meeting_id)
                                          .values(**fields).returning(*meetings.c)))

    async def end_meeting(self, meeting_id: str) -> dict[str, Any] | None:
        """``active`` -> ``ended`` (compare-and-set); None when it was already ended: of two ``end`` calls, one
        ends it."""
        return _row(await self._write_row(update(meetings).where(meetings.c.id == meeting_id,
                                                                 meetings.c.status == "active")
                                          .values(status="ended", ended_at=self._now()).returning(*meetings.c)))
