"""The ASGI application: settings in, services built in the lifespan (server.services), routes mounted."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from asr.backends import AsrBackend
from server import services as composition
from server.fanout import Broker
from server.http.admission import AdmissionMiddleware, refused_handler
from server.http.auth import AuthMiddleware
from server.http.errors import http_exception_handler, unhandled_exception_handler
from server.http.middleware import PathGuardMiddleware, RequestIdMiddleware
from server.metrics import Metrics, MetricsMiddleware, metrics_endpoint
from server.pipeline.admission import Refused
from server.routes import (
    exports_api,
    live_ws,
    meetings,
    provider_data,
    retranslate,
    rooms,
    speakers,
    summary_api,
    system,
    transcripts,
    webrtc,
)
from server.routes.deepgram_api import routes as deepgram_api_routes
from server.routes.deepgram_ws import routes as deepgram_routes
from server.routes.realtime_ws import routes as realtime_routes
from server.routes.rest_api import routes as rest_routes
from server.settings import Settings
from server.storage import Store
from server.transports.webrtc import WebRtcRegistry

log = logging.getLogger("voxlane")


def serve_metrics_port(settings: Settings, metrics: Metrics) -> Callable[[], None]:
    """``VOXLANE_METRICS_PORT``: /metrics on a port of its own (a thread of prometheus-client's), for a scraper
    inside the deployment; returns what stops it."""
    from prometheus_client import start_http_server

    httpd, thread = start_http_server(settings.metrics_port, settings.host, registry=metrics.registry)
    log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)

    return stop


def freeze_startup_heap() -> None:
    """Keep what startup built (modules, models, settings, routes: ~367k objects with the synthetic backend) out
    of every later full collection. Python's full collection walks every tracked object; with that heap it paused
    the event loop 217 ms (p50, max 284 ms) and /health waited behind it (max 311 ms under the realtime-sessions
    flood). Frozen objects are still freed by reference counting; only their cycles wait for :func:`thaw`."""
    gc.collect()  # the garbage of startup is not kept for good
    gc.freeze()


def thaw() -> None:
    """Give the frozen heap back to the collector (an app that stops in a process that goes on: the tests)."""
    gc.unfreeze()


def create_app(settings: Settings | None = None, *, backend: AsrBackend | None = None, store: Store | None = None,
               fanout: Broker | None = None) -> Starlette:
    """``backend``, ``store``, ``fanout``: parts to use instead of those the settings name (tests hand in a small
    fake backend or a store on another database)."""
    settings = settings or Settings.from_sources()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        role = composition.Role.serve(settings)
        services = await composition.build(settings, role=role, backend=backend, store=store, fanout=fanout,
                                           metrics=metrics)
        app.state.services = services
        stop_metrics = serve_metrics_port(settings, metrics) if settings.metrics_port else None
        if settings.diarization == "on" and role.transcribes:  # the speaker encoder now, not under the first final
            await services.speaker_worker.run(services.speaker_worker.warm)
        app.state.rest = await composition.start_rest(services)  # auth, upload signing, rate limits
        if role.jobs:
            await composition.start_jobs(services)  # resumes what a stopped process left unfinished
        if role.live:
            await composition.start_live(services)
        await composition.start_sweeping(services)
        app.state.webrtc = WebRtcRegistry(services)
        freeze_startup_heap()
        log.info("voxlane ready: model %s on %s/%s, data in %s%s", settings.model, settings.device,
                 settings.compute_type, settings.data_path, "" if role.jobs else " (API node: jobs run elsewhere)")
        try:
            yield
        finally:
            if stop_metrics is not None:
                await asyncio.to_thread(stop_metrics)
            await app.state.webrtc.close_all()
            await composition.close(services)
            thaw()

    # /metrics on the main port unless it has one of its own (then the main port does not answer it)
    metrics_routes = [] if settings.metrics_port else [Route("/metrics", metrics_endpoint, methods=["GET"])]
    app = Starlette(
        routes=[*system.routes, *transcripts.routes, *live_ws.routes, *realtime_routes, *deepgram_routes,
                *deepgram_api_routes, *webrtc.routes, *rest_routes, *exports_api.routes, *provider_data.routes,
                *summary_api.routes, *retranslate.routes, *speakers.routes, *meetings.routes, *rooms.routes,
                *metrics_routes],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics), Middleware(RequestIdMiddleware),
                    Middleware(PathGuardMiddleware), Middleware(AuthMiddleware), Middleware(AdmissionMiddleware)],
        exception_handlers={HTTPException: http_exception_handler, Refused: refused_handler,
                            Exception: unhandled_exception_handler},
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    metrics.watch(app)
    return app
