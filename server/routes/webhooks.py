"""``/api/projects/{project_id}/webhooks``: a project's webhook endpoints and their delivery logs.

Scope ``projects:admin`` in private mode (every ``/api/projects`` route), and only the project's owner sees
them. What is sent, and how, is :mod:`server.features.webhooks`.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.features.webhooks import EVENTS, SIGNATURE_HEADER, TIMESTAMP_HEADER, send_test
from server.http.errors import ApiError
from server.http.openapi import Page, Param, document, page_params
from server.http.outbound import OutboundGuard, OutboundRefused
from server.routes.common import json_body, page_of, paging, services
from server.routes.projects import load_project, load_project_part
from server.storage.base import DELIVERY_STATUSES

TAG = "webhooks"
Event = Literal["conversation.transcribed", "conversation.summarized", "report.generated"]
assert set(get_args(Event)) == set(EVENTS)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000, description="http(s) URL the events are POSTed to")
    events: list[Event] = Field(default_factory=lambda: list(EVENTS), min_length=1,
                                description="the events this endpoint receives (default: all)")
    secret: str | None = Field(default=None, min_length=16, max_length=200,
                               description="signing secret (default: one is generated and shown once)")
    description: str | None = Field(default=None, max_length=500)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value.strip()


class Webhook(BaseModel):
    id: str
    project_id: str
    url: str
    events: list[str]
    description: str | None
    created_at: str


class WebhookCreated(Webhook):
    secret: str = Field(description=f"HMAC-SHA256 key of {SIGNATURE_HEADER} (over {TIMESTAMP_HEADER} + '.' + body);"
                                    " shown only here")


class WebhookList(BaseModel):
    items: list[Webhook]


class WebhookTestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: Event = "conversation.transcribed"


class Delivery(BaseModel):
    id: str
    webhook_id: str
    event: str
    event_id: str = Field(description="the body's `id`: the same for every attempt (deduplicate on it)")
    status: str = Field(description="pending | delivered | failed")
    attempts: int
    next_attempt_at: str | None = Field(description="when a pending delivery is tried next")
    last_error: str | None = Field(description="why the last attempt failed: `HTTP <status>`, a timeout, a refused"
                                               " connection or URL (never the receiver's body)")
    response_status: int | None = Field(description="the receiver's status code for the last attempt")
    created_at: str
    updated_at: str
    delivered_at: str | None
    payload: dict[str, Any] = Field(description="the JSON body, exactly as sent")


class DeliveryPage(Page[Delivery]):
    pass


def webhook_out(row: dict[str, Any]) -> dict[str, Any]:
    return Webhook(id=row["id"], project_id=row["project_id"], url=row["url"], events=row["events"],
                   description=row.get("description"), created_at=row["created_at"]).model_dump()


_OLD_ERROR_WITH_BODY = re.compile(r"^(HTTP \d{3}): ")
"""Earlier versions logged the start of the receiver's body after its status (``HTTP 500: <body>``)."""


def delivery_out(row: dict[str, Any]) -> dict[str, Any]:
    nxt = row.get("next_attempt_at")
    old = _OLD_ERROR_WITH_BODY.match(row.get("last_error") or "")
    error = old.group(1) if old else row.get("last_error")  # an old row shows its status only
    return Delivery(
        id=row["id"], webhook_id=row["webhook_id"], event=row["event"], event_id=row["event_id"],
        status=row["status"], attempts=row["attempts"], last_error=error,
        next_attempt_at=None if nxt is None or row["status"] != "pending" else _iso(nxt),
        response_status=row.get("response_status"), created_at=row["created_at"], updated_at=row["updated_at"],
        delivered_at=row.get("delivered_at"), payload=json.loads(row["payload"])).model_dump()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def load_webhook(request: Request) -> dict[str, Any]:
    return await load_project_part(request, "webhook", services(request).store.get_webhook)


async def check_url(request: Request, url: str) -> None:
    """422 for a URL the server would refuse to call (an internal address, say): told now, not at the first event.
    The dispatcher checks again on every attempt (what a name resolves to can change)."""
    try:
        await OutboundGuard(services(request).settings).check(url)
    except OutboundRefused as exc:
        raise ApiError(422, f"url: {exc.message}", exc.code, {"url": url, "reason": exc.reason}) from None


async def create_webhook(request: Request) -> Response:
    """Register an endpoint for some of the project's events."""
    project = await load_project(request)
    body = await json_body(request, WebhookCreate)
    await check_url(request, body.url)
    secret = body.secret or "whsec_" + secrets.token_urlsafe(32)
    row = await services(request).store.create_webhook(project_id=project["id"], url=body.url,
                                                       events=list(dict.fromkeys(body.events)), secret=secret,
                                                       description=body.description)
    return JSONResponse({**webhook_out(row), "secret": secret}, status_code=201)


async def list_webhooks(request: Request) -> Response:
    """The project's endpoints (without their secrets)."""
    project = await load_project(request)
    rows = await services(request).store.list_webhooks(project["id"])
    return JSONResponse({"items": [webhook_out(r) for r in rows]})


async def get_webhook(request: Request) -> Response:
    """Read one endpoint (without its secret)."""
    return JSONResponse(webhook_out(await load_webhook(request)))


async def delete_webhook(request: Request) -> Response:
    """Remove an endpoint; its pending deliveries are dropped with its log."""
    row = await load_webhook(request)
    await services(request).store.delete_webhook(row["id"])
    return Response(status_code=204)


async def list_deliveries(request: Request) -> Response:
    """The endpoint's delivery log, newest first."""
    row = await load_webhook(request)
    status = request.query_params.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise ApiError(422, f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    page, size = paging(request)
    rows, total = await services(request).store.list_deliveries(row["id"], status=status, page=page, size=size)
    return JSONResponse(page_of([delivery_out(r) for r in rows], total, page, size))


async def send_test_event(request: Request) -> Response:
    """Send a sample event (marked `"test": true`) to this endpoint, signed and retried like real ones."""
    row = await load_webhook(request)
    body = await json_body(request, WebhookTestRequest)
    await check_url(request, row["url"])
    delivery = await send_test(services(request), row, body.event)
    return JSONResponse(delivery_out(delivery), status_code=202)


W = "/api/projects/{project_id}/webhooks"
routes = [
    Route(W, list_webhooks, methods=["GET"]),
    Route(W, create_webhook, methods=["POST"]),
    Route(W + "/{webhook_id}", get_webhook, methods=["GET"]),
    Route(W + "/{webhook_id}", delete_webhook, methods=["DELETE"]),
    Route(W + "/{webhook_id}/deliveries", list_deliveries, methods=["GET"]),
    Route(W + "/{webhook_id}/test", send_test_event, methods=["POST"]),
]

_SIGNING = (f"Each delivery is a POST of the JSON event ({{id, type, created_at, project_id, data}}) with"
            f" {TIMESTAMP_HEADER} (unix seconds) and {SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of timestamp + '.'"
            " + body with the endpoint's secret>, plus X-Voxlane-Event, X-Voxlane-Event-Id and X-Voxlane-Delivery."
            " Only a 2xx answer counts as delivered; otherwise it is retried with exponential backoff"
            " (VOXLANE_WEBHOOK_RETRY_BASE, VOXLANE_WEBHOOK_MAX_ATTEMPTS), across restarts.")
_OUTBOUND = (" The URL must reach a public address: a host that is or resolves to a loopback, private, link-local,"
             " shared, multicast or reserved address is refused (422 URL_NOT_ALLOWED) unless the operator's"
             " VOXLANE_OUTBOUND_ALLOWLIST names it, and is checked again before every attempt. Redirects are not"
             " followed; the delivery log keeps the receiver's status code, not its body.")
document("GET", W, "List webhook endpoints", TAG, responses={200: (WebhookList, "the project's endpoints")})
document("POST", W, "Register a webhook endpoint", TAG, body=WebhookCreate, description=_SIGNING + _OUTBOUND,
         responses={201: (WebhookCreated, "the endpoint, with its signing secret (shown once)"),
                    422: (None, "an invalid body (VALIDATION_ERROR), a URL the server does not call"
                                " (URL_NOT_ALLOWED) or a host without an address (URL_UNRESOLVABLE)")})
document("GET", W + "/{webhook_id}", "Read a webhook endpoint", TAG, responses={200: (Webhook, "the endpoint")})
document("DELETE", W + "/{webhook_id}", "Delete a webhook endpoint", TAG, responses={204: (None, "deleted")})
document("GET", W + "/{webhook_id}/deliveries", "The endpoint's delivery log", TAG,
         responses={200: (DeliveryPage, "deliveries, newest first")},
         query=[Param("status", "only deliveries in this state", enum=DELIVERY_STATUSES),
                *page_params()])
document("POST", W + "/{webhook_id}/test", "Send a test event", TAG, body=WebhookTestRequest,
         responses={202: (Delivery, "queued: it shows up in the delivery log"),
                    422: (None, "an invalid body, or the endpoint's URL is no longer one the server calls"
                                " (URL_NOT_ALLOWED, URL_UNRESOLVABLE)")})
