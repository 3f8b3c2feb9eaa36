"""The inbound side of a Realtime session (server.transports.realtime): reading the socket, parsing client
events without stalling the event loop, and handing them in order to the session's worker.

Why a reader and a worker (:mod:`server.http.ws_inbound`): an append is held to real time (the publisher's
pacer) and a commit waits for its finals, and neither may stop the socket being read.

Why not ``json.loads`` on a whole event: the C parser holds the GIL for the whole parse, so a thread does not help
the event loop, and 15 MiB of pathological JSON (a million keys) takes over a second. Only an append may be
large, and its bulk is one base64 string: it is cut out by position and the small rest is parsed as any event.
Every other event over :data:`MAX_CONTROL_CHARS` is refused unparsed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from typing import TYPE_CHECKING, Protocol

from protocol.close import CLOSE_POLICY
from protocol.realtime import MAX_AUDIO_B64, MAX_EVENT_CHARS, AudioAppend, ClientEvent, RealtimeError, ServerEvent
from protocol.realtime import parse_client_event as parse_small
from server.http.ws_inbound import QUEUE, GuardedInbound

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from server.http.ws_guard import InboundGuard

MAX_CONTROL_CHARS = 64 * 1024
"""The largest event other than an append (a session.update with a long prompt and 100 keywords is under 30 KiB),
as the native WebSocket's control messages."""
PARSE_OFF_LOOP = 16 * 1024
"""An event (or an append's rest) this big is parsed off the event loop: at most a millisecond of work, whatever
its shape, and the loop goes on serving others meanwhile."""
DECODE_SLICE = 256 * 1024
"""Base64 is decoded in slices this long (a multiple of 4) off the loop: the GIL changes hands between them."""
AUDIO_KEY_TRIES = 8
"""Occurrences of ``"audio"`` looked at for an append's key (a real append has one, an ``event_id`` may add one)."""
_AUDIO_KEY = re.compile(r'"audio"[ \t\r\n]{0,256}:[ \t\r\n]{0,256}"')
COMMIT_EMPTY_CODE = "input_audio_buffer_commit_empty"


class CloseWith(Exception):
    """Ends the session: the event is sent, then the socket closes with ``code``."""

    def __init__(self, code: int, event: ServerEvent, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.event = event
        self.reason = reason


def split_append(text: str) -> tuple[str, int, int] | None:
    """An append's rest with its audio emptied, and where its base64 lies in ``text``; None if ``text`` is not
    shaped as one (an ``"audio"`` key, among the first :data:`AUDIO_KEY_TRIES` occurrences of the word, whose
    string value holds no quote and no escape other than ``\\/``). The tries are bounded: a 15 MiB event of
    ``"audio":0`` pairs held the event loop for 0.6 s."""
    at = 0
    for _ in range(AUDIO_KEY_TRIES):
        at = text.find('"audio"', at)
        if at < 0:
            return None
        key = _AUDIO_KEY.match(text, at)
        if key is not None:
            start = key.end()
            end = text.find('"', start)
            return None if end < 0 else (text[:start] + text[end:], start, end)
        at += 1
    return None


async def parse_event(text: str) -> ClientEvent:
    """One client text message as an event; raises :class:`RealtimeError` saying what is wrong with it."""
    if len(text) <= PARSE_OFF_LOOP:
        return parse_small(text)
    if len(text) <= MAX_CONTROL_CHARS:
        return await asyncio.to_thread(parse_small, text)
    if len(text) > MAX_EVENT_CHARS:
        return parse_small(text)  # refused for its size before anything is read
    cut = split_append(text)
    if cut is None or len(cut[0]) > MAX_CONTROL_CHARS:
        raise RealtimeError("MESSAGE_TOO_LARGE", f"an event of {len(text)} characters that is not an"
                            f" input_audio_buffer.append: only an append may be over {MAX_CONTROL_CHARS} characters"
                            " (its base64 audio); it was dropped")
    rest, start, end = cut
    event = parse_small(rest) if len(rest) <= PARSE_OFF_LOOP else await asyncio.to_thread(parse_small, rest)
    if not isinstance(event, AudioAppend):
        raise RealtimeError("MESSAGE_TOO_LARGE", f"an event of {len(text)} characters of type {event.type!r}: only"
                            f" an input_audio_buffer.append may be over {MAX_CONTROL_CHARS} characters; it was"
                            " dropped", event_id=event.event_id)
    if end - start > MAX_AUDIO_B64:
        raise RealtimeError("INVALID_PARAMS", f"invalid input_audio_buffer.append: audio: String should have at most"
                            f" {MAX_AUDIO_B64} characters", param="audio", event_id=event.event_id)
    event.audio = text[start:end]
    return event


def _b64decode(data: str) -> bytes:
    """(thread) Decoded in slices, so that the event loop's thread gets the GIL between them."""
    if "\\" in data:
        data = data.replace("\\/", "/")  # JSON's optional escape of '/' (PHP's encoder writes it); any other: invalid
    if len(data) % 4:
        raise ValueError("incomplete base64")
    return b"".join(base64.b64decode(data[i:i + DECODE_SLICE], validate=True)
                    for i in range(0, len(data), DECODE_SLICE))


async def decode_audio(event: AudioAppend) -> bytes:
    """An append's audio; ``INVALID_PARAMS`` if it is not base64."""
    try:
        if len(event.audio) <= DECODE_SLICE:
            return _b64decode(event.audio)
        return await asyncio.to_thread(_b64decode, event.audio)
    except (binascii.Error, ValueError):
        raise RealtimeError("INVALID_PARAMS", "audio is not valid base64", param="audio",
                            event_id=event.event_id) from None


class Sink(Protocol):
    """What the inbound side hands its events to: the session's state machine (server.transports.realtime)."""

    ws: WebSocket

    async def handle(self, event: ClientEvent) -> None: ...

    def reply(self, event: ServerEvent) -> None: ...

    def close(self, close: CloseWith) -> None: ...


class Inbound(GuardedInbound[ClientEvent, CloseWith]):
    """The reader and the worker of one Realtime session (see :mod:`server.http.ws_inbound`): events are parsed
    by the reader, and the session's state machine handles them in order."""

    errors = (RealtimeError,)

    def __init__(self, session: Sink, guard: InboundGuard, send_timeout: float) -> None:
        super().__init__(session.ws, guard, send_timeout, QUEUE)
        self.session = session

    async def parse(self, message: dict) -> ClientEvent:
        if message.get("text") is None:
            raise RealtimeError("INVALID_EVENT", "binary messages are not events: send JSON text (audio goes"
                                " base64-encoded in input_audio_buffer.append)")
        event = await parse_event(message["text"])
        if isinstance(event, AudioAppend):
            self.guard.idle.touch()
        return event

    async def handle(self, event: ClientEvent) -> CloseWith | None:
        try:
            await self.session.handle(event)
        except CloseWith as close:
            return close
        return None

    def invalid(self, exc: Exception, handled: bool) -> bool:
        assert isinstance(exc, RealtimeError)
        if handled:  # answered by the session: an append's audio that is not base64 counts as invalid
            return exc.param == "audio"
        self.session.reply(exc.event())
        return exc.code != COMMIT_EMPTY_CODE

    def struck(self) -> CloseWith:
        error = RealtimeError("TOO_MANY_ERRORS", self.guard.too_many_message())
        return CloseWith(CLOSE_POLICY, error.event(), "too many invalid events")

    def idled(self) -> CloseWith:
        return CloseWith(1000, RealtimeError(
            "SESSION_IDLE", f"no audio for {self.guard.idle.timeout:g} s: the session is closed"
            " (VOXLANE_SESSION_IDLE_TIMEOUT)").event(), "idle")

    def close(self, closing: CloseWith) -> None:
        self.session.close(closing)
