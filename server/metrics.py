"""``GET /metrics``: the server's state and work in the Prometheus text format.

Every app has its own :class:`Metrics` (its own ``CollectorRegistry``: several apps live in one test process,
and nothing here leaks into prometheus-client's global registry). What it holds, and where it comes from:

* state, read when scraped (:class:`_StateCollector`): live streams, transcripts and subscribers, stream lag,
  the inference loop's queue, the upload/job queue, WebRTC connections, uploads and offers in flight, the
  measured live capacity, and what admission control refused (by reason);
* inference batches (sizes, decode and wait seconds), from an observer the inference loop calls per batch;
* HTTP requests by route *template* (``/v1/transcripts/{transcript_id}``, never the raw path: the label set
  stays bounded), method and status, with their durations, from :class:`MetricsMiddleware`;
* errors by code: the ``error`` messages sent to live clients (:class:`MeteredHub`) and the HTTP error bodies.

In private mode ``/metrics`` needs a token with the ``projects:admin`` scope, unless ``VOXLANE_METRICS_PORT``
serves it on a port of its own (no authentication there: keep that port internal).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asr.batch_report import BatchReport
from server.fanout import Broker
from server.http.auth import PROJECTS_ADMIN, AuthError, bearer_token
from server.http.errors import ApiError
from server.http.middleware import ConnectionMiddleware
from server.pipeline.hub import Hub, Subscriber
from server.pipeline.load import SHED_MEASURES

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,47}$")
_ERROR_BODY_LIMIT = 16 * 1024
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.batch_size = Histogram("voxlane_inference_batch_size", "Requests decoded together in one batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.decode_seconds = Histogram("voxlane_inference_decode_seconds", "Wall time of one batch's decode",
                                        ["kind"], buckets=LATENCY_BUCKETS, registry=r)
        self.wait_seconds = Histogram("voxlane_inference_wait_seconds", "Longest a request of a batch waited for a"
                                      " lane", ["kind"], buckets=LATENCY_BUCKETS, registry=r)
        self.http_requests = Counter("voxlane_http_requests", "HTTP requests answered", ["method", "route", "status"],
                                     registry=r)
        self.http_seconds = Histogram("voxlane_http_request_duration_seconds", "Time to answer an HTTP request"
                                      " (until the response starts)", ["method", "route"], buckets=LATENCY_BUCKETS,
                                      registry=r)
        self.errors = Counter("voxlane_errors", "Errors sent, by wire code: live 'error' messages (per recipient)"
                              " and HTTP error bodies", ["transport", "code"], registry=r)

    def watch(self, app: Starlette) -> None:
        """Read the app's live state at each scrape."""
        self.registry.register(_StateCollector(app))

    # ------------------------------------------------------------ hooks

    def observe_batch(self, report: BatchReport) -> None:
        """An inference-loop observer (called on a lane's thread; prometheus-client is thread-safe)."""
        kind = "urgent" if report.urgent else "live" if report.live else "bulk"
        self.batch_size.observe(report.size)
        self.decode_seconds.labels(kind).observe(report.seconds)
        self.wait_seconds.labels(kind).observe(report.waited)

    def live_error(self, code: Any) -> None:
        self.errors.labels("live", code if isinstance(code, str) and _CODE.match(code) else "OTHER").inc()

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _StateCollector(Collector):
    def __init__(self, app: Starlette) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        state = self.app.state
        services = getattr(state, "services", None)
        if services is None:  # not started yet (or stopped)
            return
        pubs = [p for p in services.live.publishers() if not p.finished]
        taken = CounterMetricFamily("voxlane_live_taken_over", "Transcripts whose streams on this node ended because"
                                    " the database refused their fence (another node took them over)")
        taken.add_metric([], services.live.fenced_out)
        yield taken
        yield _gauge("voxlane_live_streams", "Live audio streams being transcribed", len(pubs))
        yield _gauge("voxlane_live_transcripts", "Transcripts with at least one live stream",
                     len({p.transcript.id for p in pubs}))
        subs = getattr(services.hub, "_subs", {})
        yield _gauge("voxlane_subscribers", "Clients listening to a transcript (WebSocket or WebRTC channel)",
                     sum(len(s) for s in list(subs.values())))
        lags = [p.session.lag_seconds for p in pubs]
        yield _gauge("voxlane_live_lag_seconds_max", "Largest lag of a live stream behind its received audio",
                     max(lags, default=0.0))
        yield _gauge("voxlane_live_lag_seconds_mean", "Mean lag of the live streams", sum(lags) / len(lags)
                     if lags else 0.0)
        loop = services.loop
        if loop is not None:
            yield from _engine_metrics(loop)
        load = services.load
        if load is not None:
            health = load.health
            yield _gauge("voxlane_live_load_overloaded", "1 while the live streams are past the latency target or"
                         " fall behind (server.pipeline.load)", float(health.verdict == "overloaded"))
            yield _gauge("voxlane_live_lag_growth_seconds_per_second", "The fastest-growing live stream's lag over"
                         " the last 10 s", health.lag_growth)
            shed = GaugeMetricFamily("voxlane_shedding", "1 for each measure shed while past capacity",
                                     labels=["measure"])
            for i, measure in enumerate(SHED_MEASURES):
                shed.add_metric([measure], float(i < load.level))
            yield shed
        delay = GaugeMetricFamily("voxlane_event_loop_delay_seconds", "How late the event loop ran a timer over the"
                                  " last 30 s, by quantile (every stream's messages wait as long)",
                                  labels=["quantile"])
        for q in (50, 99, 100):
            value = services.loop_delay.percentile(q)
            if value is not None:
                delay.add_metric([f"{q / 100:g}"], value)
        yield delay
        runner = services.runner
        if runner is not None:
            yield _gauge("voxlane_work_queue_depth", "Jobs waiting to run (on every node of this database)",
                         runner.queued)
            yield _gauge("voxlane_jobs_running", "Jobs running on this node", len(runner.running))
        webrtc = getattr(state, "webrtc", None)
        if webrtc is not None:
            yield _gauge("voxlane_webrtc_connections", "WebRTC peer connections", len(webrtc))
        admission = services.admission
        if admission is not None:
            capacity = admission.capacity()
            if capacity is not None:
                yield _gauge("voxlane_live_capacity_streams", "Live streams the measured decode times allow within"
                             " VOXLANE_LATENCY_TARGET_S", capacity)
            headroom = admission.headroom()
            if headroom is not None:
                yield _gauge("voxlane_live_headroom_streams", "Live streams this node may still admit within"
                             " VOXLANE_LATENCY_TARGET_S (measured decode times, or the calibration at start)",
                             headroom)
            yield _gauge("voxlane_uploads_in_flight", "Upload bodies being received", admission.uploads_in_flight)
            yield _gauge("voxlane_webrtc_offers_in_flight", "WebRTC offers being negotiated",
                         admission.offers_in_flight)
            refused = CounterMetricFamily("voxlane_admissions_refused", "Streams, offers and uploads refused, by"
                                          " reason", labels=["reason"])
            for reason in ("max_live_streams", "overloaded", "full", "capacity", "per_token", "per_address",
                           "webrtc_offers", "uploads"):
                refused.add_metric([reason], admission.refused.get(reason, 0))
            yield refused


def _engine_metrics(engine: Any) -> Iterator[Metric]:
    yield _gauge("voxlane_inference_queue_depth", "Sessions waiting for a decode", engine.queue_depth)
    yield _gauge("voxlane_inference_lanes", "Decodes the model runs at once", engine.lanes)
    stats = engine.stats
    for name, doc, value in (("batches", "Batches decoded", stats.batches),
                             ("requests", "Requests decoded", stats.requests),
                             ("coalesced", "Decode requests folded into one already waiting", stats.coalesced),
                             ("hurried", "Requests decoded the cheaper way while streams waited", stats.hurried)):
        c = CounterMetricFamily(f"voxlane_inference_{name}", doc)
        c.add_metric([], value)
        yield c
    busy = CounterMetricFamily("voxlane_inference_busy_seconds", "Lane-seconds the model decoded, by kind of"
                               " decode (final, endpoint: a pause's commit, partial: a refresh, bulk: recorded"
                               " files)", labels=["kind"])
    for kind in ("final", "endpoint", "partial", "bulk"):
        busy.add_metric([kind], stats.seconds_by_kind.get(kind, 0.0))
    yield busy
    enc = CounterMetricFamily("voxlane_inference_encoder_seconds", "Of the busy lane-seconds, the encoder's")
    enc.add_metric([], stats.encode_seconds)
    yield enc
    decode = engine.capacity.decode_seconds()
    if decode is not None:
        yield _gauge("voxlane_inference_live_decode_seconds_median", "Median of recent live decodes (what"
                     " admission control predicts from)", decode)
    for percentile, what in ((90, " (what admission control steers on)"), (95, "")):
        commit = engine.capacity.commit_delay(percentile)
        if commit is not None:
            yield _gauge(f"voxlane_live_commit_delay_p{percentile}_seconds", f"p{percentile} of recent delays from"
                         f" an utterance's end to its last word final, over every live stream{what}", commit)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


# ---------------------------------------------------------------- live errors


class MeteredHub(Hub):
    """The hub, counting every ``error`` message handed to a subscriber (a client's own replies and broadcasts
    alike: what clients were sent)."""

    def __init__(self, store: Any, metrics: Metrics, broker: Broker | None = None) -> None:
        super().__init__(store, broker)
        self._metrics = metrics

    def subscribe(self, transcript_id: str) -> Subscriber:
        sub = super().subscribe(transcript_id)
        put = sub.put
        metrics = self._metrics

        def counted(message: dict[str, Any]) -> None:
            if message.get("type") == "error":
                metrics.live_error((message.get("data") or {}).get("code"))
            put(message)

        sub.put = counted  # type: ignore[method-assign]
        return sub


# ---------------------------------------------------------------- HTTP


def route_template(scope: Scope) -> str:
    """The route's declared path: a label set bounded by the routes, whatever paths clients send."""
    route = scope.get("route")  # set by the router once it matched
    if route is None and "app" in scope:
        for candidate in getattr(scope["app"], "routes", ()):
            match, _ = candidate.matches(scope)
            if match != Match.NONE:
                route = candidate
                break
    path = getattr(route, "path", None)
    if path is None:
        return "unmatched"
    return f"{path}/{{path}}" if isinstance(route, Mount) else path


class MetricsMiddleware(ConnectionMiddleware):
    """Counts and times every HTTP request by route template, and counts error bodies by their code."""

    scope_types = ("http",)

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500
        error_body: list[bytes] | None = None

        async def watching(message: Message) -> None:
            nonlocal status, error_body
            if message["type"] == "http.response.start":
                status = message["status"]
                ctype = dict(message.get("headers") or []).get(b"content-type", b"")
                error_body = [] if status >= 400 and ctype.startswith(b"application/json") else None
                self.metrics.http_seconds.labels(*self._labels(scope)).observe(time.perf_counter() - started)
            elif message["type"] == "http.response.body" and error_body is not None:
                if sum(map(len, error_body)) < _ERROR_BODY_LIMIT:
                    error_body.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watching)
        finally:
            method, route = self._labels(scope)
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels("http", _error_code(error_body, status)).inc()

    @staticmethod
    def _labels(scope: Scope) -> tuple[str, str]:
        method = scope.get("method", "GET")
        return (method if method in _METHODS else "OTHER"), route_template(scope)


def _error_code(body: list[bytes] | None, status: int) -> str:
    """The ``error.code`` of an error body, else the status (a body in another shape, or none)."""
    try:
        data = json.loads(b"".join(body or []))
        code = data["error"]["code"] if isinstance(data.get("error"), dict) else None
    except (ValueError, KeyError, TypeError, AttributeError):
        code = None
    return code if isinstance(code, str) and _CODE.match(code) else str(status)


# ---------------------------------------------------------------- the endpoint


async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    rest = getattr(request.app.state, "rest", None)
    if rest is not None and rest.authenticator.private:
        token = bearer_token(request.scope)
        if token is None:
            raise AuthError("/metrics needs 'Authorization: Bearer <token>' with the projects:admin scope")
        who = await rest.authenticator.authenticate(token)
        if not who.has(PROJECTS_ADMIN):
            raise ApiError(403, f"this token lacks the {PROJECTS_ADMIN!r} scope", "INSUFFICIENT_SCOPE",
                           {"required": PROJECTS_ADMIN})
    return metrics.render()
