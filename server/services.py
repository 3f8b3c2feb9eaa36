"""The one composition root: every long-lived part of a server, built and stopped in one place.

The app's lifespan, the command line (``voxlane transcribe``, ``export``, ``token``), the benchmarks and the
tests all build their services here, and may hand in their own parts (a small fake ASR backend, a store on
another database, a broker) instead of the defaults the settings name.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from asr.backends import AsrBackend, make_backend
from asr.inference import InferenceLoop
from asr.vad import SileroModel
from server.fanout import Broker
from server.features import summaries
from server.features.webhooks import Dispatcher
from server.http.admission import Admission
from server.http.auth import Authenticator
from server.http.rate_limit import RateLimiter
from server.http.signing import UploadSigner
from server.jobs.work import WorkQueue
from server.metrics import MeteredHub, Metrics
from server.native_threads import limit_blas_threads
from server.pipeline.configs import backend_config
from server.pipeline.hub import Hub
from server.pipeline.recordings import audio_dir
from server.pipeline.speaker_relay import SpeakerWorker
from server.pipeline.transcripts import LiveRegistry
from server.settings import Settings
from server.storage import Store, open_store

log = logging.getLogger("voxlane")


@dataclass
class Services:
    """Everything a request handler may need."""

    settings: Settings
    store: Store
    hub: Hub
    engine: InferenceLoop
    vad_model: SileroModel
    webhooks: Dispatcher | None = None
    admission: Admission | None = None  # refuses a live stream the server cannot serve well (server.http.admission)
    live: LiveRegistry = field(init=False)
    speaker_worker: SpeakerWorker = field(init=False)

    def __post_init__(self) -> None:
        self.live = LiveRegistry(self)
        self.speaker_worker = SpeakerWorker(device=self.settings.device)

    def audio_dir(self, transcript_id: str) -> Path:
        return audio_dir(self.settings, transcript_id)


@dataclass
class RestServices:
    """What the REST path adds: authentication, the durable work queue, upload signing, rate limits."""

    services: Services
    authenticator: Authenticator
    work: WorkQueue
    signer: UploadSigner
    upload_rate: RateLimiter
    address_rate: RateLimiter  # every participant API request, per client address
    project_rate: RateLimiter  # conversation starts and upload URLs, per project
    started_at: float = field(default_factory=time.time)
    initiating: asyncio.Lock = field(default_factory=asyncio.Lock)  # count open conversations, then add one


async def build(settings: Settings, *, backend: AsrBackend | None = None, store: Store | None = None,
                fanout: Broker | None = None, metrics: Metrics | None = None) -> Services:
    """Open the store, load the models (the backend named by the settings unless one is given) and start the
    inference loop. Nothing here takes work from outside yet: see :func:`start_rest`."""
    settings.data_path.mkdir(parents=True, exist_ok=True)
    store = store or open_store(settings.database_url, settings.data_path)
    await store.open()
    try:
        chosen, vad = await asyncio.gather(
            asyncio.to_thread(make_backend, backend_config(settings)) if backend is None else _given(backend),
            asyncio.to_thread(SileroModel))
    except BaseException:
        await store.close()
        raise
    limit_blas_threads()  # the models' libraries are loaded now
    engine = InferenceLoop(chosen, step_s=settings.min_step_ms / 1000)  # the live streams' step (asr.pace)
    if metrics is not None:
        engine.observers.append(metrics.observe_batch)
    engine.start()
    hub = MeteredHub(store, metrics, fanout) if metrics is not None else Hub(store, fanout)
    services = Services(settings=settings, store=store, hub=hub, engine=engine, vad_model=vad,
                        webhooks=Dispatcher(store, settings))
    services.admission = Admission(services)
    return services


async def _given(backend: AsrBackend) -> AsrBackend:
    return backend


async def start_rest(services: Services) -> RestServices:
    """The REST path's parts; resumes the durable queue (uploads and jobs a previous run left unfinished)."""
    settings = services.settings
    secret = await services.store.get_or_create_secret("upload-url-signing", secrets.token_hex(32))
    rest = RestServices(services=services, authenticator=Authenticator(settings, services.store),
                        work=WorkQueue(services, settings.rest_workers), signer=UploadSigner(bytes.fromhex(secret)),
                        upload_rate=RateLimiter(settings.upload_url_rate),
                        address_rate=RateLimiter(settings.rate_per_address),
                        project_rate=RateLimiter(settings.rate_per_project))
    await rest.work.start()
    return rest


async def close(services: Services) -> None:
    """Finish what is live (finals stored), then release everything, store last. The REST queue, when there is
    one, is stopped first by its owner (it may still be handing work to the pipeline)."""
    await services.live.finish_all()
    await summaries.stop(services)  # summaries still being written
    if services.webhooks is not None:
        await services.webhooks.stop()
    await asyncio.to_thread(services.engine.stop)
    services.speaker_worker.close()
    await services.hub.broker.close()
    await services.store.close()
