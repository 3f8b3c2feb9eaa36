"""Admission control: a stream the server cannot serve well is refused at the door, not let in to slow everyone.

Live streams (WebSocket publishers, WebRTC connections, each channel of a split stream) are admitted by
:meth:`Admission.admit_live`, called once in ``LiveTranscript.add_publisher``; the WebRTC offer route asks
:meth:`Admission.check_live` before it builds a peer connection. In order, a new stream is refused

* ``RATE_LIMITED`` when its caller (token user or API key) already publishes ``VOXLANE_MAX_STREAMS_PER_TOKEN``
  streams, or its client address ``VOXLANE_MAX_STREAMS_PER_ADDRESS`` (an IPv6 address counted by its network,
  ``VOXLANE_IPV6_PREFIX_LENGTH``). A session that exists to publish (OpenAI Realtime) holds its slot from the
  moment it opens (:meth:`Admission.open_session`), whether it has sent audio yet or not;
* ``OVERLOADED`` when ``VOXLANE_MAX_LIVE_STREAMS`` streams are live, or when what the admitted streams get says
  one more would not be served within ``VOXLANE_LATENCY_TARGET_S`` (:mod:`server.pipeline.load`: ``overloaded``,
  ``full``, or ``capacity`` while the newest streams settle or where more streams overloaded the node before).

Each refusal carries ``details.retry_after_s``. Uploads and jobs are never refused for load: they queue in
the durable work queue and run at the lowest priority. Only *receiving* them is bounded, on the HTTP side
(:mod:`server.http.admission`: 429 to an upload beyond ``VOXLANE_MAX_CONCURRENT_UPLOADS`` bodies being received at
once), which also records who is calling (:data:`CALLER`) for the live checks.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from protocol import ErrorCode, ProtocolError
from server.pipeline.load import SETTLE_S

if TYPE_CHECKING:
    from server.pipeline.load import LoadMonitor

log = logging.getLogger("voxlane.admission")

CAPACITY_RETRY_S = 10
"""Suggested wait after a refusal for load: live streams end at a human pace."""
CALLER_RETRY_S = 30
"""Suggested wait after a per-caller refusal: one of the caller's own streams has to end first."""
UPLOAD_RETRY_S = 5
LOG_EVERY_S = 1.0
"""At most one refusal of each reason is logged per second (all are counted in /metrics)."""
WARMING_RETRY_S = 3
"""Suggested wait after a refusal while the newest streams settle: one more may come once they have."""


@dataclass(frozen=True)
class Caller:
    """Who opens a stream: the token's user (None: anonymous) and the client's address."""

    identity: str | None = None
    address: str | None = None


CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("voxlane_caller", default=None)
"""Set for each request and WebSocket by :class:`AdmissionMiddleware`; tasks started while serving it (a
WebRTC connection's audio and control tasks) inherit it."""


@dataclass(frozen=True)
class Refusal:
    """Why a stream is not admitted, in the shape both the protocol and HTTP need."""

    code: ErrorCode
    # max_live_streams | capacity | latency | warming_up | lag | per_token | per_address | webrtc_offers | uploads
    reason: str
    message: str
    retry_after_s: int
    details: dict[str, Any]

    @property
    def http_status(self) -> int:
        return 429 if self.code == ErrorCode.RATE_LIMITED else 503

    def protocol_error(self) -> ProtocolError:
        return ProtocolError(self.code, self.message, self.wire_details)

    @property
    def wire_details(self) -> dict[str, Any]:
        return {"reason": self.reason, "retry_after_s": self.retry_after_s, **self.details}


class Refused(Exception):
    """A refusal raised where the caller answers over HTTP (the app turns it into 503 or 429 with
    ``Retry-After``, :mod:`server.http.admission`)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class AdmissionSettings(Protocol):
    """The settings admission reads."""

    max_streams_per_token: int
    max_streams_per_address: int
    max_live_streams: int
    max_webrtc_offers: int
    max_webrtc_offers_per_caller: int
    max_concurrent_uploads: int


class Slots(Protocol):
    """A caller's stream slots across nodes (:mod:`server.pipeline.ownership`)."""

    async def take_slots(self, stream: str, caps: list[tuple[str, int]]) -> str | None: ...

    async def give_back_slots(self, stream: str) -> None: ...


class Admission:
    """The admission policy of one app (``services.admission``); it also counts what it refused."""

    def __init__(self, settings: AdmissionSettings, publishers: Callable[[], Iterable[Any]],
                 load: LoadMonitor | None, leases: Slots) -> None:
        """``publishers``: the node's live publishers now (the live registry's); ``load``: what they get (None
        where the streams go to a recognizer service whose capacity is its own); ``leases``: the caller slots
        shared across nodes."""
        self.settings = settings
        self._publishers = publishers
        self.load = load
        self._leases = leases
        self.refused: Counter[str] = Counter()  # by reason, for /metrics
        self.offers_in_flight = 0
        self.uploads_in_flight = 0
        # streams admitted whose publisher is not registered yet: opening one awaits the store and the leases, and
        # the caps must count them (six starts sent at once were all admitted under VOXLANE_MAX_LIVE_STREAMS=3)
        self._opening: set[str] = set()
        self._logged: dict[str, float] = {}  # when a refusal of each reason was last logged
        self._sessions: dict[object, tuple[Caller, str]] = {}  # open publishing sessions -> (caller, transcript)

    # ------------------------------------------------------------ live streams

    def live_publishers(self) -> list[Any]:
        return [p for p in self._publishers() if not p.finished]

    def capacity(self) -> int | None:
        """Live streams this node serves within the latency target: the most it was seen to serve well, or before
        that what its calibrated decode cost allows (None: not known, or the streams go to a recognizer service
        whose capacity is its own); see :mod:`server.pipeline.load`."""
        return None if self.load is None else self.load.allowed()

    def headroom(self) -> int | None:
        """Live streams this node may still admit within the latency target (None: not known);
        ``VOXLANE_MAX_LIVE_STREAMS`` bounds it too."""
        n = len(self.live_publishers()) + len(self._opening)
        capacity = self.capacity()
        room = None if capacity is None else max(0, capacity - n)
        if self.settings.max_live_streams:
            cap = max(0, self.settings.max_live_streams - n)
            room = cap if room is None else min(room, cap)
        return room

    def check_live(self, caller: Caller | None = None, transcript: str | None = None) -> Refusal | None:
        """Whether one more live stream from ``caller`` (default: the current one) would be refused; a stream of
        ``transcript`` takes the slot of the caller's open session there, if it has one."""
        caller = caller or CALLER.get() or Caller()
        s = self.settings
        pubs = self.live_publishers()
        opening = len(self._opening)
        n = len(pubs) + opening  # every stream admitted, registered or still opening
        for field_name, value, limit, reason, what, env in (
                ("identity", caller.identity, s.max_streams_per_token, "per_token", "token", "TOKEN"),
                ("address", caller.address, s.max_streams_per_address, "per_address", "address", "ADDRESS")):
            if value is None or not limit:
                continue
            mine = self._held_by(field_name, value, pubs, transcript)
            if mine >= limit:
                return Refusal(ErrorCode.RATE_LIMITED, reason,
                               f"this {what} already publishes {mine} live stream(s), the most allowed"
                               f" (VOXLANE_MAX_STREAMS_PER_{env}); stop one first", CALLER_RETRY_S, {"limit": limit})
        if s.max_live_streams and n >= s.max_live_streams:
            return Refusal(ErrorCode.OVERLOADED, "max_live_streams",
                           f"the server serves at most {s.max_live_streams} live streams at once; try again later",
                           CAPACITY_RETRY_S, {"limit": s.max_live_streams})
        load = self.load
        if load is None:
            return None
        now = time.monotonic()
        starting = opening + sum(now - p.started_at < SETTLE_S for p in pubs)
        refused = load.refusal(n, starting)
        if refused is None:
            return None
        return Refusal(ErrorCode.OVERLOADED, refused.reason, refused.message,
                       WARMING_RETRY_S if refused.reason == "capacity" else CAPACITY_RETRY_S, refused.details)

    def _held_by(self, field_name: str, value: str, pubs: list[Any], transcript: str | None = None) -> int:
        """Stream slots one token (``identity``) or address holds: its open sessions, and its publishers that no
        such session stands for (a session's own publisher is the same slot); a session on ``transcript`` is left
        out (the stream asked for is its own)."""
        sessions = [tid for caller, tid in self._sessions.values() if getattr(caller, field_name) == value]
        if transcript in sessions:
            sessions.remove(transcript)
        return len(sessions) + sum(getattr(getattr(p, "caller", None), field_name, None) == value
                                   and p.transcript.id not in sessions for p in pubs)

    @contextlib.contextmanager
    def open_session(self, transcript_id: str, caller: Caller | None = None) -> Iterator[None]:
        """A publishing session (OpenAI Realtime) open on ``transcript_id``: it holds one of its caller's stream
        slots until it closes, audio or not. Raises the refusal (:meth:`check_live` on the per-caller caps)."""
        caller = caller or CALLER.get() or Caller()
        refusal = self.check_live(caller)
        if refusal is not None and refusal.reason in ("per_token", "per_address"):
            self.count(refusal)
            raise refusal.protocol_error()
        key = object()
        self._sessions[key] = (caller, transcript_id)
        try:
            yield
        finally:
            del self._sessions[key]

    async def admit_live(self, stream: str, caller: Caller | None = None, transcript: str | None = None) -> Caller:
        """Admit one live stream or raise the refusal as a protocol ``error``; returns who it belongs to.

        With Redis the per-token and per-address caps count the caller's streams on every node: the stream takes
        a slot in each (given back by :meth:`release`), so a caller cannot get N times its cap from N nodes."""
        caller = caller or CALLER.get() or Caller()
        refusal = self.check_live(caller, transcript)
        if refusal is None:
            self._opening.add(stream)  # counted from here on, before anything is awaited
            refusal = await self._take_slots(stream, caller)
        if refusal is not None:
            self._opening.discard(stream)
            self.count(refusal)
            raise refusal.protocol_error()
        return caller

    def opened(self, stream: str) -> None:
        """The admitted stream's publisher is registered (and counted as one) now."""
        self._opening.discard(stream)

    async def release(self, stream: str) -> None:
        self._opening.discard(stream)
        await self._leases.give_back_slots(stream)

    async def _take_slots(self, stream: str, caller: Caller) -> Refusal | None:
        s = self.settings
        caps = [(f"{kind}:{value}", limit) for kind, value, limit in (
            ("token", caller.identity, s.max_streams_per_token), ("address", caller.address, s.max_streams_per_address))
            if value is not None and limit]
        full = await self._leases.take_slots(stream, caps)
        if full is None:
            return None
        what, env, limit = ("token", "TOKEN", s.max_streams_per_token) if full.startswith("token:") else (
            "address", "ADDRESS", s.max_streams_per_address)
        return Refusal(ErrorCode.RATE_LIMITED, f"per_{what}",
                       f"this {what} already publishes {limit} live stream(s) on this deployment's nodes, the most"
                       f" allowed (VOXLANE_MAX_STREAMS_PER_{env}); stop one first", CALLER_RETRY_S, {"limit": limit})

    def count(self, refusal: Refusal) -> Refusal:
        """A refusal shows in /metrics, and in the log with its figures: an operator (or a failed test) can tell
        which rule turned a stream away, and on what numbers."""
        self.refused[refusal.reason] += 1
        now = time.monotonic()
        if now - self._logged.get(refusal.reason, -LOG_EVERY_S) >= LOG_EVERY_S:  # a client retrying in a loop
            self._logged[refusal.reason] = now                                  # must not flood the log
            log.info("refused (%s): %s %s", refusal.reason, refusal.message, refusal.wire_details)
        return refusal

    # ------------------------------------------------------------ WebRTC handshakes

    def check_pending_offers(self, pending: list[Caller], caller: Caller | None = None) -> Refusal | None:
        """Whether ``caller`` may have one more WebRTC session offered and not connected yet (``pending``: the
        callers of those the node has): one token or address may not hold every place the node has."""
        caller = caller or CALLER.get() or Caller()
        limit = self.settings.max_webrtc_offers_per_caller
        for what, value in (("token", caller.identity), ("address", caller.address)):
            if value is None:
                continue
            mine = sum((p.identity if what == "token" else p.address) == value for p in pending)
            if mine >= limit:
                return Refusal(ErrorCode.RATE_LIMITED, "webrtc_pending",
                               f"this {what} already has {mine} WebRTC session(s) offered and not connected, the most"
                               " allowed (VOXLANE_MAX_WEBRTC_OFFERS_PER_CALLER): connect or let them expire first",
                               UPLOAD_RETRY_S, {"limit": limit})
        return None

    @contextlib.contextmanager
    def offer_slot(self) -> Iterator[None]:
        """One WebRTC offer being negotiated (ICE gathering takes a while); :class:`Refused` beyond the limit
        (503 over HTTP)."""
        limit = self.settings.max_webrtc_offers
        if self.offers_in_flight >= limit:
            raise Refused(self.count(Refusal(ErrorCode.OVERLOADED, "webrtc_offers",
                                             f"{limit} WebRTC offers are being negotiated already; try again"
                                             " shortly", UPLOAD_RETRY_S, {"limit": limit})))
        self.offers_in_flight += 1
        try:
            yield
        finally:
            self.offers_in_flight -= 1
