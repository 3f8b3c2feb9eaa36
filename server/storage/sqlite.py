"""The embedded backend: one SQLite file in the data dir (WAL mode, one connection)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiosqlite

from server.storage.base import MUTABLE_FIELDS, TranscriptNotFound, new_id, utcnow

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
"""
_JSON = ("participants", "summary", "meta")


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
                               search: str | None = None, owner: str | None = None
                               ) -> tuple[list[dict[str, Any]], int]:
        where, args = [], []
        if status:
            where.append("status = ?")
            args.append(status)
        if owner is not None:
            where.append("owner = ?")
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
