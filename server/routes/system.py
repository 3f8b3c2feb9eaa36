"""Health, the protocol schema, and the web client's files."""

from __future__ import annotations

import asyncio
import threading
import time
from importlib import resources

import psutil
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from protocol import protocol_schema
from server.http.auth import bearer_token

WEB_CLIENT = resources.files("web_client")


async def _may_see_internals(request: Request) -> bool:
    """The verbose form tells the process's size, tasks and load: in private mode only to a valid token's holder
    (a balancer or operator has one), while the plain answer stays open to every health check."""
    rest = getattr(request.app.state, "rest", None)
    if rest is None or not rest.authenticator.private:
        return True
    token = bearer_token(request.scope)
    if token is None:
        return False
    try:
        await rest.authenticator.authenticate(token)
    except Exception:  # an invalid token, or the key store away: the plain answer, never a failed health check
        return False
    return True


async def health(request: Request) -> Response:
    body = {"status": "ok", "timestamp": time.time()}
    if request.query_params.get("verbose") in ("1", "true") and await _may_see_internals(request):
        # cheap process counters, for leak checks and operators
        webrtc = getattr(request.app.state, "webrtc", None)
        body.update(tasks=len(asyncio.all_tasks()), threads=threading.active_count(),
                    webrtc_sessions=len(webrtc) if webrtc is not None else 0,
                    rss_mb=round(psutil.Process().memory_info().rss / 2**20, 1))
        services = getattr(request.app.state, "services", None)
        admission = getattr(services, "admission", None)
        if admission is not None:  # what a balancer may steer live streams by
            body.update(live_streams=len(admission.live_publishers()), live_capacity=admission.capacity(),
                        live_headroom=admission.headroom())
            load = services.load
            if load is not None:  # whether the node is past its capacity, and what it sheds meanwhile
                body.update(live_load=load.health.verdict, live_shedding=load.shedding)
    return JSONResponse(body)


async def protocol_json(request: Request) -> Response:
    return JSONResponse(protocol_schema())


async def index(request: Request) -> Response:
    return FileResponse(str(WEB_CLIENT / "index.html"), media_type="text/html")


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/v1/protocol.json", protocol_json, methods=["GET"]),
    Route("/", index, methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=str(WEB_CLIENT)), name="static"),
]
