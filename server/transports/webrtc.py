"""WebRTC ingest: one peer connection is one publisher of a transcript (the HTTP signalling is in
server.routes.webrtc: ``POST /v1/transcripts_webrtc/{id}/offer`` and ``.../answer``).

Handshakes (the server never trickles ICE candidates and expects none: send a description
gathered to completion)::

    client offers (browsers, web_client/app.js):
      POST .../offer   {"type": "offer", "sdp": "v=0..."}
      <- 200           {"type": "answer", "sdp": "v=0...", "session_id": "..."}

    server offers (clients that can only answer: media gateways, meeting bots, embedded stacks,
    or clients that want the server to lay out the media sections):
      POST .../offer   (empty body, or {"type": "request"})
      <- 200           {"type": "offer", "sdp": "v=0...", "session_id": "..."}
      POST .../answer  {"session_id": "...", "type": "answer", "sdp": "v=0..."}
      <- 200           {"session_id": "...", "connection_state": "..."}
      The server's offer has one receive-only audio section and a ``control`` data channel,
      and must be answered within 30 s.

A connection is one publisher of the transcript, fed through the same :class:`Publisher` as
WebSocket audio. Its first audio frame starts the stream (a client does not need a data channel
to be transcribed); ``{"action": "start"}`` on the ``control`` channel starts it earlier (with a
``participant``, say) or resumes it after ``pause``. The ``format``/``sample_rate``/``channels``
start params are ignored: the negotiated codec describes the audio. Every other action behaves
as on the WebSocket: ``pause``, ``get_status`` (answered on the channel), ``stop`` (flushes:
finals stored, then ``completed``; audio that follows is dropped until the next ``start``) and
``participant_event``; errors come back as ``error`` messages on the channel. The channel also
carries every server message of the transcript while it is open, starting with its status.

When the connection fails, closes, never connects or stops sending audio, the stream is
finished exactly as after ``stop``, and the connection's resources are released.

The offer and answer need the ``transcripts:write`` scope. Audio frames more than
``VOXLANE_MAX_AUDIO_LEAD_SECONDS`` ahead of the wall clock (since the first frame) are dropped, and
the peer is told once with a RATE_LIMITED error: RTP cannot be pushed back as a TCP socket can.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from media.audio import SAMPLE_RATE
from media.ice import IceConfig
from media.webrtc import WebRtcPeer
from protocol import ErrorCode, ProtocolError, StartParams, Status, envelope
from protocol.messages import Error
from server.pipeline.admission import CALLER, Caller
from server.pipeline.control import apply_control, pin_participant
from server.pipeline.hub import Subscriber
from server.pipeline.publisher import Publisher
from server.pipeline.transcripts import transcript_status

if TYPE_CHECKING:
    from server.transports.parts import SessionParts

log = logging.getLogger("voxlane.webrtc")

MAX_SESSIONS = 256
MAX_PENDING_CONTROL = 64
MAX_CONTROL_CHARS = 64 * 1024  # one control message (JSON); a bigger one is answered MESSAGE_TOO_LARGE
CHANNEL_HIGH_WATER = 1024 * 1024  # bytes queued on the data channel before forwarding waits
FINISH_TIMEOUT_S = 120.0


class WebRtcSession(WebRtcPeer):
    """One peer connection publishing to one transcript."""

    def __init__(self, registry: WebRtcRegistry, transcript_id: str, may_publish: bool = True,
                 participant: dict[str, Any] | None = None) -> None:
        super().__init__(registry.ice, max_audio_lead=registry.services.settings.max_audio_lead_seconds,
                         id_prefix=registry.tag + ".")
        self.registry = registry
        self.svc: SessionParts = registry.services
        self.transcript_id = transcript_id
        self.may_publish = may_publish  # the offer needs transcripts:write; kept for the shared control rules
        self.participant = participant  # a meeting token's participant: every stream of this peer is theirs
        self.caller = CALLER.get() or Caller()  # who offered it: its pending offers are capped per caller
        self.publisher: Publisher | None = None
        self._hold = False  # after "stop" (or a refused automatic start) audio waits for "start"
        self._start_lock = asyncio.Lock()
        self._inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._early: deque[dict[str, Any]] = deque(maxlen=32)  # replies before the channel exists
        self._sub: Subscriber | None = None
        self._forward_task: asyncio.Task | None = None
        self._control_task = asyncio.create_task(self._control_loop(), name=f"webrtc-control-{self.id}")

    # ------------------------------------------------------------ audio

    async def on_audio(self, samples: np.ndarray) -> None:
        pub = self.publisher
        if pub is None or pub.finished:
            if self._hold:
                return
            pub = await self._start(None, automatic=True)
            if pub is None:
                return
        await pub.feed_pcm(samples)  # off the event loop, in order

    def on_audio_overrun(self, lead: float) -> None:
        self.reply(Error(code=ErrorCode.RATE_LIMITED.value, message=(
            f"audio arrives faster than real time: frames more than {lead:g} s ahead of the wall clock since the"
            " first one are dropped"), details={"max_audio_lead_seconds": lead}))

    async def _start(self, params: StartParams | None, automatic: bool) -> Publisher | None:
        async with self._start_lock:
            if self.publisher is not None and not self.publisher.finished:
                return self.publisher
            if automatic and self._hold:
                return None
            live = self.svc.live.get(self.transcript_id)
            try:
                self.publisher = await live.add_publisher(_webrtc_params(pin_participant(params, self.participant)),
                                                          tell=self.reply)
            except ProtocolError as exc:
                self.svc.live.drop(live)
                if not automatic:
                    raise
                self._hold = True
                log.info("peer %s: audio for %s refused: %s", self.id, self.transcript_id, exc.message)
                self.reply(ProtocolError(exc.code, f"audio from this connection is not transcribed: {exc.message}",
                                          exc.details, recoverable=False).to_message())
                return None
            self._hold = False
            return self.publisher

    async def _finish_publisher(self, pub: Publisher) -> None:
        tail = self.flush_audio()
        if tail.size:
            await pub.feed_pcm(tail)
        await pub.finish()

    # ------------------------------------------------------------ control channel in

    def on_control_message(self, data: str | bytes) -> None:
        if self.closing:
            return
        if len(data) > MAX_CONTROL_CHARS:
            self.reply(Error(code=ErrorCode.MESSAGE_TOO_LARGE.value, message=(
                f"a control message of {len(data)} bytes is over the limit of {MAX_CONTROL_CHARS}: it was dropped"),
                details={"size": len(data), "max_size": MAX_CONTROL_CHARS}))
            return
        if self._inbox.qsize() >= MAX_PENDING_CONTROL:
            self.reply(Error(code=ErrorCode.OVERLOADED.value, message="too many control messages pending"))
            return
        self._inbox.put_nowait(data)

    async def _control_loop(self) -> None:
        while True:
            data = await self._inbox.get()
            if data is None:
                return
            try:
                await self._control(data)
            except ProtocolError as exc:
                self.reply(exc.to_message())
            except Exception:
                log.exception("peer %s: control message failed", self.id)
                self.reply(Error(code=ErrorCode.INTERNAL_ERROR.value, message="internal error"))

    async def _control(self, data: str | bytes) -> None:
        await apply_control(self, data)

    # ------------------------------------------------------------ ControlChannel

    declares_format = False  # the negotiated codec describes the audio, not 'start'

    async def start_publisher(self, params: StartParams | None) -> None:
        await self._start(params, automatic=False)

    async def stop_publisher(self, publisher: Publisher) -> None:
        self._hold = True
        await self.finishing(self._finish_publisher(publisher))

    def status(self) -> Status:
        return transcript_status(self.svc, self.transcript_id)

    # ------------------------------------------------------------ control channel out

    def reply(self, body: BaseModel) -> None:
        """To this client only, in order with the transcript's messages."""
        if self._sub is not None:
            self._sub.put(envelope(body))  # type: ignore[arg-type]
        else:
            self._early.append(envelope(body))  # type: ignore[arg-type]

    def on_control_open(self, channel: Any) -> None:
        if self._sub is not None or self.closing:
            return
        self._sub = self.svc.hub.subscribe(self.transcript_id)
        for msg in self._early:
            self._sub.put(msg)
        self._early.clear()
        self.reply(self.status())
        self._forward_task = asyncio.create_task(self._forward(self._sub, channel), name=f"webrtc-forward-{self.id}")
        channel.on("close", self._unsubscribe)

    def _unsubscribe(self) -> None:
        if self._sub is not None:
            self.svc.hub.unsubscribe(self._sub)
        if self._forward_task is not None:
            self._forward_task.cancel()

    async def _forward(self, sub: Subscriber, channel: Any) -> None:
        await sub  # the broker's read position: messages other nodes publish to this transcript come too
        drained = asyncio.Event()
        channel.bufferedAmountLowThreshold = CHANNEL_HIGH_WATER // 4
        channel.on("bufferedamountlow", drained.set)
        while True:
            msg = await sub.queue.get()
            if msg is None:  # cut off for being too slow, or the transcript went away
                return
            if channel.bufferedAmount > CHANNEL_HIGH_WATER:  # a slow reader: let the hub queue fill instead
                drained.clear()
                await drained.wait()
            if not self.send_text(json.dumps(msg, separators=(",", ":"))):
                return

    # ------------------------------------------------------------ end

    async def end(self, reason: str, flush_within: float = 2.0) -> None:
        """Close from the server side: finish the stream first, so the client still hears its finals
        and ``completed`` on the channel, then close the connection."""
        self._hold = True
        pub = self.publisher
        if pub is not None and not pub.finished and not self.closing:
            try:
                await self._finish_publisher(pub)
            except Exception:
                log.exception("peer %s: finishing the stream failed", self.id)
            for _ in range(int(flush_within / 0.05)):  # let the forwarder hand the last messages over
                queued = self._sub is not None and not self._sub.queue.empty()
                if not queued and (self.channel is None or self.channel.bufferedAmount == 0):
                    break
                await asyncio.sleep(0.05)
        await self.close(reason)

    async def on_closed(self, reason: str) -> None:
        self._inbox.put_nowait(None)  # actions already received (a last "stop") still run
        try:
            await asyncio.wait_for(asyncio.shield(self._control_task), FINISH_TIMEOUT_S)
        except TimeoutError:
            log.error("peer %s: control actions did not finish; cancelling them", self.id)
            self._control_task.cancel()
        pub = self.publisher
        if pub is not None and not pub.finished:
            await self._finish_publisher(pub)  # a vanished publisher still gets its finals stored
        self._unsubscribe()
        for task in (self._forward_task, self._control_task):
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
        self.registry.discard(self)


def _webrtc_params(params: StartParams | None) -> StartParams:
    """Start params for a WebRTC stream: the codec describes the audio, the client the rest."""
    p = params or StartParams()
    if p.split_channels:
        raise ProtocolError(ErrorCode.INVALID_PARAMS, "split_channels needs the channels themselves: stream them over"
                            " the WebSocket (WebRTC audio arrives mixed to one channel)")
    return StartParams(format="pcm_s16le", sample_rate=SAMPLE_RATE, channels=1, participant=p.participant,
                       language=p.language)


class WebRtcRegistry:
    """Every live peer connection of the app (``app.state.webrtc``), so shutdown can close them."""

    def __init__(self, services: SessionParts) -> None:
        self.services = services
        self.ice = IceConfig.from_settings(services.settings.ice_servers, services.settings.ice_hosts)
        self.sessions: dict[str, WebRtcSession] = {}
        # Every session id starts with this node's tag: an answer that reaches another node (a load balancer that
        # does not route by transcript id) is told so instead of "not found".
        self.tag = hashlib.sha256(services.node.encode()).hexdigest()[:8]

    def holder(self, session_id: str) -> str | None:
        """The tag of the node that made a session id (None: not a session id of any node)."""
        tag, dot, _ = session_id.partition(".")
        return tag if dot and len(tag) == 8 else None

    def __len__(self) -> int:
        return len(self.sessions)

    def add(self, session: WebRtcSession) -> None:
        self.sessions[session.id] = session

    def discard(self, session: WebRtcSession) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    def get(self, session_id: str) -> WebRtcSession | None:
        return self.sessions.get(session_id)

    def pending_callers(self) -> list[Caller]:
        """Who offered the sessions not connected yet (still negotiating, or waiting for an answer)."""
        return [s.caller for s in self.sessions.values() if s.connection_state != "connected" and not s.closing]

    async def close_all(self) -> None:
        sessions = list(self.sessions.values())
        await asyncio.gather(*(s.end("server shutting down") for s in sessions), return_exceptions=True)
