"""The OpenAPI 3.1 description of every route, generated from the pydantic models the routes use.

Route modules :func:`document` their operations (method, path, body and response models) next to their
route tables; :func:`build_spec` turns that registry into a spec, adds the access rule of each route from
:func:`server.http.auth.required_scope` (the same function the middleware enforces), and describes any route of
the app that nobody documented generically, so the spec never silently misses one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute

from server.http.auth import AUTHENTICATED, required_scope

REF = "#/components/schemas/{model}"
Item = TypeVar("Item", bound=BaseModel)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorResponse(BaseModel):
    """Every error, on every route."""

    error: ErrorBody


class AudioBytes(BaseModel):
    """A request body of raw audio bytes."""


@dataclass
class Param:
    name: str
    description: str = ""
    type: str = "string"
    required: bool = False
    where: str = "query"
    enum: tuple[str, ...] | None = None
    minimum: int | None = None  # the bounds the route enforces (int_param), so generated clients stay inside them
    maximum: int | None = None


class Page(BaseModel, Generic[Item]):
    """A paged list's body, as :func:`server.routes.common.page_of` writes it; each list subclasses it with its
    item, so the spec names the page after its list (``RoomPage``) and not after the generic."""

    items: list[Item]
    total: int
    page: int
    size: int


def page_params() -> list[Param]:
    """``page`` and ``size`` as every paged list takes them (:func:`server.routes.common.page_of`)."""
    return [Param("page", "1-based page", "integer", minimum=1, maximum=1_000_000),
            Param("size", "items per page (1-200)", "integer", minimum=1, maximum=200)]


@dataclass
class Operation:
    method: str  # GET, POST, ... or WEBSOCKET
    path: str
    summary: str
    tag: str
    description: str = ""
    body: type[BaseModel] | None = None
    body_kind: str = "json"  # json | multipart | binary
    responses: dict[int, tuple[type[BaseModel] | None, str]] = field(default_factory=dict)
    query: list[Param] = field(default_factory=list)
    response_list: bool = False  # the 2xx body is a JSON array of the model
    content_type: str = "application/json"  # of the 2xx body


OPERATIONS: list[Operation] = []
_TAG_ORDER = {t: i for i, t in enumerate(("transcripts", "transcript audio", "transcription jobs", "projects",
                                          "participant", "meta"))}


PATH_ID = {"type": "string", "minLength": 1, "pattern": r"^(?!\.\.?$)[^/]+$"}
"""An id in a path: one segment, never "." or ".." (a client resolves those, and the request lands on another
route: "/v1/rooms/." is the room list)."""


def document(method: str, path: str, summary: str, tag: str, *, description: str = "",
             body: type[BaseModel] | None = None, body_kind: str = "json",
             responses: dict[int, tuple[type[BaseModel] | None, str]] | None = None,
             query: list[Param] | None = None, response_list: bool = False,
             content_type: str = "application/json") -> None:
    key = (method.upper(), path)
    OPERATIONS[:] = [op for op in OPERATIONS if (op.method, op.path) != key]
    OPERATIONS.append(Operation(method.upper(), path, summary, tag, description, body, body_kind, responses or {},
                                query or [], response_list, content_type))


def _version() -> str:
    try:
        return metadata.version("voxlane")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


def _app_operations(app: Starlette) -> list[tuple[str, str, str]]:
    """(method, path, docstring summary) of every route the app serves."""
    out = []
    for route in app.routes:
        if isinstance(route, WebSocketRoute):
            out.append(("WEBSOCKET", route.path, _first_line(route.endpoint)))
        elif isinstance(route, Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                out.append((method, route.path, _first_line(route.endpoint)))
        elif isinstance(route, Mount):
            out.append(("GET", route.path.rstrip("/") + "/{path}", f"files under {route.path}"))
    return out


def _norm(path: str) -> str:
    return path.rstrip("/") or "/"


def _first_line(fn: Any) -> str:
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else getattr(fn, "__name__", "route").replace("_", " ")


def build_spec(app: Starlette, auth_mode: str = "public") -> dict[str, Any]:
    documented = {(op.method, _norm(op.path)) for op in OPERATIONS}
    ops = list(OPERATIONS)
    for method, path, summary in _app_operations(app):
        if (method, _norm(path)) not in documented:  # "/v1/transcripts" and "/v1/transcripts/" are one
            documented.add((method, _norm(path)))
            ops.append(Operation(method, path, summary, "other"))
    models: set[type[BaseModel]] = {ErrorResponse}
    for op in ops:
        if op.body is not None:
            models.add(op.body)
        for model, _ in op.responses.values():
            if model is not None:
                models.add(model)
    pairs = [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)]
    keys, defs = models_json_schema(pairs, ref_template=REF)
    schemas = defs.get("$defs", {})
    ref = {m: keys[(m, "validation")] for m in models}
    paths: dict[str, dict[str, Any]] = {}
    for op in sorted(ops, key=lambda o: (o.path, o.method)):
        paths.setdefault(op.path, {})["get" if op.method == "WEBSOCKET" else op.method.lower()] = _operation(
            op, ref, auth_mode)
    return {
        "openapi": "3.1.0",
        "info": {"title": "voxlane", "version": _version(),
                 "description": "Realtime speech transcription server: live WebSocket/WebRTC audio, file uploads,"
                                " kiosk chunk uploads and transcription jobs, one pipeline and one store. Errors"
                                " always have the shape {\"error\": {\"code\", \"message\", \"details\"}}. Live"
                                " message shapes: /v1/protocol.json."},
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in sorted(dict.fromkeys(op.tag for op in ops), key=lambda t: _TAG_ORDER.get(t, 99))],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A JWT (HS256 with the server's secret, or RS256/ES256 with its public"
                                          " key) or an API key from `voxlane token create`."},
                "query_token": {"type": "apiKey", "in": "query", "name": "token",
                                "description": "The same token as ?token=, for WebSockets and <audio> elements."},
            },
        },
        "x-auth-mode": auth_mode,
    }


def _schema(model: type[BaseModel], ref: dict[type[BaseModel], Any], as_list: bool = False) -> dict[str, Any]:
    one = ref[model]
    return {"type": "array", "items": one} if as_list else one


def _operation(op: Operation, ref: dict[type[BaseModel], Any], auth_mode: str) -> dict[str, Any]:
    websocket = op.method == "WEBSOCKET"
    scope = required_scope("GET" if websocket else op.method, op.path, websocket)
    out: dict[str, Any] = {"tags": [op.tag], "summary": op.summary,
                           "operationId": re.sub(r"[^A-Za-z0-9]+", "_", f"{op.method}_{op.path}").strip("_").lower()}
    notes = [op.description] if op.description else []
    if websocket:
        out["x-websocket"] = True
        notes.append("WebSocket endpoint: connect with ws:// or wss:// (a plain GET is not served).")
    if scope is None:
        out["security"] = []
        notes.append("Open: no token needed.")
    else:
        schemes = [{"bearer": [scope] if scope else []}] + ([{"query_token": [scope] if scope else []}]
                                                          if websocket or op.path.endswith(("/download", "/stream"))
                                                          else [])
        # public mode: a token is optional (it makes the caller a user); private mode: required
        out["security"] = schemes + ([{}] if auth_mode == "public" else [])
        notes.append(f"Private mode: needs a token{' with scope `' + scope + '`' if scope != AUTHENTICATED else ''}.")
    out["description"] = " ".join(notes)
    params = [{"name": n, "in": "path", "required": True, "schema": PATH_ID}
              for n in re.findall(r"{(\w+)(?::\w+)?}", op.path)]
    for p in op.query:
        schema: dict[str, Any] = {"type": p.type}
        if p.enum:
            schema["enum"] = list(p.enum)
        if p.minimum is not None:
            schema["minimum"] = p.minimum
        if p.maximum is not None:
            schema["maximum"] = p.maximum
        params.append({"name": p.name, "in": p.where, "required": p.required, "description": p.description,
                       "schema": schema})
    if params:
        out["parameters"] = params
    if op.body is not None:
        kind = {"json": "application/json", "multipart": "multipart/form-data",
                "binary": "application/octet-stream"}[op.body_kind]
        content: dict[str, Any] = {kind: {"schema": ref[op.body]}}
        if op.body_kind == "binary":
            content = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                       "audio/*": {"schema": {"type": "string", "format": "binary"}}}
        out["requestBody"] = {"required": True, "content": content}
    responses: dict[str, Any] = {}
    for status, (model, text) in sorted(op.responses.items()):
        entry: dict[str, Any] = {"description": text}
        if model is not None and status < 400:
            entry["content"] = {op.content_type: {"schema": _schema(model, ref, op.response_list)}}
        elif status >= 400:
            entry["content"] = {"application/json": {"schema": ref[ErrorResponse]}}
        elif op.content_type != "application/json":
            entry["content"] = {op.content_type: {"schema": {"type": "string", "format": "binary"}}}
        responses[str(status)] = entry
    if not any(s < 400 for s in op.responses):
        responses["200"] = {"description": "success" if not websocket else "switching protocols (101)"}
    errors = {"500": "unexpected error (never a traceback)"}
    if scope is not None:
        errors["401"] = "missing or invalid token"
        if scope != AUTHENTICATED:
            errors["403"] = "the token lacks the scope"
    if "{" in op.path:
        errors["404"] = "not found (or another user's)"
    if op.body is not None:
        errors["422"] = "invalid request body"
    for status, text in errors.items():
        responses.setdefault(status, {"description": text,
                                      "content": {"application/json": {"schema": ref[ErrorResponse]}}})
    out["responses"] = dict(sorted(responses.items()))
    return out
