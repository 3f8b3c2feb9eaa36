"""Helpers shared by route modules: services lookup, JSON bodies, pagination."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection, Request

from server.errors import ApiError
from server.live import Services

M = TypeVar("M", bound=BaseModel)


def services(conn: HTTPConnection) -> Services:
    return conn.app.state.services


async def json_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise ApiError(400, "request body is not valid JSON", "INVALID_JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        raise ApiError(422, "; ".join(f"{e['loc']}: {e['msg']}" for e in errors), details={"errors": errors}) from None


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


def page_of(items: list[Any], total: int, page: int, size: int) -> dict[str, Any]:
    return {"items": items, "total": total, "page": page, "size": size}
