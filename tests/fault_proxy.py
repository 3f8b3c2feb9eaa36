"""A TCP proxy that can cut the link it carries, for fault tests: a node reaches Redis, PostgreSQL or the S3
server through it, and a test cuts that one node off while every other node stays connected.

A cut is a black hole, as a failed switch or a partition is, not a refused connection: bytes on the open
connections stop going either way, and new connections are accepted and never answered, so the node learns of
it from its own timeouts. When the link comes back the connections that lived through the cut are reset (their
state is lost, as after a real partition) and new ones go through again.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FaultProxy:
    """``127.0.0.1:<port>`` -> ``host:port``, served on an event loop of its own in a thread."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._cut = False
        self._held: set[asyncio.StreamWriter] = set()  # connections that saw a cut: reset when it ends
        self._open: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fault-proxy-{self.port}", daemon=True)

    def url(self, scheme: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._begin_cut)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(self._end_cut)

    def retarget(self, host: str, port: int) -> None:
        """New connections go to ``host:port`` from now on, as when a failover moves a service's address to its
        new primary; the open ones are reset, as the old primary's are when it dies."""
        def move() -> None:
            self.target = (host, port)
            for writer in list(self._open):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(move)

    @contextmanager
    def cut_off(self) -> Iterator[None]:
        self.cut()
        try:
            yield
        finally:
            self.restore()

    # ------------------------------------------------------------ the proxy's own thread

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._restored = asyncio.Event()
        self._restored.set()
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for writer in list(self._open):
                writer.transport.abort()
            self._loop.close()

    def _begin_cut(self) -> None:
        self._cut = True
        self._restored.clear()
        self._held |= self._open

    def _end_cut(self) -> None:
        self._cut = False
        self._restored.set()
        for writer in list(self._held):
            writer.transport.abort()
        self._held.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._open.add(client_writer)
        if self._cut:  # accepted, never answered: the client waits on its own timeout, then the reset
            self._held.add(client_writer)
            await self._restored.wait()
            self._open.discard(client_writer)
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            self._open.discard(client_writer)
            return
        self._open.add(server_writer)
        try:
            await asyncio.gather(self._pipe(client_reader, server_writer, client_writer),
                                 self._pipe(server_reader, client_writer, client_writer))
        finally:
            for writer in (client_writer, server_writer):
                writer.transport.abort()
                self._open.discard(writer)
                self._held.discard(writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    client: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self._cut or client in self._held:
                    continue  # into the black hole
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
