"""HTTP read deadlines uvicorn lacks: a request's headers must arrive in time, and its body must keep coming.

uvicorn's h11 protocol times out only idle keep-alive connections; a client that sends a request head one
byte at a time (slowloris), or announces a body and stops sending it, holds a connection (and a file
descriptor, and a request task) for as long as it likes. This protocol class adds the two deadlines; h11
itself caps the head's size (``h11_max_incomplete_event_size``).
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("voxlane.http")


def guarded_h11(header_timeout: float, body_timeout: float) -> type[H11Protocol]:
    """The h11 protocol with these deadlines, as a class for ``uvicorn.run(http=...)``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})


class GuardedH11Protocol(H11Protocol):
    header_timeout = 15.0
    body_timeout = 60.0

    _read_timer: asyncio.TimerHandle | None = None
    _read_what = ""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, "request headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._rearm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle between requests: uvicorn's keep-alive timeout applies

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _rearm(self) -> None:
        """After each read: a started head keeps its deadline; a body in progress gets a fresh one."""
        if self.transport.get_protocol() is not self or self.transport.is_closing():
            self._disarm()  # upgraded to a WebSocket (its own ping timeout applies) or closing
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._arm(self.body_timeout, "request body", restart=True)
        elif state is h11.IDLE:
            if self.conn.trailing_data[0]:  # part of a head: it must be complete within the deadline
                self._arm(self.header_timeout, "request headers")
        else:  # the whole request is in: the app answers in its own time
            self._disarm()

    def _arm(self, seconds: float, what: str, restart: bool = False) -> None:
        if self._read_timer is not None:
            if not restart and self._read_what == what:
                return
            self._read_timer.cancel()
        self._read_timer = self.loop.call_later(seconds, self._expired, what)
        self._read_what = what

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _expired(self, what: str) -> None:
        self._read_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        if what == "request body" and self.flow.read_paused:  # we stopped reading, not the client
            self._arm(self.body_timeout, what)
            return
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "client"
        log.info("%s: %s not received in time; closing the connection", peer, what)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's receive() sees http.disconnect
            self.cycle.message_event.set()
        self.transport.close()
