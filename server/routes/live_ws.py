"""``WS /v1/transcripts_websocket/{id}``: subscribe to a transcript, and optionally publish audio to it.

Every client is a subscriber. A client that sends ``start`` and then binary
frames is also a publisher. Control errors answer the offending client only and
leave the connection (and everything already received) intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from pydantic import BaseModel
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from protocol import ErrorCode, Ping, ProtocolError, StartParams, Status, encode, envelope
from server.hub import Subscriber, segment_message
from server.live import Publisher, Services, apply_control, transcript_status
from server.routes.common import services
from server.speakers import named_segments

log = logging.getLogger("voxlane.ws")
CLOSE_NOT_FOUND = 4404


class LiveConnection:
    def __init__(self, ws: WebSocket, svc: Services, transcript_id: str) -> None:
        self.ws = ws
        self.svc = svc
        self.transcript_id = transcript_id
        self.sub: Subscriber | None = None
        self.publisher: Publisher | None = None

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
        seen: set[str] = set()
        transcript = await self.svc.store.get_transcript(self.transcript_id) or {"id": self.transcript_id}
        for row in await named_segments(self.svc.store, transcript):
            seen.add(row["id"])
            await self.ws.send_text(encode(segment_message(row)))
        await self.ws.send_text(encode(self.status()))
        while True:
            msg = await self.sub.queue.get()
            if msg is None:  # cut off for being too slow, or the transcript went away
                await self.ws.close(code=1013 if self.sub.overflowed else 1000, reason="subscriber closed")
                return
            data = msg["data"]
            if msg["type"] == "transcription" and data.get("is_final") and data["segment_id"] in seen:
                continue
            await self.ws.send_text(json.dumps(msg, separators=(",", ":")))

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
            receive = asyncio.create_task(self.ws.receive())
            done, _ = await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:  # the sender ended (closed socket, slow client)
                receive.cancel()
                with contextlib.suppress(BaseException):
                    await receive
                return
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                return
            try:
                if message.get("bytes") is not None:
                    self._audio(message["bytes"])
                elif message.get("text") is not None:
                    await self._control(message["text"])
            except ProtocolError as exc:
                self.reply(exc.to_message())

    def _audio(self, data: bytes) -> None:
        if self.publisher is None:
            raise ProtocolError(ErrorCode.NOT_STARTED, "send {\"action\": \"start\"} before binary audio frames")
        if self.publisher.finished:
            raise ProtocolError(ErrorCode.TRANSCRIPT_CLOSED, "this stream was stopped; send 'start' to begin again")
        self.publisher.feed_bytes(data)

    async def _control(self, text: str) -> None:
        await apply_control(self, text)

    # ------------------------------------------------------------ ControlChannel

    declares_format = True

    async def start_publisher(self, params: StartParams | None) -> None:
        self.publisher = await self.svc.live.get(self.transcript_id).add_publisher(params or StartParams())

    async def stop_publisher(self, publisher: Publisher) -> None:
        await publisher.finish()

    def status(self) -> Status:
        return transcript_status(self.svc, self.transcript_id)


async def transcript_websocket(ws: WebSocket) -> None:
    svc = services(ws)
    transcript_id = ws.path_params["transcript_id"]
    await ws.accept()
    if await svc.store.get_transcript(transcript_id) is None:
        await ws.close(code=CLOSE_NOT_FOUND, reason="transcript not found")
        return
    try:
        await LiveConnection(ws, svc, transcript_id).run()
    except WebSocketDisconnect:
        pass


routes = [WebSocketRoute("/v1/transcripts_websocket/{transcript_id}", transcript_websocket)]
