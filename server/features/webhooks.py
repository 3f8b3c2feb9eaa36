"""Webhooks: signed, durable, retried event deliveries to the endpoints a project registers.

An event (``conversation.transcribed``, ``conversation.summarized``, ``report.generated``) about a
conversation goes to every endpoint of the conversation's project that subscribed to it; transcripts outside
a project (live streams, uploads, jobs) have no endpoints and fire nothing.

Emitting only *stores* one ``pending`` delivery per endpoint (the exact JSON body included) and wakes the
:class:`Dispatcher`; the dispatcher sends it. So what was emitted survives a crash or a restart: on start the
dispatcher picks up every pending delivery where it left off. Each attempt is claimed in the store
(compare-and-set on the attempt count, with a lease) before it is sent, so two dispatchers never send the same
attempt. A delivery is ``delivered`` on a 2xx answer only; anything else (an error status, a redirect, a
timeout, a refused connection) is retried after ``VOXLANE_WEBHOOK_RETRY_BASE * 2**(attempt-1)`` seconds (at most
an hour), and ``failed`` after ``VOXLANE_WEBHOOK_MAX_ATTEMPTS``.

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
import functools
import hashlib
import hmac
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx

from server.http.outbound import OutboundGuard, OutboundRefused, guarded_client
from server.storage.base import utcnow

if TYPE_CHECKING:
    from server.services import Services
    from server.settings import Settings
    from server.storage import Store

log = logging.getLogger("voxlane.webhooks")

EVENTS = ("conversation.transcribed", "conversation.summarized", "report.generated")
SIGNATURE_HEADER = "X-Voxlane-Signature"
TIMESTAMP_HEADER = "X-Voxlane-Timestamp"
MAX_DELAY = 3600.0
IDLE_POLL = 30.0  # also finds deliveries another node stored
MAX_IN_FLIGHT = 16
MAX_ERROR = 300


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


async def emit_event(services: Services, transcript_id: str, event: str, payload: dict[str, Any], *,
                     key: str | None = None) -> list[dict[str, Any]]:
    """Queue ``event`` about a conversation for every endpoint of its project that subscribed to it.

    ``payload`` becomes the body's ``data`` (``conversation_id`` and ``project_id`` are added). ``key`` makes
    the event idempotent: the same (event, conversation, key) is delivered once per endpoint however often it is
    emitted; without one every call is a new event. Returns the deliveries stored (none for a transcript that is
    not a project's conversation). Never raises for a storage problem: it is logged, nothing is sent.
    """
    conv = await services.store.get_conversation(transcript_id)
    if conv is None:
        return []
    return await _emit_for(services, conv, event, payload, key)


async def emit_project_event(services: Services, project_id: str, event: str, payload: dict[str, Any], *,
                             key: str | None = None) -> list[dict[str, Any]]:
    """Like :func:`emit_event` for an event about the project itself (``report.generated``)."""
    hooks = await services.store.list_webhooks(project_id)
    return await _store_deliveries(services, project_id, [h for h in hooks if event in h["events"]], event,
                                   payload, key)


async def send_test(services: Services, hook: dict[str, Any], event: str) -> dict[str, Any]:
    """A sample ``event`` (``"test": true``) for one endpoint, through the same durable path as real ones."""
    data = {"conversation_id": None, "project_id": hook["project_id"], "sample": True}
    rows = await _store_deliveries(services, hook["project_id"], [hook], event, data, None, test=True)
    return rows[0]


async def transcript_completed(services: Services, transcript_id: str, *, key: str | None = None) -> None:
    """``conversation.transcribed`` when a conversation's transcript completed (a no-op for other transcripts).

    Called where a transcript becomes ``completed``: the last live publisher stopped, an upload or job
    finished, a kiosk conversation's chunks were all merged. Never raises into its caller.
    """
    try:
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
    except Exception:
        log.exception("could not queue conversation.transcribed for %s", transcript_id)


async def _emit_for(services: Services, conv: dict[str, Any], event: str, payload: dict[str, Any],
                    key: str | None) -> list[dict[str, Any]]:
    hooks = [h for h in await services.store.list_webhooks(conv["project_id"]) if event in h["events"]]
    data = {"conversation_id": conv["id"], "project_id": conv["project_id"], **payload}
    scoped = None if key is None else f"{conv['id']}\n{key}"
    return await _store_deliveries(services, conv["project_id"], hooks, event, data, scoped)


async def _store_deliveries(services: Services, project_id: str, hooks: list[dict[str, Any]], event: str,
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
    try:
        for hook in hooks:
            row = await services.store.create_delivery(webhook_id=hook["id"], event=event, event_id=event_id,
                                                       payload=text, next_attempt_at=time.time())
            if row is not None:
                rows.append(row)
    except Exception:
        log.exception("could not store %s deliveries for project %s", event, project_id)
    if rows and services.webhooks is not None:
        services.webhooks.wake()
    return rows


# ---------------------------------------------------------------- sending


class Dispatcher:
    """Sends pending deliveries when they are due; one per process, started and stopped by the app."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._in_flight: dict[str, asyncio.Task] = {}
        self._client: httpx.AsyncClient | None = None
        self.guard = OutboundGuard(settings)

    def start(self) -> None:
        self._client = guarded_client(self.guard, headers={"User-Agent": "voxlane-webhooks"},
                                      timeout=self.settings.webhook_timeout)
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop sending; an interrupted attempt does not count and is resumed by the next start."""
        tasks = [t for t in (self._task, *self._in_flight.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self._send_due()
            except Exception:
                log.exception("webhook dispatcher: reading pending deliveries failed")
                delay = 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _send_due(self) -> float:
        """Start every due delivery (up to MAX_IN_FLIGHT at once); seconds until the next one is due."""
        now = time.time()
        for row in await self.store.pending_deliveries(limit=MAX_IN_FLIGHT * 4):
            due = row["next_attempt_at"] or 0.0
            if due > now:
                return min(IDLE_POLL, due - now)
            if row["id"] in self._in_flight:
                continue
            if len(self._in_flight) >= MAX_IN_FLIGHT:
                break  # a finishing attempt wakes the loop
            task = asyncio.create_task(self._attempt(row), name=f"webhook-{row['id']}")
            self._in_flight[row["id"]] = task
            task.add_done_callback(functools.partial(self._finished, row["id"]))
        return IDLE_POLL

    def _finished(self, delivery_id: str, _task: asyncio.Task) -> None:
        self._done(delivery_id)

    def _done(self, delivery_id: str) -> None:
        self._in_flight.pop(delivery_id, None)
        self.wake()

    async def _attempt(self, row: dict[str, Any]) -> None:
        try:
            await self._attempt_once(row)
        except Exception:  # a storage error: the lease runs out and the attempt is made again
            log.exception("webhook delivery %s: attempt failed inside the server", row["id"])

    async def _attempt_once(self, row: dict[str, Any]) -> None:
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
        except asyncio.CancelledError:  # the server is stopping: this attempt does not count
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
        await self.store.update_delivery(claimed["id"], response_status=status, last_error=error,
                                         next_attempt_at=time.time() + delay)
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
