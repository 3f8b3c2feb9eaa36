"""The store on SQLAlchemy Core: one implementation for SQLite (embedded) and PostgreSQL (networked).

Rows leave as the dicts the :class:`~server.storage.base.Store` protocol promises: record times as ISO text,
schedules (``expires_at``, ``next_attempt_at``) as epoch seconds, whatever the column type underneath.
Listings break ties on ``created_at`` by ``id``; a store stamps its own rows with strictly increasing
microseconds, so rows one store creates list in creation order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Insert,
    Select,
    Table,
    Update,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.storage.base import (
    ANY,
    CHUNK_FIELDS,
    CONVERSATION_FIELDS,
    DELIVERY_FIELDS,
    MUTABLE_FIELDS,
    PROJECT_FIELDS,
    REPORT_FIELDS,
    SUMMARY_JOB_FIELDS,
    StaleFence,
    TranscriptNotFound,
    isoformat,
    new_id,
)
from server.storage.engine import WRITE, make_engine
from server.storage.meeting_queries import MeetingQueries
from server.storage.migrate import upgrade_engine
from server.storage.tables import (
    EPOCH_COLUMNS,
    api_keys,
    chunks,
    conversations,
    projects,
    reports,
    secrets,
    segments,
    summary_jobs,
    transcripts,
    unredacted_segments,
    webhook_deliveries,
    webhooks,
)

# Short names keep the queries on one line each: Transcripts, Segments, Chunks, Projects, conVersations,
# api Keys, Webhooks, Deliveries, Summary Jobs, Reports.
T, S, C, P, V = transcripts, segments, chunks, projects, conversations
K, W, D, SJ, R = api_keys, webhooks, webhook_deliveries, summary_jobs, reports
U = unredacted_segments  # the text as spoken of redacted segments
_LIKE_ESCAPE = "\\"


class SqlStore(MeetingQueries):
    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        self._last = datetime.min.replace(tzinfo=UTC)
        # The write transaction of :meth:`transaction` the current task runs in, if any: every method joins it.
        self._tx: ContextVar[_Transaction | None] = ContextVar(f"voxlane_store_tx_{id(self)}", default=None)

    async def open(self) -> None:
        """Connect and bring the schema to the newest revision (see :mod:`server.storage.migrate`)."""
        if self._engine is not None:
            return
        engine = make_engine(self.url)
        try:
            await upgrade_engine(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._engine, self._writer = engine, engine.execution_options(**WRITE)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = self._writer = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("store is not open")
        return self._engine

    # ------------------------------------------------------------ plumbing

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One write transaction around several calls: every store method the current task calls inside it joins
        it, and commits or rolls back with it (a nested ``transaction()`` joins the outer one).

        What has to change together does: a transcript's completion with its outbox jobs and its chunk's state,
        a row with the job that concerns it. Callbacks given to :meth:`after_commit` run once it committed.
        Keep it short (SQLite holds its write lock until the end) and start no task inside it that outlives it.
        """
        if self._tx.get() is not None:
            yield
            return
        if self._writer is None:
            raise RuntimeError("store is not open")
        tx = _Transaction()
        async with self._writer.begin() as conn:
            tx.connection = conn
            token = self._tx.set(tx)
            try:
                yield
            finally:
                self._tx.reset(token)
        for callback in tx.committed:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current transaction committed (at once when there is none)."""
        tx = self._tx.get()
        if tx is None:
            callback()
        else:
            tx.committed.append(callback)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A write connection in a transaction: the current :meth:`transaction`'s, else one of its own (for
        queries the store does not offer, such as a job queue's, that must commit with the store's rows)."""
        async with self._write() as conn:
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction (on SQLite it holds the write lock from its first statement)."""
        tx = self._tx.get()
        if tx is not None and tx.connection is not None:
            yield tx.connection
            return
        if self._writer is None:
            raise RuntimeError("store is not open")
        async with self._writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _write_guarded(self) -> AsyncIterator[AsyncConnection]:
        """:meth:`_write` for a statement that may break a constraint: inside a transaction it runs in a savepoint,
        so the caller can answer the IntegrityError and the transaction goes on (PostgreSQL aborts a whole
        transaction at its first error otherwise)."""
        async with self._write() as conn:
            if self._tx.get() is None:
                yield conn
                return
            async with conn.begin_nested():
                yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        """A connection to read with: inside a transaction its own (SQLite has one connection, and a read must
        see the transaction's writes)."""
        tx = self._tx.get()
        if tx is not None and tx.connection is not None:
            yield tx.connection
            return
        async with self.engine.connect() as conn:
            yield conn

    async def _read_rows(self, stmt: Select) -> list[RowMapping]:
        async with self._read() as conn:
            return list((await conn.execute(stmt)).mappings())

    async def _read_row(self, stmt: Select) -> RowMapping | None:
        async with self._read() as conn:
            return (await conn.execute(stmt)).mappings().first()

    async def _read_scalar(self, stmt: Select) -> Any:
        async with self._read() as conn:
            return (await conn.execute(stmt)).scalar()

    async def _read_page(self, table: Table, where: Sequence[ColumnElement[bool]], page: int, size: int
                         ) -> tuple[list[RowMapping], int]:
        """Newest first, with the total of matching rows (one snapshot for both)."""
        async with self._read() as conn:
            total = (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
            rows = await conn.execute(select(table).where(*where).order_by(*_newest_first(table))
                                      .limit(size).offset((page - 1) * size))
            return list(rows.mappings()), total

    async def _write_row(self, stmt: Insert | Update) -> RowMapping | None:
        """Run a statement with RETURNING; the first row it returned."""
        async with self._write() as conn:
            return (await conn.execute(stmt)).mappings().first()

    async def _write_count(self, stmt: Update | Delete) -> int:
        async with self._write() as conn:
            return (await conn.execute(stmt)).rowcount

    def _upsert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        """INSERT with the dialect's ON CONFLICT clauses (same method names on both)."""
        return (sqlite.insert if self.engine.dialect.name == "sqlite" else postgresql.insert)(table)

    def _now(self) -> datetime:
        now = datetime.now(UTC)
        if now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now

    # ------------------------------------------------------------ transcripts

    async def create_transcript(self, *, name: str | None = None, source_language: str | None = None,
                                owner: str | None = None, status: str = "created", transcript_id: str | None = None,
                                meta: dict[str, Any] | None = None) -> dict[str, Any]:
        now = self._now()
        name = name or f"Transcript {isoformat(now)[:16].replace('T', ' ')}"
        row = await self._write_row(insert(T).values(
            id=transcript_id or new_id(), name=name, status=status, source_language=source_language, owner=owner,
            meta=meta or {}, created_at=now, updated_at=now).returning(*T.c))
        assert row is not None
        return _transcript(row)

    async def get_transcript(self, transcript_id: str) -> dict[str, Any] | None:
        row = await self._read_row(select(T).where(T.c.id == transcript_id))
        return _transcript(row) if row is not None else None

    async def list_transcripts(self, *, page: int = 1, size: int = 50, status: str | None = None,
                               search: str | None = None, owner: str | None = ANY
                               ) -> tuple[list[dict[str, Any]], int]:
        where: list[ColumnElement[bool]] = []
        if status:
            where.append(T.c.status == status)
        if owner is not ANY:
            where.append(_owned_by(T, owner))
        if search:
            pattern = "%" + "".join(_LIKE_ESCAPE + ch if ch in "%_\\" else ch for ch in search) + "%"
            where.append(or_(T.c.name.ilike(pattern, escape=_LIKE_ESCAPE), T.c.id.in_(
                select(S.c.transcript_id).where(S.c.text.ilike(pattern, escape=_LIKE_ESCAPE)))))
        rows, total = await self._read_page(T, where, page, size)
        return [_transcript(r) for r in rows], total

    async def update_transcript(self, transcript_id: str, *, fence: int | None = None, **fields: Any
                                ) -> dict[str, Any] | None:
        _check_fields(fields, MUTABLE_FIELDS)
        if not fields:
            return await self.get_transcript(transcript_id)
        async with self._write() as conn:
            if fence is not None:
                await _hold_fence(conn, transcript_id, fence)
            row = (await conn.execute(update(T).where(T.c.id == transcript_id)
                                      .values(**fields, updated_at=self._now()).returning(*T.c))).mappings().first()
        return _transcript(row) if row is not None else None

    async def take_live(self, transcript_id: str) -> int | None:
        row = await self._write_row(update(T).where(T.c.id == transcript_id)
                                    .values(status="live", live_fence=T.c.live_fence + 1, updated_at=self._now())
                                    .returning(T.c.live_fence))
        return int(row["live_fence"]) if row is not None else None

    async def edit_transcript_meta(self, transcript_id: str, change: Callable[[dict[str, Any]], dict[str, Any]],
                                   *, fence: int | None = None, **fields: Any) -> dict[str, Any] | None:
        _check_fields(fields, MUTABLE_FIELDS)
        if "meta" in fields:
            raise ValueError("edit_transcript_meta computes 'meta': do not pass it")
        async with self._write() as conn:
            # FOR UPDATE: PostgreSQL holds the row until commit; SQLite holds the write lock since BEGIN anyway.
            current = (await conn.execute(select(T.c.meta, T.c.live_fence).where(T.c.id == transcript_id)
                                          .with_for_update())).first()
            if current is None:
                return None
            if fence is not None and current.live_fence != fence:
                raise StaleFence(transcript_id, fence)
            meta = change(dict(current.meta or {}))
            row = (await conn.execute(update(T).where(T.c.id == transcript_id)
                                      .values(**fields, meta=meta, updated_at=self._now()).returning(*T.c))
                   ).mappings().one()
        return _transcript(row)

    async def merge_transcript_meta(self, transcript_id: str, patch: dict[str, Any], *, fence: int | None = None,
                                    **fields: Any) -> dict[str, Any] | None:
        def merged(meta: dict[str, Any]) -> dict[str, Any]:
            for key, value in patch.items():
                if value is None:
                    meta.pop(key, None)
                else:
                    meta[key] = value
            return meta

        return await self.edit_transcript_meta(transcript_id, merged, fence=fence, **fields)

    async def transition_transcript(self, transcript_id: str, from_statuses: tuple[str, ...], to_status: str, *,
                                    fence: int | None = None, claim: bool = False, **fields: Any
                                    ) -> dict[str, Any] | None:
        _check_fields(fields, MUTABLE_FIELDS)
        stmt = update(T).where(T.c.id == transcript_id, T.c.status.in_(from_statuses))
        if fence is not None:
            stmt = stmt.where(T.c.live_fence == fence)
        if claim:
            stmt = stmt.values(live_fence=T.c.live_fence + 1)
        row = await self._write_row(stmt.values(**fields, status=to_status, updated_at=self._now()).returning(*T.c))
        return _transcript(row) if row is not None else None

    async def list_transcript_ids(self, *, status: str, limit: int = 1000, after: str | None = None) -> list[str]:
        stmt = select(T.c.id).where(T.c.status == status)
        if after is not None:
            stmt = stmt.where(T.c.id > after)
        rows = await self._read_rows(stmt.order_by(T.c.id).limit(limit))
        return [r["id"] for r in rows]

    async def live_fences(self, transcript_ids: list[str]) -> dict[str, int]:
        if not transcript_ids:
            return {}
        rows = await self._read_rows(select(T.c.id, T.c.live_fence).where(T.c.id.in_(transcript_ids)))
        return {r["id"]: int(r["live_fence"]) for r in rows}

    async def delete_transcript(self, transcript_id: str) -> bool:
        return await self._write_count(delete(T).where(T.c.id == transcript_id)) > 0

    # ------------------------------------------------------------ segments

    async def save_segment(self, transcript_id: str, segment: dict[str, Any], *, fence: int | None = None) -> None:
        values = {"id": segment.get("id") or new_id(), "transcript_id": transcript_id, "text": segment["text"],
                  "speaker": segment.get("speaker"), "participant_id": segment.get("participant_id"),
                  "start": segment["start"], "end": segment["end"], "confidence": segment.get("confidence"),
                  "words": segment.get("words") or []}
        await self._put_by_id(S, values, fence)

    async def _put_by_id(self, table: Any, values: dict[str, Any], fence: int | None) -> None:
        """Insert or replace a row of ``table`` by its id; TranscriptNotFound when its transcript is gone."""
        stmt = self._upsert(table).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=[table.c.id],
                                          set_={key: stmt.excluded[key] for key in values if key != "id"})
        try:
            async with self._write_guarded() as conn:
                if fence is not None:
                    await _hold_fence(conn, values["transcript_id"], fence)
                await conn.execute(stmt)
        except IntegrityError as exc:
            raise TranscriptNotFound(values["transcript_id"]) from exc

    async def get_segments(self, transcript_id: str) -> list[dict[str, Any]]:
        rows = await self._read_rows(select(S).where(S.c.transcript_id == transcript_id)
                                     .order_by(S.c.start, S.c.end, S.c.id))
        return [_segment(r) for r in rows]

    async def delete_segments(self, transcript_id: str) -> int:
        await self._write_count(delete(U).where(U.c.transcript_id == transcript_id))
        return await self._write_count(delete(S).where(S.c.transcript_id == transcript_id))

    async def save_unredacted(self, transcript_id: str, segment: dict[str, Any], *, fence: int | None = None
                              ) -> None:
        values = {"id": segment["id"], "transcript_id": transcript_id, "text": segment["text"],
                  "start": segment["start"], "end": segment["end"], "words": segment.get("words") or []}
        await self._put_by_id(U, values, fence)

    async def get_unredacted(self, transcript_id: str, *, page: int = 1, size: int = 200
                             ) -> tuple[list[dict[str, Any]], int]:
        where = U.c.transcript_id == transcript_id
        rows = await self._read_rows(select(U).where(where).order_by(U.c.start, U.c.end, U.c.id)
                                     .limit(size).offset((page - 1) * size))
        total = await self._read_scalar(select(func.count()).select_from(U).where(where))
        return [_segment(r) for r in rows], int(total or 0)

    # ------------------------------------------------------------ audio items

    async def create_chunk(self, *, transcript_id: str, kind: str, status: str, index: int = 0,
                           upload_key: str | None = None, expires_at: float | None = None,
                           path: str | None = None, format: str | None = None, size: int | None = None,
                           duration: float | None = None, options: dict[str, Any] | None = None,
                           chunk_id: str | None = None) -> dict[str, Any]:
        now = self._now()
        stmt = insert(C).values(
            id=chunk_id or new_id(), transcript_id=transcript_id, kind=kind, idx=index, status=status,
            upload_key=upload_key, expires_at=expires_at, path=path, format=format, size=size, duration=duration,
            options=options or {}, created_at=now, updated_at=now).returning(*C.c)
        try:
            async with self._write_guarded() as conn:
                row = (await conn.execute(stmt)).mappings().first()
        except IntegrityError as exc:
            if await self.get_transcript(transcript_id) is None:
                raise TranscriptNotFound(transcript_id) from exc
            raise ValueError(f"chunk position or key already taken: {exc.orig}") from exc
        assert row is not None
        return _chunk(row)

    async def get_chunk(self, chunk_id: str) -> dict[str, Any] | None:
        row = await self._read_row(select(C).where(C.c.id == chunk_id))
        return _chunk(row) if row is not None else None

    async def get_chunk_by_key(self, upload_key: str) -> dict[str, Any] | None:
        row = await self._read_row(select(C).where(C.c.upload_key == upload_key))
        return _chunk(row) if row is not None else None

    async def list_chunks(self, *, transcript_id: str | None = None, kind: str | None = None,
                          statuses: tuple[str, ...] | None = None, owner: str | None = ANY,
                          limit: int | None = None, updated_before: float | None = None,
                          expires_before: float | None = None) -> list[dict[str, Any]]:
        stmt = select(C)
        if updated_before is not None:
            stmt = stmt.where(C.c.updated_at < datetime.fromtimestamp(updated_before, UTC))
        if expires_before is not None:
            stmt = stmt.where(C.c.expires_at < expires_before)
        if transcript_id is not None:
            stmt = stmt.where(C.c.transcript_id == transcript_id).order_by(C.c.idx, C.c.created_at, C.c.id)
        else:
            stmt = stmt.order_by(*_newest_first(C))
        if kind is not None:
            stmt = stmt.where(C.c.kind == kind)
        if statuses:
            stmt = stmt.where(C.c.status.in_(statuses))
        if owner is not ANY:
            stmt = stmt.where(C.c.transcript_id.in_(select(T.c.id).where(_owned_by(T, owner))))
        if limit is not None:
            stmt = stmt.limit(limit)
        return [_chunk(r) for r in await self._read_rows(stmt)]

    async def last_chunk_index(self, transcript_id: str, kind: str) -> int | None:
        return await self._read_scalar(select(func.max(C.c.idx)).where(C.c.transcript_id == transcript_id,
                                                                       C.c.kind == kind))

    async def get_chunk_at(self, transcript_id: str, kind: str, index: int) -> dict[str, Any] | None:
        row = await self._read_row(select(C).where(C.c.transcript_id == transcript_id, C.c.kind == kind,
                                                   C.c.idx == index).order_by(C.c.created_at, C.c.id).limit(1))
        return _chunk(row) if row is not None else None

    async def update_chunk(self, chunk_id: str, **fields: Any) -> dict[str, Any] | None:
        row = await self._write_row(update(C).where(C.c.id == chunk_id).values(**self._chunk_values(fields))
                                    .returning(*C.c))
        return _chunk(row) if row is not None else None

    async def transition_chunk(self, chunk_id: str, from_statuses: tuple[str, ...], to_status: str, *,
                               expect_attempts: int | None = None, **fields: Any) -> dict[str, Any] | None:
        # One conditional UPDATE: PostgreSQL re-checks the WHERE on the row a concurrent winner committed,
        # SQLite runs it under the write lock; either way a loser matches no row.
        where = [C.c.id == chunk_id, C.c.status.in_(from_statuses)]
        if expect_attempts is not None:
            where.append(C.c.attempts == expect_attempts)
        row = await self._write_row(
            update(C).where(*where).values(**self._chunk_values({**fields, "status": to_status})).returning(*C.c))
        return _chunk(row) if row is not None else None

    async def claim_chunk_upload(self, chunk_id: str, *, stale_before: float) -> dict[str, Any] | None:
        row = await self._write_row(
            update(C).where(C.c.id == chunk_id, or_(C.c.status == "issued", and_(
                C.c.status == "receiving", C.c.updated_at < datetime.fromtimestamp(stale_before, UTC))))
            .values(status="receiving", updated_at=self._now()).returning(*C.c))
        return _chunk(row) if row is not None else None

    def _chunk_values(self, fields: dict[str, Any]) -> dict[str, Any]:
        _check_fields(fields, CHUNK_FIELDS)
        values = {**fields, "updated_at": self._now()}
        if "merged" in values:
            values["merged"] = int(bool(values["merged"]))
        return values

    async def delete_chunk(self, chunk_id: str) -> bool:
        return await self._write_count(delete(C).where(C.c.id == chunk_id)) > 0

    # ------------------------------------------------------------ projects and conversations

    async def create_project(self, *, title: str, language: str | None, portal: dict[str, Any],
                             owner: str | None, key_terms: list[str] | None = None) -> dict[str, Any]:
        now = self._now()
        row = await self._write_row(insert(P).values(id=new_id(), title=title, language=language, portal=portal,
                                                     owner=owner, key_terms=key_terms or [], created_at=now,
                                                     updated_at=now).returning(*P.c))
        assert row is not None
        return _plain(row)

    async def get_project(self, project_id: str) -> dict[str, Any] | None:
        return _plain_or_none(await self._read_row(select(P).where(P.c.id == project_id)))

    async def list_projects(self, *, owner: str | None = ANY, page: int = 1, size: int = 50
                            ) -> tuple[list[dict[str, Any]], int]:
        rows, total = await self._read_page(P, [] if owner is ANY else [_owned_by(P, owner)], page, size)
        return [_plain(r) for r in rows], total

    async def update_project(self, project_id: str, **fields: Any) -> dict[str, Any] | None:
        _check_fields(fields, PROJECT_FIELDS)
        return _plain_or_none(await self._write_row(update(P).where(P.c.id == project_id)
                                                    .values(**fields, updated_at=self._now()).returning(*P.c)))

    async def delete_project(self, project_id: str) -> bool:
        return await self._write_count(delete(P).where(P.c.id == project_id)) > 0

    async def create_conversation(self, *, transcript_id: str, project_id: str, name: str | None,
                                  email: str | None, tags: list[str], source: str | None) -> dict[str, Any]:
        row = await self._write_row(insert(V).values(
            id=transcript_id, project_id=project_id, name=name, email=email, tags=tags, source=source,
            created_at=self._now()).returning(*V.c))
        assert row is not None
        return _plain(row)

    async def lock(self, name: str) -> None:
        """Hold the named lock until the current transaction ends, across every process on this database (a bound
        counted and then added to, such as a project's open conversations). SQLite's write lock, taken when a
        write transaction begins, already serializes them."""
        if self.engine.dialect.name == "postgresql":
            async with self._write() as conn:
                await conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(name, 0))))

    async def get_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        return _plain_or_none(await self._read_row(select(V).where(V.c.id == conversation_id)))

    async def update_conversation(self, conversation_id: str, **fields: Any) -> dict[str, Any] | None:
        _check_fields(fields, CONVERSATION_FIELDS)
        if not fields:
            return await self.get_conversation(conversation_id)
        return _plain_or_none(await self._write_row(update(V).where(V.c.id == conversation_id).values(**fields)
                                                    .returning(*V.c)))

    async def list_conversations(self, project_id: str, *, offset: int = 0, limit: int = 1000
                                 ) -> list[dict[str, Any]]:
        rows = await self._read_rows(select(V).where(V.c.project_id == project_id)
                                     .order_by(V.c.created_at, V.c.id).limit(limit).offset(offset))
        return [_plain(r) for r in rows]

    async def count_open_conversations(self, project_id: str, active_since: str) -> int:
        recent_chunk = exists().where(C.c.transcript_id == V.c.id, C.c.updated_at >= active_since)
        return await self._read_scalar(select(func.count()).select_from(V).where(
            V.c.project_id == project_id, V.c.finished_at.is_(None),
            or_(V.c.created_at >= active_since, recent_chunk)))

    async def list_unsettled_conversations(self) -> list[dict[str, Any]]:
        rows = await self._read_rows(
            select(V).join(T, T.c.id == V.c.id)
            .where(V.c.finished_at.is_not(None), T.c.status.not_in(("completed", "failed")))
            .order_by(V.c.created_at, V.c.id))
        return [_plain(r) for r in rows]

    # ------------------------------------------------------------ summary jobs

    async def create_summary_job(self, *, job_id: str, owner: str | None, request: dict[str, Any],
                                 message: str) -> dict[str, Any]:
        now = self._now()
        row = await self._write_row(insert(SJ).values(id=job_id, owner=owner, status="processing", message=message,
                                                      progress=0.0, request=request, created_at=now, updated_at=now)
                                    .returning(*SJ.c))
        assert row is not None
        return _plain(row)

    async def get_summary_job(self, job_id: str) -> dict[str, Any] | None:
        return _plain_or_none(await self._read_row(select(SJ).where(SJ.c.id == job_id)))

    async def update_summary_job(self, job_id: str, **fields: Any) -> dict[str, Any] | None:
        _check_fields(fields, SUMMARY_JOB_FIELDS)
        return _plain_or_none(await self._write_row(update(SJ).where(SJ.c.id == job_id)
                                                    .values(**fields, updated_at=self._now()).returning(*SJ.c)))

    async def delete_summary_jobs(self, created_before: str) -> int:
        return await self._write_count(delete(SJ).where(SJ.c.created_at < created_before))

    # ------------------------------------------------------------ project reports

    async def create_report(self, *, project_id: str, owner: str | None, title: str, filters: dict[str, Any],
                            conversation_ids: list[str]) -> dict[str, Any]:
        now = self._now()
        row = await self._write_row(insert(R).values(
            id=new_id(), project_id=project_id, owner=owner, title=title, status="summarizing", filters=filters,
            conversations=conversation_ids, progress={}, created_at=now, updated_at=now).returning(*R.c))
        assert row is not None
        return _plain(row)

    async def get_report(self, report_id: str) -> dict[str, Any] | None:
        return _plain_or_none(await self._read_row(select(R).where(R.c.id == report_id)))

    async def list_reports(self, project_id: str, *, page: int = 1, size: int = 50
                           ) -> tuple[list[dict[str, Any]], int]:
        rows, total = await self._read_page(R, [R.c.project_id == project_id], page, size)
        return [_plain(r) for r in rows], total

    async def count_unfinished_reports(self, project_id: str) -> int:
        return await self._read_scalar(select(func.count()).select_from(R).where(
            R.c.project_id == project_id, R.c.status.in_(("summarizing", "generating"))))

    async def record_report_item(self, report_id: str, conversation_id: str, state: str) -> dict[str, Any] | None:
        async with self._write() as conn:
            # FOR UPDATE: PostgreSQL holds the row until commit; SQLite holds the write lock since BEGIN anyway.
            current = (await conn.execute(select(R).where(R.c.id == report_id).with_for_update())).mappings().first()
            if current is None:
                return None
            progress = dict(current["progress"] or {})
            if conversation_id in progress:
                return _plain(current)
            progress[conversation_id] = state
            row = (await conn.execute(update(R).where(R.c.id == report_id)
                                      .values(progress=progress, updated_at=self._now()).returning(*R.c))
                   ).mappings().one()
        return _plain(row)

    async def transition_report(self, report_id: str, from_statuses: tuple[str, ...], to_status: str,
                                **fields: Any) -> dict[str, Any] | None:
        _check_fields(fields, REPORT_FIELDS)
        return _plain_or_none(await self._write_row(
            update(R).where(R.c.id == report_id, R.c.status.in_(from_statuses))
            .values(**fields, status=to_status, updated_at=self._now()).returning(*R.c)))

    async def delete_report(self, report_id: str) -> bool:
        return await self._write_count(delete(R).where(R.c.id == report_id)) > 0

    # ------------------------------------------------------------ API keys and server secrets

    async def create_api_key(self, *, key_id: str, key_hash: str, user: str | None, scopes: list[str],
                             name: str | None) -> dict[str, Any]:
        row = await self._write_row(insert(K).values(id=key_id, key_hash=key_hash, user=user, scopes=scopes,
                                                     name=name, created_at=self._now()).returning(*K.c))
        assert row is not None
        return _plain(row, omit=("key_hash",))

    async def get_api_key(self, key_id: str) -> dict[str, Any] | None:
        return _plain_or_none(await self._read_row(select(K).where(K.c.id == key_id)))

    async def list_api_keys(self) -> list[dict[str, Any]]:
        rows = await self._read_rows(select(K).order_by(K.c.created_at, K.c.id))
        return [_plain(r, omit=("key_hash",)) for r in rows]

    async def revoke_api_key(self, key_id: str) -> bool:
        return await self._write_count(update(K).where(K.c.id == key_id, K.c.revoked_at.is_(None))
                                       .values(revoked_at=self._now())) > 0

    async def touch_api_key(self, key_id: str) -> None:
        await self._write_count(update(K).where(K.c.id == key_id).values(last_used_at=self._now()))

    async def get_or_create_secret(self, name: str, value: str) -> str:
        async with self._write() as conn:
            await conn.execute(self._upsert(secrets).values(name=name, value=value)
                               .on_conflict_do_nothing(index_elements=[secrets.c.name]))
            return (await conn.execute(select(secrets.c.value).where(secrets.c.name == name))).scalar_one()

    async def replace_secret(self, name: str, value: str) -> None:
        async with self._write() as conn:
            stmt = self._upsert(secrets).values(name=name, value=value)
            await conn.execute(stmt.on_conflict_do_update(index_elements=[secrets.c.name], set_={"value": value}))

    # ------------------------------------------------------------ webhooks and their deliveries

    async def create_webhook(self, *, project_id: str, url: str, events: list[str], secret: str,
                             description: str | None) -> dict[str, Any]:
        row = await self._write_row(insert(W).values(id=new_id(), project_id=project_id, url=url, events=events,
                                                     secret=secret, description=description,
                                                     created_at=self._now()).returning(*W.c))
        assert row is not None
        return _plain(row)

    async def get_webhook(self, webhook_id: str) -> dict[str, Any] | None:
        return _plain_or_none(await self._read_row(select(W).where(W.c.id == webhook_id)))

    async def list_webhooks(self, project_id: str) -> list[dict[str, Any]]:
        rows = await self._read_rows(select(W).where(W.c.project_id == project_id).order_by(W.c.created_at, W.c.id))
        return [_plain(r) for r in rows]

    async def delete_webhook(self, webhook_id: str) -> bool:
        return await self._write_count(delete(W).where(W.c.id == webhook_id)) > 0

    async def create_delivery(self, *, webhook_id: str, event: str, event_id: str, payload: str,
                              next_attempt_at: float) -> dict[str, Any] | None:
        now = self._now()
        stmt = self._upsert(D).values(
            id=new_id(), webhook_id=webhook_id, event=event, event_id=event_id, payload=payload, status="pending",
            next_attempt_at=next_attempt_at, created_at=now, updated_at=now)
        # RETURNING yields no row when the conflict skipped the insert: the endpoint had this event already.
        return _plain_or_none(await self._write_row(
            stmt.on_conflict_do_nothing(index_elements=[D.c.webhook_id, D.c.event_id]).returning(*D.c)))

    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        return _plain_or_none(await self._read_row(select(D).where(D.c.id == delivery_id)))

    async def list_deliveries(self, webhook_id: str, *, status: str | None = None, page: int = 1, size: int = 50
                              ) -> tuple[list[dict[str, Any]], int]:
        where = [D.c.webhook_id == webhook_id, *([] if status is None else [D.c.status == status])]
        rows, total = await self._read_page(D, where, page, size)
        return [_plain(r) for r in rows], total

    async def pending_deliveries(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._read_rows(select(D).where(D.c.status == "pending")
                                     .order_by(D.c.next_attempt_at.asc().nulls_first(), D.c.created_at, D.c.id)
                                     .limit(limit))
        return [_plain(r) for r in rows]

    async def claim_delivery(self, delivery_id: str, attempts: int, lease_until: float) -> dict[str, Any] | None:
        return _plain_or_none(await self._write_row(
            update(D).where(D.c.id == delivery_id, D.c.status == "pending", D.c.attempts == attempts)
            .values(attempts=D.c.attempts + 1, next_attempt_at=lease_until, updated_at=self._now())
            .returning(*D.c)))

    async def update_delivery(self, delivery_id: str, **fields: Any) -> dict[str, Any] | None:
        _check_fields(fields, DELIVERY_FIELDS)
        return _plain_or_none(await self._write_row(update(D).where(D.c.id == delivery_id)
                                                    .values(**fields, updated_at=self._now()).returning(*D.c)))


class _Transaction:
    def __init__(self) -> None:
        self.connection: AsyncConnection | None = None
        self.committed: list[Callable[[], None]] = []


def _check_fields(fields: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in fields:
        if key not in allowed:
            raise ValueError(f"cannot update {key!r}")


def _owned_by(table: Table, owner: str | None) -> ColumnElement[bool]:
    """``owner`` None: rows without an owner (SQL's ``= NULL`` would match nothing)."""
    return table.c.owner.is_(None) if owner is None else table.c.owner == owner


def _newest_first(table: Table) -> tuple[ColumnElement[Any], ...]:
    return table.c.created_at.desc(), table.c.id.desc()


def _plain(row: RowMapping, omit: Iterable[str] = ()) -> dict[str, Any]:
    """A row as the protocol's dict: instants become ISO text, or epoch seconds for schedules."""
    out = dict(row)
    for key in omit:
        out.pop(key, None)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.timestamp() if key in EPOCH_COLUMNS else isoformat(value)
    return out


def _plain_or_none(row: RowMapping | None) -> dict[str, Any] | None:
    return _plain(row) if row is not None else None


async def _hold_fence(conn: AsyncConnection, transcript_id: str, fence: int) -> None:
    """Refuse a live stream's write unless its transcript is still at the stream's fence, and hold the row until
    the write commits: PostgreSQL's FOR SHARE makes a claim that moves the fence wait for it, so no write that
    passed this check lands after the claim (SQLite holds its one write lock since BEGIN anyway)."""
    current = (await conn.execute(select(T.c.live_fence).where(T.c.id == transcript_id)
                                  .with_for_update(read=True))).first()
    if current is None:
        raise TranscriptNotFound(transcript_id)
    if current.live_fence != fence:
        raise StaleFence(transcript_id, fence)


def _transcript(row: RowMapping) -> dict[str, Any]:
    out = _plain(row)
    if out["participants"] is None:
        out["participants"] = []
    if out["meta"] is None:
        out["meta"] = {}
    return out


def _segment(row: RowMapping) -> dict[str, Any]:
    return _plain(row, omit=("transcript_id",))


def _chunk(row: RowMapping) -> dict[str, Any]:
    out = _plain(row)
    out["index"] = out.pop("idx")
    out["merged"] = bool(out["merged"])
    return out
