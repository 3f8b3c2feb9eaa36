"""WebSocket plumbing shared by the native live route and the Realtime sessions."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket


async def receive_unless_ended(ws: WebSocket, sender: asyncio.Task) -> dict | None:
    """The next WebSocket message, or None once the client disconnects or the sender task ends (a closed socket,
    a slow client): the receive loops of the native and the Realtime routes stop on either."""
    receive = asyncio.create_task(ws.receive())
    done, _ = await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
    if receive not in done:
        receive.cancel()
        with contextlib.suppress(BaseException):
            await receive
        return None
    message = receive.result()
    return None if message["type"] == "websocket.disconnect" else message
