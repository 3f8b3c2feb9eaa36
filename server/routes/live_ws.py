"""``WS /v1/transcripts_websocket/{id}``: subscribe to a transcript, and optionally publish audio to it.

Every client is a subscriber. A client that sends ``start`` and then binary
frames is also a publisher. Control errors answer the offending client only and
leave the connection (and everything already received) intact.

Publishing (``start``, audio frames, ``participant_event``, ``pause``, ``stop``) needs the
``transcripts:write`` scope; a read-only subscriber gets INSUFFICIENT_SCOPE (once for a run of
frames) and keeps listening. A binary frame over ``VOXLANE_MAX_FRAME_KB`` (a text message over
64 KiB) is dropped with MESSAGE_TOO_LARGE. Frames are decoded and run through the VAD off the event
loop, in order, and the socket is not read while a stream's audio is more than
``VOXLANE_MAX_AUDIO_LEAD_SECONDS`` ahead of the wall clock since its ``start`` (TCP backpressure).
"""

from __future__ import annotations

import asyncio
import json
import logging

from pydantic import BaseModel
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from protocol import ErrorCode, Ping, ProtocolError, StartParams, Status, encode, envelope
from server.features.speakers import named_segments
from server.http.auth import can_publish, principal
from server.http.visibility import find_visible_transcript
from server.http.websocket import receive_unless_ended
from server.pipeline.control import apply_control, insufficient_scope, pin_participant
from server.pipeline.convert import stored_message
from server.pipeline.hub import Subscriber
from server.pipeline.publisher import Publisher
from server.pipeline.transcripts import transcript_status
from server.routes.common import services
from server.services import Services
from server.storage.outage import database_unavailable

log = logging.getLogger("voxlane.ws")
CLOSE_NOT_FOUND = 4404
CLOSE_TRY_AGAIN = 1013
MAX_CONTROL_CHARS = 64 * 1024
"""The largest text (control JSON) message; binary audio frames have their own cap (VOXLANE_MAX_FRAME_KB)."""


def too_large(what: str, size: int, limit: int) -> ProtocolError:
    """Refuses one message; the connection, and the stream with everything received before it, go on."""
    return ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, f"{what} of {size} bytes is over this server's limit of"
                         f" {limit} bytes: it was dropped (send smaller frames)", {"size": size, "max_size": limit})


class LiveConnection:
    def __init__(self, ws: WebSocket, svc: Services, transcript_id: str) -> None:
        self.ws = ws
        self.svc = svc
        self.transcript_id = transcript_id
        self.sub: Subscriber | None = None
        self.publisher: Publisher | None = None
        self.may_publish = can_publish(ws)  # a read-only token subscribes; it cannot send audio or control
        grant = principal(ws).meeting
        self.participant = grant.participant if grant is not None else None  # a meeting token speaks as its own
        self.max_frame = svc.settings.max_frame_kb * 1024
        self._refused_audio = False  # an error was sent for this run of binary frames: one, not one per frame

    async def run(self) -> None:
        self.sub = self.svc.hub.subscribe(self.transcript_id)  # before history: nothing falls in between
        tasks = [asyncio.create_task(self._send_loop())]
        if self.svc.settings.ping_interval > 0:
            tasks.append(asyncio.create_task(self._ping_loop(self.svc.settings.ping_interval)))
        try:
            await self._receive_loop(tasks[0])
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
        if not await self._send(encode(transcript_status(self.svc, self.transcript_id, self.sub))):
            return
        while True:
            msg = await self.sub.queue.get()
            if msg is None:  # cut off for being too slow, or the transcript went away
                await self.ws.close(code=1013 if self.sub.overflowed else 1000, reason="subscriber closed")
                return
            data = msg["data"]
            if msg["type"] == "transcription" and data.get("is_final") and data["segment_id"] in seen:
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

    async def _receive_loop(self, sender: asyncio.Task) -> None:
        while True:
            message = await receive_unless_ended(self.ws, sender)
            if message is None:
                return
            try:
                if message.get("bytes") is not None:
                    await self._audio(message["bytes"])
                elif message.get("text") is not None:
                    self._refused_audio = False
                    await self._control(message["text"])
            except ProtocolError as exc:
                self.reply(exc.to_message())

    async def _audio(self, data: bytes) -> None:
        """One binary frame: decoded and taken in off the event loop; this returns (and the socket is read
        again) once it is taken in and the stream is within its lead on real time."""
        refusal = self._refuse_audio()
        if refusal is not None:
            if not self._refused_audio:  # one error for a run of refused frames (a bot that streams before its
                self._refused_audio = True  # start succeeded would get one per frame), until the next text
                raise refusal
            return
        if len(data) > self.max_frame:
            raise too_large("a binary frame", len(data), self.max_frame)
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

    async def _control(self, text: str) -> None:
        if len(text) > MAX_CONTROL_CHARS:
            raise too_large("a text message", len(text.encode()), MAX_CONTROL_CHARS)
        await apply_control(self, text)

    # ------------------------------------------------------------ ControlChannel

    declares_format = True

    async def start_publisher(self, params: StartParams | None) -> None:
        live = self.svc.live.get(self.transcript_id)
        try:
            self.publisher = await live.add_publisher(pin_participant(params, self.participant) or StartParams())
        finally:
            self.svc.live.drop(live)  # a refused start leaves nothing behind (drop keeps a transcript that streams)

    async def stop_publisher(self, publisher: Publisher) -> None:
        await publisher.finish()

    def status(self) -> Status:
        return transcript_status(self.svc, self.transcript_id)


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
