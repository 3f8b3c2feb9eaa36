"""The inbound side of a Deepgram live session (server.transports.deepgram): the socket's reader and the worker
that hands its messages to the session in order (:mod:`server.http.ws_inbound`).

Why a reader and a worker: a binary frame is held to real time, and an Ogg/WebM frame of ``VOXLANE_MAX_FRAME_KB``
holds minutes of audio. Paced in the loop that read the socket, it hid everything the client sent after it for
as long: its ``KeepAlive``, its ``CloseStream``, and its leaving (its stream outlived it by minutes). The reader
now sees each message as it comes; the worker handles them in order.

What the reader acts on at once: a frame over ``VOXLANE_MAX_FRAME_KB`` is dropped as it is read (answered in
order), and a ``CloseStream`` (or an empty binary message) says the client has sent all its audio: what it sent
before is taken in unpaced, as when it leaves (``drains``), so its finals and ``Metadata`` come without waiting
out the audio's real time. What the read-ahead may hold is bounded (:func:`~server.http.ws_inbound.frame_queue`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from protocol import ProtocolError
from protocol.close import CLOSE_NORMAL, CLOSE_POLICY
from protocol.deepgram import DgError, ParamError, parse_control
from server.http.ws_guard import InboundGuard
from server.http.ws_inbound import GuardedInbound, frame_queue

if TYPE_CHECKING:
    from pydantic import BaseModel
    from starlette.websockets import WebSocket

    from server.settings import Settings

FLUSH_WAIT_S = 60.0
"""Longest a Finalize or CloseStream waits for its finals (a session flushes within 60 s)."""
CLOSE_STREAM: dict[str, Any] = {"type": "CloseStream"}

Event = bytes | dict[str, Any] | ParamError
"""What the reader queues: a frame, a control message, or a message that is neither (answered in order)."""


@dataclass(frozen=True)
class Closing:
    """How a session ends: ``error`` sent, then the socket closed with ``code``; with a ``target`` (a CloseStream),
    once that many finals and then ``Metadata`` are out."""

    code: int
    error: DgError | None = None
    target: int | None = None


class CloseWith(Exception):
    """Raised by the session to end it: the error is sent, then the socket closes with ``code``."""

    def __init__(self, code: int, error: DgError) -> None:
        super().__init__(error.description)
        self.code = code
        self.error = error


def protocol_refusal(exc: ProtocolError) -> DgError:
    retry = exc.details.get("retry_after_s")
    return DgError(variant=exc.code.value, description=exc.message + (
        f" (retry after {retry} s)" if retry is not None else ""))


class Sink(Protocol):
    """What the inbound side hands its messages to: the session (server.transports.deepgram)."""

    ws: WebSocket

    @property
    def publisher(self) -> object | None: ...  # its stream, once the first audio opened it

    async def audio(self, data: bytes) -> None: ...

    async def control(self, message: dict[str, Any]) -> Closing | None: ...

    def reply(self, message: BaseModel) -> None: ...

    def close(self, closing: Closing) -> None: ...

    def release(self) -> None: ...


class Inbound(GuardedInbound[Event, Closing]):
    """The reader and the worker of one Deepgram session."""

    errors = (ParamError, ProtocolError)
    drains = True  # a client that leaves without CloseStream still has every frame it sent transcribed and stored

    def __init__(self, session: Sink, settings: Settings) -> None:
        self.session = session
        self.max_frame = settings.max_frame_kb * 1024
        super().__init__(session.ws, InboundGuard(settings, idle_timeout=settings.session_idle_timeout),
                         settings.send_timeout, frame_queue(self.max_frame))

    async def parse(self, message: dict) -> Event:
        data = message.get("bytes")
        if data is not None:
            if not data:
                self.session.release()
                return CLOSE_STREAM
            if len(data) > self.max_frame:
                return ParamError(f"a binary message of {len(data)} bytes is over this server's limit of"
                                  f" {self.max_frame} bytes: it was dropped (send smaller chunks)")
            self.guard.idle.touch()
            return data
        try:
            control = parse_control(message.get("text") or "")  # at most 16 KiB, its depth checked first
        except ParamError as exc:
            return exc
        if control["type"] == "CloseStream":
            self.session.release()  # all the audio is in: nobody waits on real time any more
        elif control["type"] == "KeepAlive" and self.session.publisher is not None:
            # as Deepgram keeps a stream open on KeepAlive: a voice agent's user who is muted, or listening to
            # the agent, sends no audio for minutes. A session that never sent audio still idles out.
            self.guard.idle.touch()
        return control

    async def handle(self, event: Event) -> Closing | None:
        if isinstance(event, ParamError):
            raise event
        try:
            if isinstance(event, bytes):
                await self.session.audio(event)
                self.guard.idle.touch()
                return None
            return await self.session.control(event)
        except CloseWith as close:
            return Closing(close.code, close.error)
        except ProtocolError as exc:  # undecodable audio, a full disk, ...
            if exc.recoverable:
                raise
            return Closing(CLOSE_POLICY, protocol_refusal(exc))

    def invalid(self, exc: Exception, handled: bool) -> bool:
        if isinstance(exc, ParamError):
            self.session.reply(DgError(variant="INVALID_MESSAGE", description=str(exc)))
            return True
        assert isinstance(exc, ProtocolError)
        self.session.reply(protocol_refusal(exc))
        return False  # the server's refusal, not the client's fault

    def struck(self) -> Closing:
        return Closing(CLOSE_POLICY, DgError(variant="TOO_MANY_ERRORS", description=self.guard.too_many_message()))

    def idled(self) -> Closing:
        return Closing(CLOSE_NORMAL, DgError(variant="SESSION_IDLE", description=(
            f"no audio for {self.guard.idle.timeout:g} s: the stream is closed (VOXLANE_SESSION_IDLE_TIMEOUT)")))

    def close(self, closing: Closing) -> None:
        self.session.close(closing)

    def release(self) -> None:
        self.session.release()

    def patience(self, closing: Closing) -> float:
        return FLUSH_WAIT_S if closing.target is not None else self.send_timeout
