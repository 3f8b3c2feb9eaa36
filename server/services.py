"""The one composition root: every long-lived part of a node, built and stopped in one place, for its role.

A node's :class:`Role` decides what is built. ``voxlane serve`` serves the API and, by default, live streams
and jobs too (the single-machine setup); ``VOXLANE_JOBS=off`` makes it an API node and ``VOXLANE_LIVE=off`` takes
live audio elsewhere; ``voxlane worker`` takes jobs only. A node that neither takes live audio nor runs jobs
loads no model. The app's lifespan, the worker, the command line (``voxlane transcribe``, ``export``,
``token``), the benchmarks and the tests all build their services here, and may hand in their own parts (a small
fake ASR backend, a store on another database, a broker) instead of the defaults the settings name.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from asr.backends import RECOGNIZERS, AsrBackend, make_backend, make_recognizer
from asr.inference import InferenceLoop
from asr.transcriber import Transcriber
from asr.vad import SileroModel
from server import redis_client
from server.fanout import Broker
from server.features.correction import CorrectionPass, correction_pass
from server.features.correction.redaction import Redactor
from server.features.summaries.background import forget_old_requests, summarize_completed
from server.features.webhooks import WebhookSender, requeue_overdue, transcript_completed
from server.http.auth import Authenticator
from server.http.meeting_tokens import MeetingTokens
from server.http.rate_limit import RateLimiter
from server.http.rest import RestServices
from server.http.signing import UploadSigner
from server.jobs.expired_uploads import remove_expired_uploads
from server.jobs.housekeeping import keep_house
from server.jobs.queue import JobQueue
from server.jobs.reconcile import requeue_orphans
from server.jobs.runner import JobRunner
from server.metrics import MeteredHub, Metrics
from server.native_threads import limit_blas_threads, limit_malloc_arenas, start_heap_trimmer
from server.node import claim_node_id
from server.pipeline.admission import Admission
from server.pipeline.configs import backend_config, riva_config
from server.pipeline.hub import Hub
from server.pipeline.ingest import IngestPool
from server.pipeline.lifecycle import CompletedHook
from server.pipeline.load import LoadMonitor
from server.pipeline.loop_delay import LoopDelay
from server.pipeline.ownership import Leases, LocalLeases, make_leases
from server.pipeline.recordings import audio_dir
from server.pipeline.recovery import finish_all_abandoned
from server.pipeline.speaker_worker import SpeakerWorker
from server.pipeline.transcripts import LiveRegistry
from server.role import Role
from server.settings import Settings
from server.storage import Store, open_store
from server.storage.audio import AudioStore, describe_audio_store, open_audio_store
from server.storage.audio.identity import NotTheSharedStore, check_shared_store
from server.storage.engine import async_url, libpq_dsn
from server.tasks import all_tasks, lane_of, lanes

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from server.fanout.redis import RedisBroker

log = logging.getLogger("voxlane")


@dataclass
class Services:
    """A node's long-lived parts. ``engine`` and ``vad_model`` are None on a node that transcribes nothing;
    ``runner`` is None on a node that takes no jobs."""

    settings: Settings
    store: Store
    hub: Hub
    audio: AudioStore
    jobs: JobQueue
    engine: Transcriber | None = None  # the inference loop, or a streaming recognizer (VOXLANE_ASR_BACKEND=riva)
    vad_model: SileroModel | None = None
    ingest: IngestPool | None = None  # the threads that take live audio in (a node that transcribes)
    role: Role = field(default_factory=Role)
    webhooks: WebhookSender | None = None
    admission: Admission | None = None  # refuses a live stream the server cannot serve well (server.pipeline.admission)
    runner: JobRunner | None = None
    redis: Redis | None = None  # the node's one Redis client (VOXLANE_REDIS_URL), for whatever shares state through it
    node: str = ""  # this node's id in shared state (server.node)
    leases: Leases = field(default_factory=LocalLeases)  # which node streams which transcript (ownership)
    loop_delay: LoopDelay = field(default_factory=LoopDelay)  # how late the event loop runs (admission, metrics)
    load: LoadMonitor | None = None  # what the live streams get: admission and shedding (a node taking live audio)
    live: LiveRegistry = field(init=False)
    speaker_worker: SpeakerWorker = field(init=False)
    redactor: Redactor = field(init=False)  # the correction pass's PII step, one analyzer per process
    on_completed: list[CompletedHook] = field(init=False)  # what completes with a transcript, in its transaction
    _background: list[asyncio.Task] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.live = LiveRegistry(self)
        self.speaker_worker = SpeakerWorker(device=self.settings.device)
        self.redactor = Redactor.from_settings(self.settings)
        # the pipeline only fires these (server.pipeline.lifecycle); the features own what they do
        self.on_completed = [functools.partial(transcript_completed, self),
                             functools.partial(summarize_completed, self)]

    def audio_dir(self, transcript_id: str) -> Path:
        return audio_dir(self.settings, transcript_id)

    @property
    def loop(self) -> InferenceLoop | None:
        """The inference loop, on a node that decodes windows itself (None on one that streams to Riva)."""
        return self.engine if isinstance(self.engine, InferenceLoop) else None

    def correction(self, key_terms: Sequence[str], names: Sequence[str] = ()) -> CorrectionPass:
        return correction_pass(key_terms, self.redactor, names=names)

    @property
    def keeps_originals(self) -> bool:
        return self.settings.keep_unredacted == "on" and self.redactor.enabled

    @property
    def model(self) -> tuple[Transcriber, SileroModel]:
        """What transcribes (the inference loop or a streaming recognizer) and the VAD, on a node that
        transcribes (live streams or jobs)."""
        if self.engine is None or self.vad_model is None:
            raise RuntimeError("this node loads no model (VOXLANE_LIVE=off and VOXLANE_JOBS=off)")
        return self.engine, self.vad_model


async def build(settings: Settings, *, role: Role | None = None, backend: AsrBackend | None = None,
                store: Store | None = None, fanout: Broker | None = None, metrics: Metrics | None = None
                ) -> Services:
    """Open the store and the audio store, load the models a node of ``role`` needs (the backend named by the
    settings unless one is given) and start the inference loop. Nothing here takes work from outside yet: see
    :func:`start_rest` and :func:`start_jobs`."""
    role = role or Role.serve(settings)
    limit_malloc_arenas()  # before the streams' and the models' threads allocate
    start_heap_trimmer()
    settings.data_path.mkdir(parents=True, exist_ok=True)
    store = store or open_store(settings.database_url, settings.data_path)
    await store.open()
    audio = open_audio_store(settings)
    engine: Transcriber | None = None
    vad: SileroModel | None = None
    try:
        await audio.open()
        try:  # before anything is taken or recovered: a node on another store than its database's stops here
            await check_shared_store(store, audio, where=describe_audio_store(settings))
        except NotTheSharedStore as exc:
            log.error("%s", exc)
            raise
        published = await audio.recover()  # what a stopped process on this data dir left behind
        if published:
            log.info("stored %d recording(s) a stopped process had not stored yet", published)
        queue = open_job_queue(settings, store)
        if role.transcribes and settings.asr_backend in RECOGNIZERS and backend is None:
            vad = await asyncio.to_thread(SileroModel)
            engine = make_recognizer(settings.asr_backend, riva_config(settings))
        elif role.transcribes:
            config = backend_config(settings, live=role.live)
            chosen, vad = await asyncio.gather(
                asyncio.to_thread(make_backend, config) if backend is None else _given(backend),
                asyncio.to_thread(SileroModel))
            limit_blas_threads()  # the models' libraries are loaded now
            loop = InferenceLoop(chosen, step_s=settings.min_step_ms / 1000)  # the live streams' step (asr.pace)
            if metrics is not None:
                loop.observers.append(metrics.observe_batch)
            loop.start()
            engine = loop
    except BaseException:
        await audio.close()
        await store.close()
        raise
    redis = None
    node = claim_node_id()
    if settings.redis_url:  # connects on first use: a Redis that is down now delays nothing but the fan-out
        redis = redis_client.connect(settings.redis_url)
        await redis_client.reachable(redis, settings.redis_url)
        if fanout is None:
            fanout = redis_broker(redis, node)
            log.info("live messages fan out through Redis at %s; this node is %s",
                     redis_client.describe(settings.redis_url), fanout.node)
    hub = MeteredHub(store, metrics, fanout) if metrics is not None else Hub(store, fanout)
    ingest = IngestPool(vad, settings.effective_ingest_threads) if vad is not None else None
    services = Services(settings=settings, store=store, hub=hub, audio=audio, jobs=queue, engine=engine,
                        vad_model=vad, ingest=ingest, role=role, redis=redis, node=node)
    services.leases = make_leases(redis, node, settings.live_lease_seconds, finisher=services,
                                  streams=services.live.streams, lost=services.live.taken_over,
                                  grace_seconds=settings.live_grace_seconds,
                                  check_fences=services.live.check_fences)
    if role.live:
        services.load = LoadMonitor(target_s=settings.latency_target_s, streams=services.live.publishers,
                                    engine=services.loop, loop_delay=services.loop_delay,
                                    speakers=services.speaker_worker)
        services.admission = Admission(settings, services.live.publishers, services.load, services.leases)
    if role.transcribes and services.redactor.enabled:
        # the analyzer takes seconds to load: in the background, so the first final with a name does not wait
        services._background.append(asyncio.create_task(asyncio.to_thread(services.redactor.load)))
    return services


def open_job_queue(settings: Settings, store: Store) -> JobQueue:
    """The queue on the store's database: the embedded runner's table on SQLite, procrastinate on PostgreSQL
    (each imported here only: a node never loads the other)."""
    url = settings.database_url
    if url and async_url(url).get_backend_name() == "postgresql":
        from server.jobs.pg import PgQueue

        return PgQueue(store, libpq_dsn(url), lane_of, settings.job_lease_seconds)
    from server.jobs.embedded import EmbeddedQueue

    return EmbeddedQueue(store, settings.data_path)


def redis_broker(client: Redis, node: str) -> RedisBroker:
    """Fan-out across nodes on Redis Streams (imported here only: an embedded node never loads it)."""
    from server.fanout.redis import RedisBroker

    return RedisBroker(client, node)


async def _given(backend: AsrBackend) -> AsrBackend:
    return backend


async def start_rest(services: Services) -> RestServices:
    """The API's parts."""
    settings = services.settings
    shared = settings.redis_url  # with Redis the limits hold for the whole deployment, not per node
    secret = await services.store.get_or_create_secret("upload-url-signing", secrets.token_hex(32))
    meetings = MeetingTokens(bytes.fromhex(await services.store.get_or_create_secret("meeting-tokens",
                                                                                    secrets.token_hex(32))))
    return RestServices(store=services.store, authenticator=Authenticator(settings, services.store, meetings),
                        signer=UploadSigner(bytes.fromhex(secret)), meetings=meetings,
                        upload_rate=RateLimiter(settings.upload_url_rate, name="upload-url", redis_url=shared),
                        address_rate=RateLimiter(settings.rate_per_address, name="address", redis_url=shared),
                        project_rate=RateLimiter(settings.rate_per_project, name="project", redis_url=shared))


async def start_live(services: Services) -> None:
    """Take live audio. Without Redis this node is the only one that does, so every transcript still ``live``
    was left so by a process of its own that stopped: finished now, from what was stored."""
    services.loop_delay.start()
    if services.load is not None:
        services.load.start()
    if not services.settings.redis_url:
        finished = await finish_all_abandoned(services, services.live.streams)
        if finished:
            log.info("finished %d transcript(s) a stopped process had left live", finished)


async def start_sweeping(services: Services) -> None:
    """With Redis: renew this node's leases, and finish the transcripts of nodes that died (any node may)."""
    await services.leases.start()


async def start_jobs(services: Services) -> None:
    """Take jobs: the runner on the queue, the webhook sender it uses, and housekeeping. Resumes what a stopped
    process left unfinished."""
    settings = services.settings
    services.webhooks = WebhookSender(services.store, settings)
    services.webhooks.start()
    services.runner = JobRunner(services, services.jobs, all_tasks(settings), lanes(settings),
                                stall_seconds=settings.job_stall_seconds)
    services.runner.start()
    chores = [functools.partial(forget_old_requests, services), functools.partial(requeue_overdue, services),
              functools.partial(requeue_orphans, services), functools.partial(remove_expired_uploads, services)]
    services._background.append(asyncio.create_task(keep_house(chores), name="housekeeping"))


async def close(services: Services) -> None:
    """Stop taking jobs, finish what is live (finals stored), then release everything, store last."""
    if services.runner is not None:
        await services.runner.stop()
    for task in services._background:
        task.cancel()
    await asyncio.gather(*services._background, return_exceptions=True)
    await services.live.finish_all()
    await services.loop_delay.stop()
    if services.load is not None:
        await services.load.stop()
    await services.leases.close()
    if services.webhooks is not None:
        await services.webhooks.stop()
    if isinstance(services.engine, InferenceLoop):
        await asyncio.to_thread(services.engine.stop)
    elif services.engine is not None:
        await services.engine.close()
    services.speaker_worker.close()
    if services.ingest is not None:
        await asyncio.to_thread(services.ingest.close)
    await services.hub.broker.close()
    if services.redis is not None:
        await services.redis.aclose()
    with contextlib.suppress(Exception):
        await services.jobs.close()
    await services.audio.close()
    await services.store.close()
