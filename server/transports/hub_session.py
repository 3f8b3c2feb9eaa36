"""What every foreign-protocol session (OpenAI Realtime, Deepgram live) shares: one socket, one publisher started
by the first audio, and one hub subscription whose queue carries everything the client is sent.

Replies, the transcript's messages and the session's close all go through that one queue, so they reach the client
in the order they happened; the send loop turns each into the protocol's own messages (:meth:`HubSession.outgoing`)
and ends the socket with the close vocabulary of :mod:`protocol.close`. A subclass is the protocol: how client
messages drive the publisher, and how hub messages read on its wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from protocol import ProtocolError, StartParams
from server.http.websocket import send_within

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from server.pipeline.hub import Subscriber
    from server.pipeline.publisher import Publisher
    from server.transports.parts import SessionParts

Out = TypeVar("Out")
REPLY = "session.reply"  # a message for this client, in order with everything else it receives
PUBLISHER = "session.publisher"  # a publisher starts: the finals that follow are its own
CLOSE = "session.close"  # the session ends: the socket closes after what was queued before


class HubSession(Generic[Out]):
    """One connection of a foreign protocol (see the module's note); ``Out`` is its wire message type."""

    client: str = "foreign"  # the protocol, as logs name its client

    def __init__(self, ws: WebSocket, svc: SessionParts, transcript_id: str) -> None:
        self.ws = ws
        self.svc = svc
        self.transcript_id = transcript_id
        self.publisher: Publisher | None = None
        self.sub: Subscriber = svc.hub.subscribe(transcript_id)  # before any audio: no partial is missed
        self.max_frame = svc.settings.max_frame_kb * 1024
        self.released = False  # all the audio is in (the client said so, or left): none of it is paced

    # ------------------------------------------------------------ lifecycle

    async def serve(self, inbound: Callable[[asyncio.Task], Awaitable[None]]) -> None:
        """Run ``inbound`` (the client's messages, in order) beside the send loop; however it ends, the stream's
        finals are stored, and a transcript that never streamed is not left behind."""
        sender = asyncio.create_task(self.send_loop())
        try:
            await inbound(sender)
        finally:
            if self.publisher is not None:
                await self.publisher.finish()  # a vanished client still gets its finals stored
            self.svc.hub.unsubscribe(self.sub)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            if self.publisher is None:
                await self.svc.live.discard_unstreamed(self.transcript_id)  # no audio: nothing was recorded

    def reply(self, message: Out) -> None:
        """Send to this client, in order with the transcript's messages."""
        self.sub.put({"type": REPLY, "message": message})

    def release(self) -> None:
        """No more pacing: the client said its audio is all in, or left (the frames read are taken in at once)."""
        self.released = True
        if self.publisher is not None:
            self.publisher.pacer.release()

    async def start_publisher(self, params: StartParams, flush_wait_s: float,
                              refused: Callable[[ProtocolError], Exception]) -> Publisher | None:
        """The running publisher, started by the first audio (or after the last one ended for idleness: its
        finals first). None once the disk is full (the error went out once; audio still coming is dropped).
        A start the server refuses raises ``refused(exc)``, the protocol's way to close the session."""
        pub = self.publisher
        if pub is not None and not pub.finished:
            return pub
        if pub is not None and pub.storage_error is not None:
            return None
        if pub is not None:
            await self.svc.live.until_left(self.transcript_id, pub, flush_wait_s)
        self.sub.put({"type": PUBLISHER})
        try:
            self.publisher = await self.svc.live.get(self.transcript_id).add_publisher(params)
        except ProtocolError as exc:
            raise refused(exc) from None
        if self.released:
            self.publisher.pacer.release()
        return self.publisher

    # ------------------------------------------------------------ outbound

    async def send_loop(self) -> None:
        await self.sub  # the broker's read position: messages other nodes publish to this transcript come too
        while True:
            msg = await self.sub.queue.get()
            if msg is None:  # cut off for being too slow, or the transcript went away
                await self.ws.close(code=self.sub.close_code, reason="subscriber closed")
                return
            if msg.get("type") == CLOSE and not self.defer_close(msg):
                await self.ws.close(code=msg["code"], reason=msg["reason"])
                return
            for out in self.outgoing(msg):
                if not await self.send(out):
                    return
            if await self.finished_sending():
                return

    def close_after_queued(self, code: int, reason: str, **extra: Any) -> None:
        """Close the socket with ``code`` once what was queued before has gone out."""
        self.sub.put({"type": CLOSE, "code": code, "reason": reason[:120], **extra})

    async def send(self, message: Out) -> bool:
        return await send_within(self.ws, self.wire(message), self.svc.settings.send_timeout,
                                 f"the {self.client} client of {self.transcript_id}")

    # ------------------------------------------------------------ the protocol's part

    def wire(self, message: Out) -> str:
        """``message`` as its text frame."""
        raise NotImplementedError

    def outgoing(self, msg: dict[str, Any]) -> list[Out]:
        """What a queued message (a reply, a publisher's start, a hub message) is on this protocol's wire."""
        raise NotImplementedError

    def defer_close(self, msg: dict[str, Any]) -> bool:
        """Whether a queued close waits for something still to come (see :meth:`finished_sending`)."""
        return False

    async def finished_sending(self) -> bool:
        """After each queued message: whether the session has sent its last message and closed its socket."""
        return False
