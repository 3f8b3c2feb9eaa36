"""The storage interface every backend implements.

Rows travel as plain dicts shaped like the REST resources, so routes and the
hub never see a backend's types. Words and other nested data are JSON.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

TRANSCRIPT_STATUSES = ("created", "live", "processing", "completed", "failed")
MUTABLE_FIELDS = ("name", "status", "source_language", "duration", "participants", "summary", "meta")

# Audio items ("chunks"): a whole upload, a job's file, or one kiosk chunk of a conversation.
CHUNK_KINDS = ("upload", "job", "chunk")
# issued: upload URL handed out; receiving: one node is taking its PUT's body; received: bytes stored, not
# confirmed; then the public states.
CHUNK_STATUSES = ("issued", "receiving", "received", "uploaded", "processing", "transcribed", "failed")
UNCONFIRMED = ("issued", "receiving", "received")
CHUNK_FIELDS = ("status", "path", "format", "size", "duration", "offset", "text", "segments", "error", "attempts",
                "merged", "options", "progress", "expires_at")
PROJECT_FIELDS = ("title", "language", "portal", "key_terms")
CONVERSATION_FIELDS = ("name", "email", "tags", "source", "finished_at")
# Webhook deliveries: stored before they are sent; pending until a 2xx (delivered) or the last attempt (failed).
DELIVERY_STATUSES = ("pending", "delivered", "failed")
DELIVERY_FIELDS = ("status", "attempts", "next_attempt_at", "last_error", "response_status", "delivered_at")
SUMMARY_JOB_FIELDS = ("status", "message", "progress", "result")
# Project reports: the fan-out summarizes each conversation, then the report is generated (or it failed).
REPORT_STATUSES = ("summarizing", "generating", "completed", "failed")
REPORT_FIELDS = ("status", "result", "error", "completed_at")


class _Any:
    """Sentinel: "no filter" for an owner argument, where ``None`` means "rows without an owner"."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


class TranscriptNotFound(LookupError):
    pass


class StaleFence(RuntimeError):
    """A live stream's write carried a fence its transcript has moved past: another stream took the transcript
    over (:meth:`Store.take_live`), or a node's sweep finished it, while this stream's node was stalled or cut
    off. The write is refused whole: a node that lost its transcript never adds to it again."""

    def __init__(self, transcript_id: str, fence: int) -> None:
        super().__init__(f"transcript {transcript_id}: fence {fence} is stale")
        self.transcript_id = transcript_id
        self.fence = fence


def new_id() -> str:
    return uuid.uuid4().hex


def isoformat(instant: datetime) -> str:
    """The one text form of a record time callers see: UTC, milliseconds, ``Z``."""
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow() -> str:
    return isoformat(datetime.now(UTC))


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """One write transaction that every store call of the current task joins until it ends (see SqlStore)."""

    def after_commit(self, callback: Callable[[], None]) -> None:
        """``callback`` once the current transaction committed (at once outside one)."""

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """The current transaction's connection, else a new one in a transaction of its own."""

    async def lock(self, name: str) -> None:
        """Hold the named lock, across processes, until the current transaction ends."""

    async def create_transcript(self, *, name: str | None = None, source_language: str | None = None,
                                owner: str | None = None, status: str = "created", transcript_id: str | None = None,
                                meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """``transcript_id``: chosen by the caller, whose files were stored under it before the row exists (a job
        whose row and file commit together, so a crash mid-upload leaves no row behind)."""

    async def get_transcript(self, transcript_id: str) -> dict[str, Any] | None: ...

    async def list_transcripts(self, *, page: int = 1, size: int = 50, status: str | None = None,
                               search: str | None = None, owner: str | None = ANY
                               ) -> tuple[list[dict[str, Any]], int]:
        """Newest first. ``owner``: ANY (no filter), a user, or None (rows without an owner)."""

    async def update_transcript(self, transcript_id: str, *, fence: int | None = None, **fields: Any
                                ) -> dict[str, Any] | None:
        """``fence``: a live stream's write (see :meth:`take_live`), StaleFence when the transcript has moved past
        it. The same holds for every write that takes a ``fence``."""

    async def take_live(self, transcript_id: str) -> int | None:
        """Make the transcript ``live`` for a stream that starts on it, and return the stream's fence: one more
        than any before, so from this write on the database refuses every fenced write of an older stream (one
        whose node stalled past its lease, or lost Redis, and goes on). None when there is no such transcript."""

    async def edit_transcript_meta(self, transcript_id: str, change: Callable[[dict[str, Any]], dict[str, Any]],
                                   *, fence: int | None = None, **fields: Any) -> dict[str, Any] | None:
        """Replace the transcript's ``meta`` by ``change(meta)`` atomically (with ``fields`` set in the same write)
        and return the updated row; None when there is no such transcript. ``change`` runs inside the write
        (keep it pure and quick): concurrent edits never lose each other's changes, where a read-modify-write
        through :meth:`update_transcript` would."""

    async def merge_transcript_meta(self, transcript_id: str, patch: dict[str, Any], *, fence: int | None = None,
                                    **fields: Any) -> dict[str, Any] | None:
        """:meth:`edit_transcript_meta` with a shallow merge of ``patch`` (a key set to None is removed)."""

    async def transition_transcript(self, transcript_id: str, from_statuses: tuple[str, ...], to_status: str, *,
                                    fence: int | None = None, claim: bool = False, **fields: Any
                                    ) -> dict[str, Any] | None:
        """Compare-and-set of a transcript's status (with ``fields`` in the same write); None when it was in none
        of ``from_statuses``: of two nodes completing one transcript, one does. With ``fence`` the transcript
        must also still be at that fence (None otherwise, not StaleFence); ``claim`` moves it on by one, so the
        stream that held it is refused from then on (a sweep finishing a dead node's stream)."""

    async def list_transcript_ids(self, *, status: str, limit: int = 1000, after: str | None = None) -> list[str]:
        """Ids of transcripts in ``status``, in id order; ``after`` an id, the page after it (a sweep of every
        one reads page by page)."""

    async def live_fences(self, transcript_ids: list[str]) -> dict[str, int]:
        """The fence each of these transcripts is at now (those that exist): a node that streams them learns
        that another node took one over without waiting for its next write."""

    async def delete_transcript(self, transcript_id: str) -> bool: ...

    async def save_segment(self, transcript_id: str, segment: dict[str, Any], *, fence: int | None = None) -> None:
        """Insert or replace one final segment (keyed by its id: an attempt that runs again replaces its own)."""

    async def get_segments(self, transcript_id: str) -> list[dict[str, Any]]:
        """Final segments in time order."""

    async def delete_segments(self, transcript_id: str) -> int:
        """Remove every final segment of a transcript (before re-transcribing it), the unredacted texts
        with them; returns how many segments."""

    async def save_unredacted(self, transcript_id: str, segment: dict[str, Any], *, fence: int | None = None
                              ) -> None:
        """Insert or replace the text as spoken (``id``, ``text``, ``start``, ``end``, ``words``) of a segment the
        correction pass redacted; only where ``VOXLANE_KEEP_UNREDACTED`` is on."""

    async def get_unredacted(self, transcript_id: str, *, page: int = 1, size: int = 200
                             ) -> tuple[list[dict[str, Any]], int]:
        """A page of the unredacted texts in time order, and how many there are."""

    # ------------------------------------------------------------ audio items (uploads, jobs, kiosk chunks)

    async def create_chunk(self, *, transcript_id: str, kind: str, status: str, index: int = 0,
                           upload_key: str | None = None, expires_at: float | None = None,
                           path: str | None = None, format: str | None = None, size: int | None = None,
                           duration: float | None = None, options: dict[str, Any] | None = None,
                           chunk_id: str | None = None) -> dict[str, Any]:
        """Raises ``ValueError`` when ``upload_key``, (transcript, kind=chunk, index) or a transcript's one upload
        or job file is taken."""

    async def get_chunk(self, chunk_id: str) -> dict[str, Any] | None: ...

    async def get_chunk_by_key(self, upload_key: str) -> dict[str, Any] | None: ...

    async def list_chunks(self, *, transcript_id: str | None = None, kind: str | None = None,
                          statuses: tuple[str, ...] | None = None, owner: str | None = ANY,
                          limit: int | None = None, updated_before: float | None = None,
                          expires_before: float | None = None) -> list[dict[str, Any]]:
        """By transcript: in index order; otherwise newest first. Every match unless ``limit`` is given: the
        server merges and resumes from these listings, so a default cap would silently drop rows. With
        ``updated_before`` (epoch seconds), only rows last written before then; with ``expires_before``, only
        rows whose upload URL expired before then."""

    async def last_chunk_index(self, transcript_id: str, kind: str) -> int | None:
        """The highest index of the transcript's items of ``kind`` (None: it has none)."""

    async def get_chunk_at(self, transcript_id: str, kind: str, index: int) -> dict[str, Any] | None:
        """The transcript's item of ``kind`` at ``index`` (kiosk chunks have at most one per index)."""

    async def update_chunk(self, chunk_id: str, **fields: Any) -> dict[str, Any] | None: ...

    async def transition_chunk(self, chunk_id: str, from_statuses: tuple[str, ...], to_status: str, *,
                               expect_attempts: int | None = None, **fields: Any) -> dict[str, Any] | None:
        """Atomically move a chunk from one of ``from_statuses`` to ``to_status`` (compare-and-set).

        Returns the updated row, or None when the chunk was not in one of those states: of two
        concurrent callers exactly one wins. This is what makes confirming and claiming idempotent.
        ``expect_attempts``: also only while its attempt count is still this one (a job attempt that another
        attempt overtook cannot finish the chunk).
        """

    async def claim_chunk_upload(self, chunk_id: str, *, stale_before: float) -> dict[str, Any] | None:
        """``issued`` -> ``receiving`` (compare-and-set): the one request, on any node, that takes a chunk's PUT
        body. A claim made before ``stale_before`` (epoch seconds: its node stopped receiving) is taken over."""

    async def delete_chunk(self, chunk_id: str) -> bool: ...

    # ------------------------------------------------------------ projects and conversations

    async def create_project(self, *, title: str, language: str | None, portal: dict[str, Any],
                             owner: str | None, key_terms: list[str] | None = None) -> dict[str, Any]: ...

    async def get_project(self, project_id: str) -> dict[str, Any] | None: ...

    async def list_projects(self, *, owner: str | None = ANY, page: int = 1, size: int = 50
                            ) -> tuple[list[dict[str, Any]], int]: ...

    async def update_project(self, project_id: str, **fields: Any) -> dict[str, Any] | None: ...

    async def delete_project(self, project_id: str) -> bool: ...

    async def create_conversation(self, *, transcript_id: str, project_id: str, name: str | None,
                                  email: str | None, tags: list[str], source: str | None) -> dict[str, Any]:
        """A conversation is the kiosk view of a transcript: same id."""

    async def get_conversation(self, conversation_id: str) -> dict[str, Any] | None: ...

    async def update_conversation(self, conversation_id: str, **fields: Any) -> dict[str, Any] | None: ...

    async def list_conversations(self, project_id: str, *, offset: int = 0, limit: int = 1000
                                 ) -> list[dict[str, Any]]:
        """A project's conversations, oldest first (page through big projects with ``offset``)."""

    async def count_open_conversations(self, project_id: str, active_since: str) -> int:
        """A project's unfinished conversations that started, or had a chunk change, at or after
        ``active_since`` (an ISO time as :func:`utcnow` writes it): abandoned ones stop counting."""

    async def list_unsettled_conversations(self) -> list[dict[str, Any]]:
        """Finished conversations whose transcript is not yet completed or failed (resumed at startup)."""

    # ------------------------------------------------------------ summary jobs (POST /api/summary/)

    async def create_summary_job(self, *, job_id: str, owner: str | None, request: dict[str, Any],
                                 message: str) -> dict[str, Any]: ...

    async def get_summary_job(self, job_id: str) -> dict[str, Any] | None: ...

    async def update_summary_job(self, job_id: str, **fields: Any) -> dict[str, Any] | None: ...

    async def delete_summary_jobs(self, created_before: str) -> int:
        """Forget summary jobs created before ``created_before`` (ISO time); how many."""

    # ------------------------------------------------------------ project reports

    async def create_report(self, *, project_id: str, owner: str | None, title: str, filters: dict[str, Any],
                            conversation_ids: list[str]) -> dict[str, Any]:
        """A report in ``summarizing`` over exactly ``conversation_ids``."""

    async def get_report(self, report_id: str) -> dict[str, Any] | None: ...

    async def list_reports(self, project_id: str, *, page: int = 1, size: int = 50
                           ) -> tuple[list[dict[str, Any]], int]:
        """A project's reports, newest first."""

    async def count_unfinished_reports(self, project_id: str) -> int:
        """A project's reports still summarizing or generating."""

    async def record_report_item(self, report_id: str, conversation_id: str, state: str) -> dict[str, Any] | None:
        """Note (atomically) that ``conversation_id``'s summary phase finished as ``state``; a conversation already
        noted keeps its first state. The updated row (None: no such report)."""

    async def transition_report(self, report_id: str, from_statuses: tuple[str, ...], to_status: str,
                                **fields: Any) -> dict[str, Any] | None:
        """Compare-and-set of a report's status (with ``fields``); None when it was in none of ``from_statuses``."""

    async def delete_report(self, report_id: str) -> bool: ...

    # ------------------------------------------------------------ API keys and server secrets

    async def create_api_key(self, *, key_id: str, key_hash: str, user: str | None, scopes: list[str],
                             name: str | None) -> dict[str, Any]: ...

    async def get_api_key(self, key_id: str) -> dict[str, Any] | None:
        """The row with its ``key_hash``; revoked keys included (``revoked_at`` set)."""

    async def list_api_keys(self) -> list[dict[str, Any]]:
        """Without hashes."""

    async def revoke_api_key(self, key_id: str) -> bool: ...

    async def touch_api_key(self, key_id: str) -> None:
        """Record a use (``last_used_at``)."""

    async def get_or_create_secret(self, name: str, value: str) -> str:
        """The stored secret ``name``; ``value`` is stored first if there is none (first writer wins)."""

    async def replace_secret(self, name: str, value: str) -> None:
        """Store ``value`` as the secret ``name``, whatever was there."""

    # ------------------------------------------------------------ webhooks and their deliveries

    async def create_webhook(self, *, project_id: str, url: str, events: list[str], secret: str,
                             description: str | None) -> dict[str, Any]: ...

    async def get_webhook(self, webhook_id: str) -> dict[str, Any] | None: ...

    async def list_webhooks(self, project_id: str) -> list[dict[str, Any]]:
        """A project's endpoints, oldest first."""

    async def delete_webhook(self, webhook_id: str) -> bool:
        """The endpoint and its delivery log."""

    async def create_delivery(self, *, webhook_id: str, event: str, event_id: str, payload: str,
                              next_attempt_at: float) -> dict[str, Any] | None:
        """A ``pending`` delivery of ``payload`` (the exact body to send). None when the endpoint already has
        one for ``event_id``: an event is delivered once per endpoint, however often it is emitted."""

    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None: ...

    async def list_deliveries(self, webhook_id: str, *, status: str | None = None, page: int = 1, size: int = 50
                              ) -> tuple[list[dict[str, Any]], int]:
        """An endpoint's delivery log, newest first."""

    async def pending_deliveries(self, limit: int = 100) -> list[dict[str, Any]]:
        """``pending`` deliveries, soonest ``next_attempt_at`` first."""

    async def claim_delivery(self, delivery_id: str, attempts: int, lease_until: float) -> dict[str, Any] | None:
        """Start attempt ``attempts + 1`` (compare-and-set on status ``pending`` and ``attempts``), leasing the
        delivery until ``lease_until``; None when someone else claimed it or it is no longer pending."""

    async def update_delivery(self, delivery_id: str, **fields: Any) -> dict[str, Any] | None: ...

    # ------------------------------------------------------------ rooms and meetings (meeting_queries.py)

    async def create_room(self, *, name: str, owner: str | None, project_id: str | None, platform: str,
                          settings: dict[str, Any]) -> dict[str, Any]: ...

    async def get_room(self, room_id: str) -> dict[str, Any] | None: ...

    async def list_rooms(self, *, owner: str | None = ANY, page: int = 1, size: int = 50
                         ) -> tuple[list[dict[str, Any]], int]: ...

    async def update_room(self, room_id: str, **fields: Any) -> dict[str, Any] | None: ...

    async def create_meeting(self, *, meeting_id: str, room_id: str | None, owner: str | None, platform: str,
                             start_date: str, end_date: str, urls: dict[str, Any],
                             external_id: str | None = None, meta: dict[str, Any] | None = None
                             ) -> dict[str, Any]:
        """A meeting shares its transcript's id (the transcript exists first)."""

    async def get_meeting(self, meeting_id: str) -> dict[str, Any] | None: ...

    async def list_meetings(self, *, owner: str | None = ANY, room_id: str | None = None, status: str | None = None,
                            page: int = 1, size: int = 50) -> tuple[list[dict[str, Any]], int]: ...

    async def update_meeting(self, meeting_id: str, **fields: Any) -> dict[str, Any] | None: ...

    async def end_meeting(self, meeting_id: str) -> dict[str, Any] | None:
        """``active`` -> ``ended`` once (compare-and-set); None when it was not active."""
