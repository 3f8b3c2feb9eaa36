"""``voxlane worker``: a node that takes jobs only.

It runs the same job runner as ``voxlane serve`` (transcribing recorded files, merges, summaries, webhook
deliveries) with an inference loop of its own, and answers only ``/health`` and ``/metrics``: no public route,
no live registry in use, no admission, no authentication. Several workers and API nodes share one PostgreSQL
database (the queue), one Redis (fan-out of what the jobs publish) and one audio store.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asr.backends import AsrBackend
from server import services as composition
from server.fanout import Broker
from server.metrics import Metrics
from server.settings import Settings
from server.storage import Store

log = logging.getLogger("voxlane")


def create_worker_app(settings: Settings | None = None, *, backend: AsrBackend | None = None,
                      store: Store | None = None, fanout: Broker | None = None) -> Starlette:
    settings = settings or Settings.from_sources()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await composition.build(settings, role=composition.Role.worker(), backend=backend, store=store,
                                           fanout=fanout, metrics=metrics)
        app.state.services = services
        if settings.diarization == "on":  # the speaker encoder now, not under the first diarized upload
            await services.speaker_worker.run(services.speaker_worker.warm)
        await composition.start_jobs(services)
        await composition.start_sweeping(services)
        log.info("voxlane worker ready: model %s on %s/%s, %d transcription(s) and %d other job(s) at once",
                 settings.model, settings.device, settings.compute_type, settings.rest_workers,
                 settings.event_workers)
        try:
            yield
        finally:
            await composition.close(services)

    async def health(request: Request) -> Response:
        services = request.app.state.services
        runner = services.runner
        return JSONResponse({"status": "ok", "role": "worker", "timestamp": time.time(),
                             "jobs_running": len(runner.running) if runner else 0,
                             "jobs_queued": runner.queued if runner else 0})

    async def metrics_endpoint(request: Request) -> Response:
        return metrics.render()

    app = Starlette(routes=[Route("/health", health, methods=["GET"]),
                            Route("/metrics", metrics_endpoint, methods=["GET"])], lifespan=lifespan)
    app.state.metrics = metrics
    metrics.watch(app)
    return app


def run_worker(settings: Settings) -> int:
    """Serve the worker's two routes on VOXLANE_HOST:VOXLANE_PORT until stopped (keep that port internal)."""
    import uvicorn

    uvicorn.run(create_worker_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_keep_alive=5, **({"log_config": None} if settings.log_format == "json" else {}))
    return 0
