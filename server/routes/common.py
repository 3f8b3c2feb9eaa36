"""Helpers shared by route modules: services lookup, JSON bodies, pagination."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from protocol.json_depth import MAX_JSON_DEPTH, json_depth
from protocol.json_depth import loads as json_loads
from server.features.correction.key_terms import checked_key_terms
from server.http.auth import principal
from server.http.errors import ApiError

if TYPE_CHECKING:
    from server.http.rest import RestServices
    from server.routes.parts import NodeParts

M = TypeVar("M", bound=BaseModel)


def services(conn: HTTPConnection) -> NodeParts:
    return conn.app.state.services


def public_base(conn: HTTPConnection) -> str:
    """This server's base URL as a caller reaches it: ``VOXLANE_PUBLIC_URL`` when set (behind a proxy), else the
    request's own; for the URLs a response hands out."""
    return (services(conn).settings.public_url or str(conn.base_url)).rstrip("/")


def rest_of(conn: HTTPConnection) -> RestServices:
    return conn.app.state.rest


def transcriber(conn: HTTPConnection) -> NodeParts:
    """The services of a route that transcribes while its caller waits; 503 on a node that loads no model (an
    API node with VOXLANE_LIVE=off and VOXLANE_JOBS=off)."""
    svc = services(conn)
    if svc.engine is None or svc.vad_model is None:
        raise ApiError(503, "this node loads no speech model (VOXLANE_LIVE=off, VOXLANE_JOBS=off): send this"
                       " request to a node that serves live streams", "NO_MODEL_ON_NODE",
                       headers={"Retry-After": "1"})
    return svc


_SCAN_IN_THREAD = 64 << 10  # a bigger body is scanned off the event loop (1 MiB of brackets: ~0.25 s)


def body_too_large(limit: int, what: str = "request body") -> ApiError:
    return ApiError(413, f"the {what} is larger than this server's limit of {limit} bytes", "PAYLOAD_TOO_LARGE",
                    {"max_bytes": limit})


def declared_length(request: Request) -> int | None:
    """The body's ``Content-Length`` (None: not sent, a chunked body); 400 for one that is no number."""
    length = request.headers.get("content-length")
    if length is None:
        return None
    try:
        return int(length)
    except ValueError:
        raise ApiError(400, "invalid Content-Length header") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit`` bytes: from
    ``Content-Length`` before a byte is read, else while a chunked body streams in (never buffered past it)."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise body_too_large(limit)
    buf = bytearray()
    async for data in request.stream():
        buf += data
        if len(buf) > limit:
            raise body_too_large(limit)
    return bytes(buf)


async def parse_json(raw: bytes) -> Any:
    """Parse a bounded JSON body: 400 ``INVALID_JSON`` for what is not JSON, 400 ``JSON_TOO_DEEP`` past
    :data:`MAX_JSON_DEPTH` (checked first: deep input would make ``json.loads`` raise RecursionError)."""
    if not raw.strip():
        return {}
    scan = asyncio.to_thread(json_depth, raw, MAX_JSON_DEPTH) if len(raw) > _SCAN_IN_THREAD else None
    depth = await scan if scan is not None else json_depth(raw, MAX_JSON_DEPTH)
    if depth > MAX_JSON_DEPTH:
        raise ApiError(400, f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels", "JSON_TOO_DEEP",
                       {"max_depth": MAX_JSON_DEPTH})
    try:
        return json_loads(raw)
    except RecursionError:
        raise ApiError(400, f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels", "JSON_TOO_DEEP",
                       {"max_depth": MAX_JSON_DEPTH}) from None
    except ValueError:
        raise ApiError(400, "request body is not valid JSON", "INVALID_JSON") from None


async def json_body(request: Request, model: type[M]) -> M:
    """The body as ``model``: every JSON body of the API is read here, bounded in size
    (VOXLANE_MAX_JSON_BODY_KB, 413) and nesting (400), then validated (422)."""
    raw = await read_body(request, services(request).settings.max_json_body_kb << 10)
    data = await parse_json(raw)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        raise ApiError(422, "; ".join(f"{e['loc']}: {e['msg']}" for e in errors), details={"errors": errors}) from None


async def patch_body(request: Request, model: type[BaseModel], *not_null: str) -> dict[str, Any]:
    """A PATCH body as ``model`` (see :func:`json_body`): only the fields it sends, and a 422 for any of
    ``not_null`` sent as null (the store keeps them NOT NULL: leave one out to keep its value)."""
    given = (await json_body(request, model)).model_dump(exclude_unset=True)
    for name in not_null:
        if name in given and given[name] is None:
            raise ApiError(422, f"{name}: cannot be null")
    return given


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(422, f"{name} must be between {lo} and {hi}")
    return value


def paging(request: Request, size: int = 50, most: int = 200) -> tuple[int, int]:
    """A list's ``page`` (from 1) and ``size`` (``size`` by default, at most ``most``), each a 422 when off."""
    return int_param(request, "page", 1, 1, 1_000_000), int_param(request, "size", size, 1, most)


def page_of(items: list[Any], total: int, page: int, size: int) -> dict[str, Any]:
    return {"items": items, "total": total, "page": page, "size": size}


async def owned_page(request: Request, list_rows: Callable[..., Awaitable[tuple[list[dict[str, Any]], int]]],
                     out: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
    """The page the request asks for (:func:`paging`) of the caller's rows, each as ``out`` shows it:
    ``list_rows`` is the store's lister (``owner``, ``page``, ``size``)."""
    page, size = paging(request)
    rows, total = await list_rows(owner=principal(request).owner_filter, page=page, size=size)
    return JSONResponse(page_of([out(r) for r in rows], total, page, size))


def form_key_terms(value: str | None) -> list[str]:
    """An upload's ``key_terms`` form field (a JSON array, or terms separated by commas), bounded; a 422 names
    what is wrong."""
    try:
        return checked_key_terms(value)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
