"""``WS /v1/transcripts_websocket/{id}``: subscribe to a transcript, and optionally publish audio to it.

Every client is a subscriber. A client that sends ``start`` and then binary
frames is also a publisher. Control errors answer the offending client only and
leave the connection (and everything already received) intact.

Publishing (``start``, audio frames, ``participant_event``, ``pause``, ``stop``) needs the
``transcripts:write`` scope; a read-only subscriber gets INSUFFICIENT_SCOPE (once for a run of
frames) and keeps listening. A binary frame over ``VOXLANE_MAX_FRAME_KB`` (a text message over
64 KiB) is dropped with MESSAGE_TOO_LARGE; ``VOXLANE_WS_MAX_BAD_MESSAGES`` errors within a minute close the
connection (TOO_MANY_ERRORS, 1008). Frames are decoded and run through the VAD off the event loop, in order,
by the connection's inbound worker (server.http.ws_inbound): the socket is still read while a frame's audio is
held to ``VOXLANE_MAX_AUDIO_LEAD_SECONDS`` ahead of the wall clock since its ``start``, until a few frames wait
(TCP backpressure). A client that leaves has every frame it sent taken in at once, unpaced.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from pydantic import BaseModel
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from protocol import ErrorCode, Ping, ProtocolError, StartParams, Status, encode, envelope, parse_client_message
from protocol.close import CLOSE_NOT_FOUND, CLOSE_POLICY, CLOSE_TRY_AGAIN
from server.features.speakers import named_segments
from server.http.auth import can_publish, principal
from server.http.visibility import find_visible_transcript
from server.http.ws_guard import InboundGuard
from server.http.ws_inbound import GuardedInbound, frame_queue
from server.pipeline.control import apply_control, insufficient_scope, pin_participant
from server.pipeline.convert import stored_message
from server.pipeline.hub import Subscriber
from server.pipeline.publisher import Publisher
from server.pipeline.transcripts import transcript_status
from server.routes.common import services
from server.routes.parts import NodeParts
from server.storage.outage import database_unavailable

log = logging.getLogger("voxlane.ws")
MAX_CONTROL_CHARS = 64 * 1024
"""The largest text (control JSON) message; binary audio frames have their own cap (VOXLANE_MAX_FRAME_KB)."""
PARSE_OFF_LOOP = 16 * 1024
"""A control message this long is parsed off the event loop (at most a millisecond of work, whatever its shape)."""
NOT_THE_CLIENTS_FAULT = frozenset({ErrorCode.OVERLOADED, ErrorCode.RATE_LIMITED, ErrorCode.STORAGE_FULL,
                                   ErrorCode.TRANSCRIPTION_FAILED, ErrorCode.INTERNAL_ERROR})
"""Errors that do not count against a session (``VOXLANE_WS_MAX_BAD_MESSAGES``): a client retrying a start
refused for load is not sending bad messages."""
_CLOSE = "voxlane.close"  # a queue entry of this connection's own: close the socket after what was queued before


@dataclass(frozen=True)
class Oversized:
    """A binary frame over ``VOXLANE_MAX_FRAME_KB``, dropped as it was read; the worker answers it in order."""

    size: int


def too_large(what: str, size: int, limit: int) -> ProtocolError:
    """Refuses one message; the connection, and the stream with everything received before it, go on."""
    return ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, f"{what} of {size} bytes is over this server's limit of"
                         f" {limit} bytes: it was dropped (send smaller frames)", {"size": size, "max_size": limit})


class LiveConnection:
    def __init__(self, ws: WebSocket, svc: NodeParts, transcript_id: str) -> None:
        self.ws = ws
        self.svc = svc
        self.transcript_id = transcript_id
        self.sub: Subscriber | None = None
        self.publisher: Publisher | None = None
        self.may_publish = can_publish(ws)  # a read-only token subscribes; it cannot send audio or control
        grant = principal(ws).meeting
        self.participant = grant.participant if grant is not None else None  # a meeting token speaks as its own
        self.max_frame = svc.settings.max_frame_kb * 1024
        self.released = False  # the client left: what it sent is taken in unpaced
        self._refused_audio = False  # an error was sent for this run of binary frames: one, not one per frame

    async def run(self) -> None:
        self.sub = self.svc.hub.subscribe(self.transcript_id)  # before history: nothing falls in between
        tasks = [asyncio.create_task(self._send_loop())]
        if self.svc.settings.ping_interval > 0:
            tasks.append(asyncio.create_task(self._ping_loop(self.svc.settings.ping_interval)))
        try:
            await _Inbound(self).run(tasks[0])
        finally:
            if self.publisher is not None:
                await self.publisher.finish()  # a vanished publisher still gets its finals stored
            self.svc.hub.unsubscribe(self.sub)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ outbound

    async def _send_loop(self) -> None:
        assert self.sub is not None
        await self.sub  # the broker has its read position (other nodes' messages) before the history is read
        seen: set[str] = set()
        transcript = await self.svc.store.get_transcript(self.transcript_id) or {"id": self.transcript_id}
        for row in await named_segments(self.svc.store, transcript):
            seen.add(row["id"])
            if not await self._send(encode(stored_message(row))):
                return
        self.sub.finals.update(seen)  # and nothing more of them is queued
        if not await self._send(encode(transcript_status(self.svc, self.transcript_id, self.sub))):
            return
        while True:
            msg = await self.sub.queue.get()
            if msg is None:  # cut off for being too slow, or the transcript went away
                await self.ws.close(code=self.sub.close_code, reason="subscriber closed")
                return
            if msg["type"] == _CLOSE:
                await self.ws.close(code=msg["code"], reason=msg["reason"])
                return
            # a segment the history sent final is over: neither its final again nor a partial of it that was
            # queued while the history was read (a late joiner would see the segment's words taken back)
            if msg["type"] == "transcription" and msg["data"]["segment_id"] in seen:
                continue
            if not await self._send(json.dumps(msg, separators=(",", ":"))):
                return

    async def _send(self, text: str) -> bool:
        """One message out; False when the peer took nothing for VOXLANE_SEND_TIMEOUT (it stopped reading and
        its socket is full): it is cut off, since a sender stuck here would never see its queue overflow."""
        try:
            await asyncio.wait_for(self.ws.send_text(text), self.svc.settings.send_timeout)
        except TimeoutError:
            log.warning("subscriber of %s took no message for %.0f s; disconnecting it", self.transcript_id,
                        self.svc.settings.send_timeout)
            return False
        return True

    async def _ping_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reply(Ping())

    def reply(self, body: BaseModel) -> None:
        """Send to this client only, in order with everything else it receives."""
        assert self.sub is not None
        self.sub.put(envelope(body))  # type: ignore[arg-type]

    # ------------------------------------------------------------ inbound

    async def _audio(self, data: bytes | Oversized) -> None:
        """One binary frame (the inbound worker): decoded and taken in off the event loop; this returns (and the
        next message is handled) once it is taken in and the stream is within its lead on real time."""
        refusal = self._refuse_audio()
        if refusal is not None:
            if not self._refused_audio:  # one error for a run of refused frames (a bot that streams before its
                self._refused_audio = True  # start succeeded would get one per frame), until the next text
                raise refusal
            return
        if isinstance(data, Oversized):
            raise too_large("a binary frame", data.size, self.max_frame)
        assert self.publisher is not None  # _refuse_audio answered NOT_STARTED otherwise
        if self.publisher.storage_error is not None:
            return  # the disk is full: STORAGE_FULL was sent once; frames still in flight are dropped
        await self.publisher.feed_bytes(data)

    def _refuse_audio(self) -> ProtocolError | None:
        """Why this connection takes no audio now, if it does not: the same answer holds for every frame of a run."""
        if not self.may_publish:
            return insufficient_scope("sending audio")
        if self.publisher is None:
            return ProtocolError(ErrorCode.NOT_STARTED, "send {\"action\": \"start\"} before binary audio frames;"
                                 " frames sent before a successful start are dropped")
        if self.publisher.finished and self.publisher.storage_error is None:
            return ProtocolError(ErrorCode.TRANSCRIPT_CLOSED, "this stream was stopped; send 'start' to begin again")
        return None

    # ------------------------------------------------------------ ControlChannel

    declares_format = True

    async def start_publisher(self, params: StartParams | None) -> None:
        live = self.svc.live.get(self.transcript_id)
        try:
            self.publisher = await live.add_publisher(pin_participant(params, self.participant) or StartParams(),
                                                      tell=self.reply)
            if self.released:
                self.publisher.pacer.release()
        finally:
            self.svc.live.drop(live)  # a refused start leaves nothing behind (drop keeps a transcript that streams)

    async def stop_publisher(self, publisher: Publisher) -> None:
        await publisher.finish()

    def status(self) -> Status:
        return transcript_status(self.svc, self.transcript_id)


Event = bytes | Oversized | BaseModel | ProtocolError
"""What the native reader queues: a frame, a frame dropped for its size, a control message, or a text that is
not one (answered in order with the rest)."""


class _Inbound(GuardedInbound[Event, ProtocolError]):
    """The native WebSocket's reader and worker (:mod:`server.http.ws_inbound`): frames and control messages
    are handled in order, and a frame's pacing never stops the socket being read."""

    errors = (ProtocolError,)
    drains = True  # a client that leaves without stop keeps every frame it sent

    def __init__(self, conn: LiveConnection) -> None:
        settings = conn.svc.settings
        super().__init__(conn.ws, InboundGuard(settings), settings.send_timeout, frame_queue(conn.max_frame))
        self.conn = conn

    async def parse(self, message: dict) -> Event:
        data = message.get("bytes")
        if data is not None:
            return Oversized(len(data)) if len(data) > self.conn.max_frame else data
        text = message.get("text") or ""
        try:
            if len(text) > MAX_CONTROL_CHARS:
                raise too_large("a text message", len(text.encode()), MAX_CONTROL_CHARS)
            if len(text) <= PARSE_OFF_LOOP:
                return parse_client_message(text)
            return await asyncio.to_thread(parse_client_message, text)
        except ProtocolError as exc:
            return exc

    async def handle(self, event: Event) -> None:
        conn = self.conn
        if isinstance(event, bytes | Oversized):
            await conn._audio(event)
            return
        conn._refused_audio = False  # a text message ends a run of refused frames
        if isinstance(event, ProtocolError):
            raise event
        await apply_control(conn, event)

    def invalid(self, exc: Exception, handled: bool) -> bool:
        assert isinstance(exc, ProtocolError)
        self.conn.reply(exc.to_message())
        return exc.code not in NOT_THE_CLIENTS_FAULT

    def struck(self) -> ProtocolError:
        return ProtocolError(ErrorCode.TOO_MANY_ERRORS, self.guard.too_many_message(),
                             {"limit": self.guard.strikes.limit}, recoverable=False)

    def close(self, closing: ProtocolError) -> None:
        self.conn.reply(closing.to_message())
        assert self.conn.sub is not None
        self.conn.sub.put({"type": _CLOSE, "code": CLOSE_POLICY, "reason": "too many invalid messages"})

    def release(self) -> None:
        self.conn.released = True
        if self.conn.publisher is not None:
            self.conn.publisher.pacer.release()


async def transcript_websocket(ws: WebSocket) -> None:
    svc = services(ws)
    transcript_id = ws.path_params["transcript_id"]
    await ws.accept()
    try:
        found = await find_visible_transcript(ws, transcript_id)
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        await ws.close(code=CLOSE_TRY_AGAIN, reason="the database is not reachable; try again shortly")
        return
    if found is None:
        await ws.close(code=CLOSE_NOT_FOUND, reason="transcript not found")
        return
    try:
        await LiveConnection(ws, svc, transcript_id).run()
    except WebSocketDisconnect:
        pass


routes = [WebSocketRoute("/v1/transcripts_websocket/{transcript_id}", transcript_websocket)]
