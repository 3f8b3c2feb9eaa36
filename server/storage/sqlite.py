"""The embedded backend: one SQLite file in the data dir (WAL mode, one connection)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiosqlite

from server.storage.base import (
    ANY,
    CHUNK_FIELDS,
    CONVERSATION_FIELDS,
    DELIVERY_FIELDS,
    MUTABLE_FIELDS,
    PROJECT_FIELDS,
    TranscriptNotFound,
    new_id,
    utcnow,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS transcripts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    source_language TEXT,
    owner TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    duration REAL,
    participants TEXT NOT NULL DEFAULT '[]',
    summary TEXT,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS transcripts_created ON transcripts (created_at);
CREATE TABLE IF NOT EXISTS segments (
    id TEXT PRIMARY KEY,
    transcript_id TEXT NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE,
    text TEXT NOT NULL,
    speaker TEXT,
    participant_id TEXT,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    confidence REAL,
    words TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS segments_transcript ON segments (transcript_id, start);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,
    transcript_id TEXT NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    upload_key TEXT UNIQUE,
    expires_at REAL,
    path TEXT,
    format TEXT,
    size INTEGER,
    duration REAL,
    "offset" REAL,
    text TEXT,
    segments TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    merged INTEGER NOT NULL DEFAULT 0,
    options TEXT NOT NULL DEFAULT '{}',
    progress REAL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_transcript ON chunks (transcript_id, idx);
CREATE INDEX IF NOT EXISTS chunks_status ON chunks (status);
CREATE UNIQUE INDEX IF NOT EXISTS chunks_position ON chunks (transcript_id, idx) WHERE kind = 'chunk';
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    language TEXT,
    portal TEXT NOT NULL DEFAULT '{}',
    owner TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY REFERENCES transcripts(id) ON DELETE CASCADE,
    project_id TEXT NOT NULL,
    name TEXT,
    email TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    source TEXT,
    finished_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_project ON conversations (project_id);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL,
    user TEXT,
    scopes TEXT NOT NULL DEFAULT '[]',
    name TEXT,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    events TEXT NOT NULL DEFAULT '[]',
    secret TEXT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_project ON webhooks (project_id);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    last_error TEXT,
    response_status INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS webhook_deliveries_event ON webhook_deliveries (webhook_id, event_id);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
"""
_JSON = ("participants", "summary", "meta")
_CHUNK_JSON = ("segments", "options")


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._db.executescript(SCHEMA)
        await self._db.commit()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    # ------------------------------------------------------------ transcripts

    async def create_transcript(self, *, name: str | None = None, source_language: str | None = None,
                                owner: str | None = None, status: str = "created") -> dict[str, Any]:
        now = utcnow()
        tid = new_id()
        await self.db.execute(
            "INSERT INTO transcripts (id, name, status, source_language, owner, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (tid, name or f"Transcript {now[:16].replace('T', ' ')}", status, source_language, owner, now, now))
        await self.db.commit()
        row = await self.get_transcript(tid)
        assert row is not None
        return row

    async def get_transcript(self, transcript_id: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM transcripts WHERE id = ?", (transcript_id,)) as cur:
            row = await cur.fetchone()
        return _transcript(row) if row else None

    async def list_transcripts(self, *, page: int = 1, size: int = 50, status: str | None = None,
                               search: str | None = None, owner: str | None = ANY
                               ) -> tuple[list[dict[str, Any]], int]:
        where, args = [], []
        if status:
            where.append("status = ?")
            args.append(status)
        if owner is not ANY:
            where.append("owner IS ?")
            args.append(owner)
        if search:
            where.append("(name LIKE ? ESCAPE '\\' OR id IN (SELECT transcript_id FROM segments"
                         " WHERE text LIKE ? ESCAPE '\\'))")
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            args += [pattern, pattern]
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        async with self.db.execute(f"SELECT COUNT(*) FROM transcripts{clause}", args) as cur:
            total = (await cur.fetchone())[0]
        async with self.db.execute(
                f"SELECT * FROM transcripts{clause} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                [*args, size, (page - 1) * size]) as cur:
            rows = await cur.fetchall()
        return [_transcript(r) for r in rows], total

    async def update_transcript(self, transcript_id: str, **fields: Any) -> dict[str, Any] | None:
        sets, args = [], []
        for key, value in fields.items():
            if key not in MUTABLE_FIELDS:
                raise ValueError(f"cannot update {key!r}")
            sets.append(f"{key} = ?")
            args.append(json.dumps(value) if key in _JSON else value)
        if sets:
            sets.append("updated_at = ?")
            args.append(utcnow())
            await self.db.execute(f"UPDATE transcripts SET {', '.join(sets)} WHERE id = ?", [*args, transcript_id])
            await self.db.commit()
        return await self.get_transcript(transcript_id)

    async def delete_transcript(self, transcript_id: str) -> bool:
        cur = await self.db.execute("DELETE FROM transcripts WHERE id = ?", (transcript_id,))
        await self.db.commit()
        return cur.rowcount > 0

    # ------------------------------------------------------------ segments

    async def save_segment(self, transcript_id: str, segment: dict[str, Any]) -> None:
        try:
            await self.db.execute(
                'INSERT OR REPLACE INTO segments (id, transcript_id, text, speaker, participant_id, start, "end",'
                " confidence, words) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (segment.get("id") or new_id(), transcript_id, segment["text"], segment.get("speaker"),
                 segment.get("participant_id"), segment["start"], segment["end"], segment.get("confidence"),
                 json.dumps(segment.get("words") or [])))
            await self.db.commit()
        except aiosqlite.IntegrityError as exc:
            raise TranscriptNotFound(transcript_id) from exc

    async def get_segments(self, transcript_id: str) -> list[dict[str, Any]]:
        async with self.db.execute(
                'SELECT * FROM segments WHERE transcript_id = ? ORDER BY start, "end", rowid',
                (transcript_id,)) as cur:
            rows = await cur.fetchall()
        return [_segment(r) for r in rows]

    async def delete_segments(self, transcript_id: str) -> int:
        cur = await self.db.execute("DELETE FROM segments WHERE transcript_id = ?", (transcript_id,))
        await self.db.commit()
        return cur.rowcount

    # ------------------------------------------------------------ audio items

    async def create_chunk(self, *, transcript_id: str, kind: str, status: str, index: int = 0,
                           upload_key: str | None = None, expires_at: float | None = None,
                           path: str | None = None, format: str | None = None, size: int | None = None,
                           duration: float | None = None, options: dict[str, Any] | None = None
                           ) -> dict[str, Any]:
        now = utcnow()
        cid = new_id()
        try:
            await self.db.execute(
                "INSERT INTO chunks (id, transcript_id, kind, idx, status, upload_key, expires_at, path, format, size,"
                " duration, options, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cid, transcript_id, kind, index, status, upload_key, expires_at, path, format, size, duration,
                 json.dumps(options or {}), now, now))
            await self.db.commit()
        except aiosqlite.IntegrityError as exc:
            if await self.get_transcript(transcript_id) is None:
                raise TranscriptNotFound(transcript_id) from exc
            raise ValueError(f"chunk position or key already taken: {exc}") from exc
        row = await self.get_chunk(cid)
        assert row is not None
        return row

    async def get_chunk(self, chunk_id: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM chunks WHERE id = ?", (chunk_id,)) as cur:
            row = await cur.fetchone()
        return _chunk(row) if row else None

    async def get_chunk_by_key(self, upload_key: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM chunks WHERE upload_key = ?", (upload_key,)) as cur:
            row = await cur.fetchone()
        return _chunk(row) if row else None

    async def list_chunks(self, *, transcript_id: str | None = None, kind: str | None = None,
                          statuses: tuple[str, ...] | None = None, owner: str | None = ANY,
                          limit: int | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if transcript_id is not None:
            where.append("transcript_id = ?")
            args.append(transcript_id)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if statuses:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            args += list(statuses)
        if owner is not ANY:
            where.append("transcript_id IN (SELECT id FROM transcripts WHERE owner IS ?)")
            args.append(owner)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        order = "idx, created_at" if transcript_id is not None else "created_at DESC, rowid DESC"
        async with self.db.execute(f"SELECT * FROM chunks{clause} ORDER BY {order} LIMIT ?",
                                   [*args, -1 if limit is None else limit]) as cur:
            rows = await cur.fetchall()
        return [_chunk(r) for r in rows]

    async def last_chunk_index(self, transcript_id: str, kind: str) -> int | None:
        async with self.db.execute("SELECT MAX(idx) FROM chunks WHERE transcript_id = ? AND kind = ?",
                                   (transcript_id, kind)) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def get_chunk_at(self, transcript_id: str, kind: str, index: int) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM chunks WHERE transcript_id = ? AND kind = ? AND idx = ?"
                                   " ORDER BY created_at LIMIT 1", (transcript_id, kind, index)) as cur:
            row = await cur.fetchone()
        return _chunk(row) if row else None

    async def update_chunk(self, chunk_id: str, **fields: Any) -> dict[str, Any] | None:
        sets, args = _chunk_sets(fields)
        await self.db.execute(f"UPDATE chunks SET {', '.join(sets)} WHERE id = ?", [*args, chunk_id])
        await self.db.commit()
        return await self.get_chunk(chunk_id)

    async def transition_chunk(self, chunk_id: str, from_statuses: tuple[str, ...], to_status: str,
                               **fields: Any) -> dict[str, Any] | None:
        sets, args = _chunk_sets({**fields, "status": to_status})
        cur = await self.db.execute(
            f"UPDATE chunks SET {', '.join(sets)} WHERE id = ? AND status IN ({', '.join('?' for _ in from_statuses)})",
            [*args, chunk_id, *from_statuses])
        await self.db.commit()
        return await self.get_chunk(chunk_id) if cur.rowcount == 1 else None

    async def delete_chunk(self, chunk_id: str) -> bool:
        cur = await self.db.execute("DELETE FROM chunks WHERE id = ?", (chunk_id,))
        await self.db.commit()
        return cur.rowcount > 0

    # ------------------------------------------------------------ projects and conversations

    async def create_project(self, *, title: str, language: str | None, portal: dict[str, Any],
                             owner: str | None) -> dict[str, Any]:
        now = utcnow()
        pid = new_id()
        await self.db.execute(
            "INSERT INTO projects (id, title, language, portal, owner, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", (pid, title, language, json.dumps(portal), owner, now, now))
        await self.db.commit()
        row = await self.get_project(pid)
        assert row is not None
        return row

    async def get_project(self, project_id: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM projects WHERE id = ?", (project_id,)) as cur:
            row = await cur.fetchone()
        return _with_json(row, ("portal",)) if row else None

    async def list_projects(self, *, owner: str | None = ANY, page: int = 1, size: int = 50
                            ) -> tuple[list[dict[str, Any]], int]:
        clause, args = ("", []) if owner is ANY else (" WHERE owner IS ?", [owner])
        async with self.db.execute(f"SELECT COUNT(*) FROM projects{clause}", args) as cur:
            total = (await cur.fetchone())[0]
        async with self.db.execute(
                f"SELECT * FROM projects{clause} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                [*args, size, (page - 1) * size]) as cur:
            rows = await cur.fetchall()
        return [_with_json(r, ("portal",)) for r in rows], total

    async def update_project(self, project_id: str, **fields: Any) -> dict[str, Any] | None:
        sets, args = _sets(fields, PROJECT_FIELDS, ("portal",))
        sets.append("updated_at = ?")
        args.append(utcnow())
        await self.db.execute(f"UPDATE projects SET {', '.join(sets)} WHERE id = ?", [*args, project_id])
        await self.db.commit()
        return await self.get_project(project_id)

    async def delete_project(self, project_id: str) -> bool:
        cur = await self.db.execute("DELETE FROM projects WHERE id = ?", (project_id,))
        await self.db.commit()
        return cur.rowcount > 0

    async def create_conversation(self, *, transcript_id: str, project_id: str, name: str | None,
                                  email: str | None, tags: list[str], source: str | None) -> dict[str, Any]:
        await self.db.execute(
            "INSERT INTO conversations (id, project_id, name, email, tags, source, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (transcript_id, project_id, name, email, json.dumps(tags), source, utcnow()))
        await self.db.commit()
        row = await self.get_conversation(transcript_id)
        assert row is not None
        return row

    async def get_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)) as cur:
            row = await cur.fetchone()
        return _with_json(row, ("tags",)) if row else None

    async def update_conversation(self, conversation_id: str, **fields: Any) -> dict[str, Any] | None:
        sets, args = _sets(fields, CONVERSATION_FIELDS, ("tags",))
        if sets:
            await self.db.execute(f"UPDATE conversations SET {', '.join(sets)} WHERE id = ?",
                                  [*args, conversation_id])
            await self.db.commit()
        return await self.get_conversation(conversation_id)

    async def list_conversations(self, project_id: str, *, offset: int = 0, limit: int = 1000
                                 ) -> list[dict[str, Any]]:
        async with self.db.execute(
                "SELECT * FROM conversations WHERE project_id = ? ORDER BY created_at, rowid LIMIT ? OFFSET ?",
                (project_id, limit, offset)) as cur:
            rows = await cur.fetchall()
        return [_with_json(r, ("tags",)) for r in rows]

    async def count_open_conversations(self, project_id: str, active_since: str) -> int:
        async with self.db.execute(
                "SELECT COUNT(*) FROM conversations c WHERE c.project_id = ? AND c.finished_at IS NULL"
                " AND (c.created_at >= ? OR EXISTS (SELECT 1 FROM chunks k WHERE k.transcript_id = c.id"
                " AND k.updated_at >= ?))", (project_id, active_since, active_since)) as cur:
            row = await cur.fetchone()
        return row[0]

    async def list_unsettled_conversations(self) -> list[dict[str, Any]]:
        async with self.db.execute(
                "SELECT c.* FROM conversations c JOIN transcripts t ON t.id = c.id WHERE c.finished_at IS NOT NULL"
                " AND t.status NOT IN ('completed', 'failed')") as cur:
            rows = await cur.fetchall()
        return [_with_json(r, ("tags",)) for r in rows]

    # ------------------------------------------------------------ API keys and server secrets

    async def create_api_key(self, *, key_id: str, key_hash: str, user: str | None, scopes: list[str],
                             name: str | None) -> dict[str, Any]:
        await self.db.execute(
            "INSERT INTO api_keys (id, key_hash, user, scopes, name, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, key_hash, user, json.dumps(scopes), name, utcnow()))
        await self.db.commit()
        row = await self.get_api_key(key_id)
        assert row is not None
        row.pop("key_hash")
        return row

    async def get_api_key(self, key_id: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)) as cur:
            row = await cur.fetchone()
        return _with_json(row, ("scopes",)) if row else None

    async def list_api_keys(self) -> list[dict[str, Any]]:
        async with self.db.execute("SELECT * FROM api_keys ORDER BY created_at, rowid") as cur:
            rows = await cur.fetchall()
        out = [_with_json(r, ("scopes",)) for r in rows]
        for r in out:
            r.pop("key_hash")
        return out

    async def revoke_api_key(self, key_id: str) -> bool:
        cur = await self.db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                    (utcnow(), key_id))
        await self.db.commit()
        return cur.rowcount > 0

    async def touch_api_key(self, key_id: str) -> None:
        await self.db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (utcnow(), key_id))
        await self.db.commit()

    async def get_or_create_secret(self, name: str, value: str) -> str:
        await self.db.execute("INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)", (name, value))
        await self.db.commit()
        async with self.db.execute("SELECT value FROM secrets WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return row[0]

    # ------------------------------------------------------------ webhooks and their deliveries

    async def create_webhook(self, *, project_id: str, url: str, events: list[str], secret: str,
                             description: str | None) -> dict[str, Any]:
        wid = new_id()
        await self.db.execute(
            "INSERT INTO webhooks (id, project_id, url, events, secret, description, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", (wid, project_id, url, json.dumps(events), secret, description, utcnow()))
        await self.db.commit()
        row = await self.get_webhook(wid)
        assert row is not None
        return row

    async def get_webhook(self, webhook_id: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM webhooks WHERE id = ?", (webhook_id,)) as cur:
            row = await cur.fetchone()
        return _with_json(row, ("events",)) if row else None

    async def list_webhooks(self, project_id: str) -> list[dict[str, Any]]:
        async with self.db.execute("SELECT * FROM webhooks WHERE project_id = ? ORDER BY created_at, rowid",
                                   (project_id,)) as cur:
            rows = await cur.fetchall()
        return [_with_json(r, ("events",)) for r in rows]

    async def delete_webhook(self, webhook_id: str) -> bool:
        cur = await self.db.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
        await self.db.commit()
        return cur.rowcount > 0

    async def create_delivery(self, *, webhook_id: str, event: str, event_id: str, payload: str,
                              next_attempt_at: float) -> dict[str, Any] | None:
        did, now = new_id(), utcnow()
        cur = await self.db.execute(
            "INSERT OR IGNORE INTO webhook_deliveries (id, webhook_id, event, event_id, payload, status,"
            " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
            (did, webhook_id, event, event_id, payload, next_attempt_at, now, now))
        await self.db.commit()
        return await self.get_delivery(did) if cur.rowcount == 1 else None

    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def list_deliveries(self, webhook_id: str, *, status: str | None = None, page: int = 1, size: int = 50
                              ) -> tuple[list[dict[str, Any]], int]:
        clause, args = "WHERE webhook_id = ?", [webhook_id]
        if status is not None:
            clause += " AND status = ?"
            args.append(status)
        async with self.db.execute(f"SELECT COUNT(*) FROM webhook_deliveries {clause}", args) as cur:
            total = (await cur.fetchone())[0]
        async with self.db.execute(
                f"SELECT * FROM webhook_deliveries {clause} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                [*args, size, (page - 1) * size]) as cur:
            rows = await cur.fetchall()
        return [dict(r) for r in rows], total

    async def pending_deliveries(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self.db.execute(
                "SELECT * FROM webhook_deliveries WHERE status = 'pending' ORDER BY next_attempt_at, rowid LIMIT ?",
                (limit,)) as cur:
            rows = await cur.fetchall()
        return [dict(r) for r in rows]

    async def claim_delivery(self, delivery_id: str, attempts: int, lease_until: float) -> dict[str, Any] | None:
        cur = await self.db.execute(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?, updated_at = ?"
            " WHERE id = ? AND status = 'pending' AND attempts = ?", (lease_until, utcnow(), delivery_id, attempts))
        await self.db.commit()
        return await self.get_delivery(delivery_id) if cur.rowcount == 1 else None

    async def update_delivery(self, delivery_id: str, **fields: Any) -> dict[str, Any] | None:
        sets, args = _sets(fields, DELIVERY_FIELDS, ())
        sets.append("updated_at = ?")
        args.append(utcnow())
        await self.db.execute(f"UPDATE webhook_deliveries SET {', '.join(sets)} WHERE id = ?", [*args, delivery_id])
        await self.db.commit()
        return await self.get_delivery(delivery_id)


def _sets(fields: dict[str, Any], allowed: tuple[str, ...], json_fields: tuple[str, ...]
          ) -> tuple[list[str], list[Any]]:
    sets, args = [], []
    for key, value in fields.items():
        if key not in allowed:
            raise ValueError(f"cannot update {key!r}")
        sets.append(f'"{key}" = ?')
        args.append(json.dumps(value) if key in json_fields else value)
    return sets, args


def _chunk_sets(fields: dict[str, Any]) -> tuple[list[str], list[Any]]:
    sets, args = _sets(fields, CHUNK_FIELDS, _CHUNK_JSON)
    sets.append("updated_at = ?")
    args.append(utcnow())
    return sets, args


def _with_json(row: aiosqlite.Row, keys: tuple[str, ...]) -> dict[str, Any]:
    d = dict(row)
    for key in keys:
        if key in d:
            d[key] = json.loads(d[key]) if d[key] else None
    return d


def _chunk(row: aiosqlite.Row) -> dict[str, Any]:
    d = _with_json(row, _CHUNK_JSON)
    d["index"] = d.pop("idx")
    d["merged"] = bool(d["merged"])
    return d


def _transcript(row: aiosqlite.Row) -> dict[str, Any]:
    d = dict(row)
    for key in _JSON:
        d[key] = json.loads(d[key]) if d.get(key) else ({} if key == "meta" else [] if key == "participants" else None)
    return d


def _segment(row: aiosqlite.Row) -> dict[str, Any]:
    d = dict(row)
    d["words"] = json.loads(d["words"])
    d.pop("transcript_id", None)
    return d
