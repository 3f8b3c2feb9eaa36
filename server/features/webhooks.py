"""Webhooks: signed, durable, retried event deliveries to the endpoints a project registers.

An event (``conversation.transcribed``, ``conversation.summarized``, ``report.generated``) about a
conversation goes to every endpoint of the conversation's project that subscribed to it; transcripts outside
a project (live streams, uploads, jobs) have no endpoints and fire nothing.

Emitting stores one ``pending`` delivery per endpoint (the exact JSON body included) together with a ``deliver``
job, in the caller's transaction: a transcript's completion and its ``conversation.transcribed`` deliveries
commit together, so a crash can lose neither. Any node that takes jobs sends it (:class:`WebhookSender`).
Each attempt is claimed in the store (compare-and-set on the attempt count, with a lease) before it is sent, so
two nodes never send the same attempt. A delivery is ``delivered`` on a 2xx answer only; anything else (an error
status, a redirect, a timeout, a refused connection) is retried after ``VOXLANE_WEBHOOK_RETRY_BASE *
2**(attempt-1)`` seconds (at most an hour) by a new job scheduled for then, and ``failed`` after
``VOXLANE_WEBHOOK_MAX_ATTEMPTS``.

Every body carries a stable event ``id``: an event emitted twice with the same key (a merge that ran again
after a restart) is stored once per endpoint, and a receiver that saw an id before can drop the repeat (the
one case where it can get one: the server dies after the receiver answered 2xx but before that was stored).

Each request is signed: ``X-Voxlane-Signature: sha256=<hex>``, the HMAC-SHA256 with the endpoint's secret of
``X-Voxlane-Timestamp + "." + body`` (see :func:`signature`); the timestamp is new on every attempt, so a
receiver can refuse stale ones.

Endpoints are called through :mod:`server.http.outbound`: never an internal address (unless
``VOXLANE_OUTBOUND_ALLOWLIST`` allows it), checked again on every attempt and connected to exactly as checked.
The delivery log keeps a receiver's status code, never its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from server.http.outbound import OutboundGuard, OutboundRefused, guarded_client
from server.jobs.queue import Job
from server.jobs.runner import Task, in_status
from server.storage.base import utcnow

if TYPE_CHECKING:
    from server.jobs.queue import JobQueue
    from server.jobs.runner import JobContext
    from server.settings import Settings
    from server.storage import Store

log = logging.getLogger("voxlane.webhooks")

EVENTS = ("conversation.transcribed", "conversation.summarized", "report.generated")
SIGNATURE_HEADER = "X-Voxlane-Signature"
TIMESTAMP_HEADER = "X-Voxlane-Timestamp"
MAX_DELAY = 3600.0
MAX_ERROR = 300
DELIVER = "deliver"


class Outbox(Protocol):
    """Where an event's deliveries go: their rows, and the jobs that send them, staged in one transaction."""

    store: Store
    jobs: JobQueue


class WebhookParts(Outbox, Protocol):
    """What the ``deliver`` job takes: the outbox and this node's sender."""

    webhooks: WebhookSender | None
OVERDUE = 60.0
"""A pending delivery due this long ago with no job (one staged before jobs existed) gets one (housekeeping)."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Voxlane-Signature`` value for one request (``sha256=<hex>``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str, tolerance: float = 300.0) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), header)


def backoff(attempts: int, base: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt."""
    return min(MAX_DELAY, base * 2 ** max(0, attempts - 1))


# ---------------------------------------------------------------- emitting


async def emit_event(services: Outbox, transcript_id: str, event: str, payload: dict[str, Any], *,
                     key: str | None = None) -> list[dict[str, Any]]:
    """Queue ``event`` about a conversation for every endpoint of its project that subscribed to it.

    ``payload`` becomes the body's ``data`` (``conversation_id`` and ``project_id`` are added). ``key`` makes
    the event idempotent: the same (event, conversation, key) is delivered once per endpoint however often it is
    emitted; without one every call is a new event. Returns the deliveries stored (none for a transcript that is
    not a project's conversation). Inside ``store.transaction()`` the deliveries commit with the caller's rows.
    """
    conv = await services.store.get_conversation(transcript_id)
    if conv is None:
        return []
    return await _emit_for(services, conv, event, payload, key)


async def emit_project_event(services: Outbox, project_id: str, event: str, payload: dict[str, Any], *,
                             key: str | None = None) -> list[dict[str, Any]]:
    """Like :func:`emit_event` for an event about the project itself (``report.generated``)."""
    hooks = await services.store.list_webhooks(project_id)
    return await _store_deliveries(services, project_id, [h for h in hooks if event in h["events"]], event,
                                   payload, key)


async def send_test(services: Outbox, hook: dict[str, Any], event: str) -> dict[str, Any]:
    """A sample ``event`` (``"test": true``) for one endpoint, through the same durable path as real ones."""
    data = {"conversation_id": None, "project_id": hook["project_id"], "sample": True}
    rows = await _store_deliveries(services, hook["project_id"], [hook], event, data, None, test=True)
    return rows[0]


async def transcript_completed(services: Outbox, transcript_id: str, *, key: str | None = None) -> None:
    """``conversation.transcribed`` when a conversation's transcript completed (a no-op for other transcripts).

    Called inside the transaction that completes a transcript (:func:`server.pipeline.lifecycle.complete`): the
    last live publisher stopped, an upload or job finished, a kiosk conversation's chunks were all merged. A
    storage error raises, and the completion with it: no transcript completes without its deliveries.
    """
    store = services.store
    conv = await store.get_conversation(transcript_id)
    if conv is None:
        return
    row = await store.get_transcript(transcript_id) or {}
    segments = await store.get_segments(transcript_id)
    data = {"name": conv.get("name"), "status": row.get("status", "completed"), "duration": row.get("duration"),
            "segment_count": len(segments), "word_count": sum(len(s["text"].split()) for s in segments),
            "transcript_url": f"/api/conversations/{transcript_id}/transcript"}
    await _emit_for(services, conv, "conversation.transcribed", data, key)


async def _emit_for(services: Outbox, conv: dict[str, Any], event: str, payload: dict[str, Any],
                    key: str | None) -> list[dict[str, Any]]:
    hooks = [h for h in await services.store.list_webhooks(conv["project_id"]) if event in h["events"]]
    data = {"conversation_id": conv["id"], "project_id": conv["project_id"], **payload}
    scoped = None if key is None else f"{conv['id']}\n{key}"
    return await _store_deliveries(services, conv["project_id"], hooks, event, data, scoped)


async def _store_deliveries(services: Outbox, project_id: str, hooks: list[dict[str, Any]], event: str,
                            data: dict[str, Any], key: str | None, test: bool = False) -> list[dict[str, Any]]:
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}; expected one of {', '.join(EVENTS)}")
    if not hooks:
        return []
    if key is None:
        event_id = "evt_" + uuid.uuid4().hex
    else:
        event_id = "evt_" + hashlib.sha256(f"{project_id}\n{event}\n{key}".encode()).hexdigest()[:32]
    body: dict[str, Any] = {"id": event_id, "type": event, "created_at": utcnow(), "project_id": project_id,
                            "data": data}
    if test:
        body["test"] = True
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    rows = []
    async with services.store.transaction():
        for hook in hooks:
            row = await services.store.create_delivery(webhook_id=hook["id"], event=event, event_id=event_id,
                                                       payload=text, next_attempt_at=time.time())
            if row is not None:
                rows.append(row)
        await services.jobs.stage([deliver_job(row["id"]) for row in rows])
    return rows


def deliver_job(delivery_id: str, run_at: float | None = None) -> Job:
    return Job(DELIVER, {"delivery_id": delivery_id}, run_at=run_at, dedupe=f"{DELIVER}:{delivery_id}")


async def deliver(ctx: JobContext[WebhookParts]) -> None:
    """The ``deliver`` job: one attempt at one delivery."""
    sender = ctx.services.webhooks
    assert sender is not None, "a node that takes jobs has a webhook sender"
    await sender.attempt(ctx.services, ctx.args["delivery_id"])


async def requeue_overdue(services: Outbox) -> int:
    """Housekeeping: a pending delivery well past its time and with no job waiting gets one (the job's dedupe key
    makes this a no-op for a delivery whose job is merely late)."""
    overdue = [d for d in await services.store.pending_deliveries(limit=500)
               if (d["next_attempt_at"] or 0.0) < time.time() - OVERDUE]
    if overdue:
        await services.jobs.stage([deliver_job(d["id"]) for d in overdue])
        log.info("queued %d overdue webhook deliveries again", len(overdue))
    return len(overdue)


# ---------------------------------------------------------------- sending


class WebhookSender:
    """Sends deliveries for the ``deliver`` jobs this node runs: one HTTP client, guarded against internal
    addresses, for the node's lifetime."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._client: httpx.AsyncClient | None = None
        self.guard = OutboundGuard(settings)

    def start(self) -> None:
        self._client = guarded_client(self.guard, headers={"User-Agent": "voxlane-webhooks"},
                                      timeout=self.settings.webhook_timeout)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def attempt(self, services: Outbox, delivery_id: str) -> None:
        row = in_status(await self.store.get_delivery(delivery_id), "pending")
        if row is None:
            return  # delivered, failed, or its endpoint deleted
        await self._attempt_once(services, row)

    async def _attempt_once(self, services: Outbox, row: dict[str, Any]) -> None:
        settings = self.settings
        lease = time.time() + settings.webhook_timeout + 5.0  # another node leaves it alone until then
        claimed = await self.store.claim_delivery(row["id"], row["attempts"], lease)
        if claimed is None:
            return
        hook = await self.store.get_webhook(claimed["webhook_id"])
        if hook is None:  # the endpoint was deleted (its deliveries go with it)
            return
        attempt = claimed["attempts"]
        try:
            status, error = await self._post(hook, claimed)
        except asyncio.CancelledError:  # the node is stopping: this attempt does not count (its job runs again)
            with contextlib.suppress(Exception):
                await self.store.update_delivery(claimed["id"], attempts=attempt - 1, next_attempt_at=time.time())
            raise
        if error is None:
            await self.store.update_delivery(claimed["id"], status="delivered", response_status=status,
                                             last_error=None, next_attempt_at=None, delivered_at=utcnow())
            log.info("webhook %s: %s delivered to %s (attempt %d)", claimed["id"], claimed["event"], hook["url"],
                     attempt)
            return
        if attempt >= settings.webhook_max_attempts:
            await self.store.update_delivery(claimed["id"], status="failed", response_status=status,
                                             last_error=error, next_attempt_at=None)
            log.warning("webhook %s: %s to %s failed for good after %d attempts: %s", claimed["id"],
                        claimed["event"], hook["url"], attempt, error)
            return
        delay = backoff(attempt, settings.webhook_retry_base)
        async with self.store.transaction():
            await self.store.update_delivery(claimed["id"], response_status=status, last_error=error,
                                             next_attempt_at=time.time() + delay)
            await services.jobs.stage([deliver_job(claimed["id"], run_at=time.time() + delay)])
        log.info("webhook %s: attempt %d to %s failed (%s); retry in %.1f s", claimed["id"], attempt, hook["url"],
                 error, delay)

    async def _post(self, hook: dict[str, Any], delivery: dict[str, Any]) -> tuple[int | None, str | None]:
        """(HTTP status, error or None for a 2xx).

        The error never holds what the receiver sent (the log is shown in the API, and a receiver's body,
        or the banner of whatever answered, is not the server's to show): only the status, or what went wrong."""
        assert self._client is not None
        body = delivery["payload"].encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: signature(hook["secret"], timestamp, body),
                   "X-Voxlane-Event": delivery["event"], "X-Voxlane-Event-Id": delivery["event_id"],
                   "X-Voxlane-Delivery": delivery["id"], "X-Voxlane-Attempt": str(delivery["attempts"])}
        try:
            async with asyncio.timeout(self.settings.webhook_timeout):
                async with self._client.stream("POST", hook["url"], content=body, headers=headers) as r:
                    status = r.status_code
            if 200 <= status < 300:
                return status, None
            return status, f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
        except TimeoutError:
            return None, f"no answer within {self.settings.webhook_timeout:g} s"
        except OutboundRefused as exc:  # checked again now: nothing was sent
            log.warning("webhook %s: refused to call %s (%s)", delivery["id"], hook["url"], exc.address or exc.reason)
            return None, f"refused: {exc.message}"[:MAX_ERROR]
        except (httpx.TimeoutException, httpx.ConnectError) as exc:  # the OS's words: no peer bytes in them
            return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        except httpx.HTTPError as exc:  # a protocol error's text can quote what the peer sent
            return None, type(exc).__name__


def job_tasks(attempts: int) -> list[Task]:
    """Deliveries: a delivery counts its own attempts (``VOXLANE_WEBHOOK_MAX_ATTEMPTS``); the job's cover nodes
    that die mid-send."""
    return [Task(DELIVER, deliver, max_attempts=attempts + 2)]
