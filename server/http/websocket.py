"""WebSocket plumbing shared by the native live route and the Realtime sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket


async def receive_unless_ended(ws: WebSocket, *watch: asyncio.Task, within: float | None = None) -> dict | None:
    """The next WebSocket message, or None once the client disconnects or one of the ``watch`` tasks ends (the
    sender: a closed socket, a slow client; a session's worker: it closed the session): the receive loops of the
    live routes stop on either. Raises TimeoutError when nothing came ``within`` seconds."""
    receive = asyncio.create_task(ws.receive())
    done, _ = await asyncio.wait({receive, *watch}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    if receive not in done:
        receive.cancel()
        with contextlib.suppress(BaseException):
            await receive
        if not done:
            raise TimeoutError
        return None
    message = receive.result()
    return None if message["type"] == "websocket.disconnect" else message


async def send_within(ws: WebSocket, text: str, seconds: float, client: str) -> bool:
    """Send ``text``; False when the client took nothing for ``seconds`` (a stalled reader holds no server
    memory beyond its queue: the caller then disconnects it). ``client`` names it in the log."""
    try:
        await asyncio.wait_for(ws.send_text(text), seconds)
    except TimeoutError:
        logging.getLogger("voxlane.ws").warning("%s took no message for %.0f s; disconnecting it", client, seconds)
        return False
    return True
