"""The inbound side of a live WebSocket session (the native WebSocket, OpenAI Realtime, Deepgram's): a reader that
keeps reading the socket while a worker handles what was read, in order, each within the session's
:class:`~server.http.ws_guard.InboundGuard`.

Why a reader and a worker: audio is held to real time (the publisher's pacer), and a compressed frame or a long
append holds minutes of it; a control action may wait for finals. Done in the loop that reads the socket, either
stops it reading for as long, and then neither the keepalive's pongs nor the client's leaving are seen (uvicorn
reads nothing more while a message waits for the app). The reader goes on reading while the worker handles the
messages one after the other; it stops (TCP backpressure) only when the worker is ``queue_size`` messages
behind, or the session's byte budget is spent. When the client leaves, nobody is left to pace audio for and its
stream must end now: a protocol either drops what it had not handled yet (the worker is stopped), or, where it
promises to keep all a client sent (``drains``), :meth:`~GuardedInbound.release` stops the pacing and the worker
handles the rest at once, within ``DRAIN_S``. The session's idle clock stands still while the worker has work:
a client that sent minutes of audio in one frame and waits is not idle while it is paced, and its audio is not
dropped by an idle close.

A protocol subclasses :class:`GuardedInbound` with how a message becomes an event (:meth:`parse`), what an event
does (:meth:`handle`), how an invalid message is answered (:meth:`invalid`) and how the session is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Generic, TypeVar

from server.http.websocket import receive_unless_ended

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from server.http.ws_guard import InboundGuard

E = TypeVar("E")  # an event: a parsed client message
C = TypeVar("C")  # how the session closes

QUEUE = 8
"""Messages read ahead of the worker before the socket is no longer read."""
QUEUE_BYTES = 2 * 1024 * 1024
"""Audio frames read ahead of the worker, in bytes (see :func:`frame_queue`)."""
DRAIN_S = 30.0
"""Longest the worker of a session that ``drains`` is let run on once its client left (the frames it had read
taken in unpaced, a stop flushing its finals); then it is stopped."""


def frame_queue(max_frame: int) -> int:
    """The queue of a session whose messages are audio frames of up to ``max_frame`` bytes: about
    :data:`QUEUE_BYTES` of them (at least two, at most :data:`QUEUE`), so that a session's read-ahead costs at
    most a few MiB whatever ``VOXLANE_MAX_FRAME_KB`` allows one frame."""
    return max(2, min(QUEUE, QUEUE_BYTES // max_frame))


class GuardedInbound(Generic[E, C]):
    """The reader and the worker of one session. ``errors``: what :meth:`parse` and :meth:`handle` raise for an
    invalid message (answered, and counted against the session by :meth:`invalid`)."""

    errors: tuple[type[Exception], ...] = ()
    drains = False

    def __init__(self, ws: WebSocket, guard: InboundGuard, send_timeout: float, queue_size: int = QUEUE) -> None:
        self.ws = ws
        self.guard = guard
        self.send_timeout = send_timeout
        self.queue: asyncio.Queue[E] = asyncio.Queue(queue_size)
        self._busy = False
        self._ending = False

    # ------------------------------------------------------------ the protocol's part

    async def parse(self, message: dict) -> E:
        """One received WebSocket message (``bytes`` or ``text``) as an event; may raise one of ``errors``."""
        raise NotImplementedError

    async def handle(self, event: E) -> C | None:
        """Acts on one event (the worker, in order); returns how the session closes when it ends it."""
        raise NotImplementedError

    def invalid(self, exc: Exception, handled: bool) -> bool:
        """Answers an invalid message (raised by :meth:`handle` where ``handled``, else by :meth:`parse`); True
        when it counts against the session (``VOXLANE_WS_MAX_BAD_MESSAGES``)."""
        raise NotImplementedError

    def struck(self) -> C:
        """How the session closes after too many invalid messages."""
        raise NotImplementedError

    def idled(self) -> C:
        """How the session closes when its idle clock ran out."""
        raise NotImplementedError

    def close(self, closing: C) -> None:
        """Queues the session's last words and the close (the sender sends them, then closes the socket)."""
        raise NotImplementedError

    def release(self) -> None:
        """(``drains``) The client left: audio is no longer held to real time."""

    def patience(self, closing: C) -> float:
        """Seconds the sender has to send the session's last words and close (a protocol whose closing waits
        for finals gives it longer)."""
        return self.send_timeout

    @property
    def working(self) -> bool:
        """The worker has an event in hand or waiting."""
        return self._busy or not self.queue.empty()

    # ------------------------------------------------------------ the loops

    async def run(self, sender: asyncio.Task) -> None:
        """Until the client leaves, the sender ends, or the session is closed; the worker is gone on return
        (what it had not handled was dropped, or, where the session ``drains`` and its client left, handled)."""
        worker = asyncio.create_task(self._work())
        closing = None
        try:
            closing = await self._read(sender, worker)
            if closing is None and worker.done() and not worker.cancelled():
                closing = worker.result()
            if closing is not None:
                self.close(closing)
                await asyncio.wait({sender}, timeout=self.patience(closing))
        finally:
            await self._stop(worker, drain=self.drains and closing is None)

    async def _stop(self, worker: asyncio.Task, drain: bool) -> None:
        """The worker ends: at once, or (``drain``) once it has handled what was read, unpaced."""
        self._ending = True
        if drain and not worker.done():
            self.release()
            if self.working:
                await asyncio.wait({worker}, timeout=DRAIN_S)
        worker.cancel()
        with contextlib.suppress(BaseException):
            await worker

    async def _read(self, sender: asyncio.Task, worker: asyncio.Task) -> C | None:
        guard = self.guard
        while True:
            try:
                message = await receive_unless_ended(self.ws, sender, worker, within=guard.idle.remaining())
            except TimeoutError:
                if self.working:  # audio being paced, finals awaited: the session is not idle meanwhile
                    guard.idle.touch()
                    continue
                if guard.idle.remaining():  # the worker touched it since the wait began
                    continue
                return self.idled()
            if message is None:
                return None
            await guard.budget.spend(guard.size(message))
            try:
                event = await self.parse(message)
            except self.errors as exc:
                if self.invalid(exc, handled=False) and guard.strikes.strike():
                    return self.struck()
                continue
            if not await self._put(event, sender, worker):
                return None

    async def _put(self, event: E, *watch: asyncio.Task) -> bool:
        """Queues ``event``; False if the sender or the worker ended first (a full queue is waited on: a client
        gone meanwhile is seen when the sender fails)."""
        if not self.queue.full():
            self.queue.put_nowait(event)
            return True
        put = asyncio.create_task(self.queue.put(event))
        done, _ = await asyncio.wait({put, *watch}, return_when=asyncio.FIRST_COMPLETED)
        if put in done:
            return True
        put.cancel()
        with contextlib.suppress(BaseException):
            await put
        return False

    async def _work(self) -> C | None:
        """Events in the order they came; returns how the session ends when an event ends it."""
        while not (self._ending and self.queue.empty()):
            event = await self.queue.get()
            self._busy = True
            try:
                closing = await self.handle(event)
            except self.errors as exc:
                if self.invalid(exc, handled=True) and self.guard.strikes.strike():
                    return self.struck()
                continue
            finally:
                self._busy = False
            if closing is not None:
                return closing
        return None
