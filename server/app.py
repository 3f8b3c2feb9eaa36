"""The ASGI application: settings in, services built in the lifespan, routes mounted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from asr.inference import InferenceLoop
from asr.vad import SileroModel
from asr.whisper_backend import FasterWhisperBackend
from server import summaries
from server.admission import Admission, AdmissionMiddleware
from server.auth import AuthMiddleware
from server.errors import http_exception_handler, unhandled_exception_handler
from server.live import Services
from server.metrics import MeteredHub, Metrics, MetricsMiddleware, metrics_endpoint
from server.middleware import RequestIdMiddleware
from server.rest import start_rest
from server.routes import exports_api, live_ws, retranslate, speakers, summary_api, system, transcripts, webrtc
from server.routes.realtime_ws import routes as realtime_routes
from server.routes.rest_api import routes as rest_routes
from server.settings import Settings
from server.storage.sqlite import SqliteStore
from server.webhooks import Dispatcher

log = logging.getLogger("voxlane")


def make_backend(settings: Settings) -> FasterWhisperBackend:
    return FasterWhisperBackend(
        model=settings.model, device=settings.device, compute_type=settings.compute_type,
        cpu_threads=settings.effective_cpu_threads, batch_size=settings.effective_batch_size,
        beam_size=settings.beam_size, device_index=settings.device_index,
        hurried_pad_s=settings.hurried_pad_seconds, lanes=settings.effective_parallel_decodes)


def make_store(settings: Settings) -> SqliteStore:
    """The embedded store; the settings already refused URLs of backends this version lacks."""
    url = settings.database_url
    path = url[len("sqlite:"):] if url and url.startswith("sqlite:") else None
    return SqliteStore(path or settings.data_path / "voxlane.db")


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


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_sources()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.data_path.mkdir(parents=True, exist_ok=True)
        store = make_store(settings)
        await store.open()
        backend, vad = await asyncio.gather(asyncio.to_thread(make_backend, settings),
                                            asyncio.to_thread(SileroModel))
        engine = InferenceLoop(backend)
        engine.observers.append(metrics.observe_batch)
        engine.start()
        webhooks = Dispatcher(store, settings)
        services = Services(settings=settings, store=store, hub=MeteredHub(store, metrics), engine=engine,
                            vad_model=vad, webhooks=webhooks)
        services.admission = Admission(services)
        app.state.services = services
        stop_metrics = serve_metrics_port(settings, metrics) if settings.metrics_port else None
        if settings.diarization == "on":  # load the speaker encoder now, not under the first live final
            await services.speaker_worker.run(services.speaker_worker.warm)
        rest = await start_rest(app, services)  # auth, and the durable upload/job queue (resumes work)
        webhooks.start()  # resumes pending deliveries
        app.state.webrtc = webrtc.WebRtcRegistry(services)
        log.info("voxlane ready: model %s on %s/%s, data in %s", settings.model, settings.device,
                 settings.compute_type, settings.data_path)
        try:
            yield
        finally:
            if stop_metrics is not None:
                await asyncio.to_thread(stop_metrics)
            await rest.stop()
            await app.state.webrtc.close_all()
            await services.live.finish_all()
            await summaries.stop(services)  # summaries still being written
            await webhooks.stop()
            await asyncio.to_thread(engine.stop)
            services.speaker_worker.close()
            await services.hub.broker.close()
            await store.close()

    # /metrics on the main port unless it has one of its own (then the main port does not answer it)
    metrics_routes = [] if settings.metrics_port else [Route("/metrics", metrics_endpoint, methods=["GET"])]
    app = Starlette(
        routes=[*system.routes, *transcripts.routes, *live_ws.routes, *realtime_routes, *webrtc.routes, *rest_routes,
                *exports_api.routes, *summary_api.routes, *retranslate.routes, *speakers.routes, *metrics_routes],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics), Middleware(RequestIdMiddleware),
                    Middleware(AuthMiddleware), Middleware(AdmissionMiddleware)],
        exception_handlers={HTTPException: http_exception_handler, Exception: unhandled_exception_handler},
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    metrics.watch(app)
    return app
