"""Client control actions (start, pause, stop, get_status, participant events), with one meaning on every
ingest path: the WebSocket route and the WebRTC data channel both hand their messages to :func:`apply_control`."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel

from protocol import ErrorCode, ProtocolError, StartParams, Status, parse_client_message
from protocol.messages import Participant, _Body
from server.http.auth import WRITE
from server.pipeline.publisher import Publisher


class ControlChannel(Protocol):
    """What an ingest path (WebSocket, WebRTC data channel) offers the shared control semantics."""

    publisher: Publisher | None
    declares_format: bool  # False where the codec, not ``start``, describes the audio (WebRTC)
    may_publish: bool  # the caller's token has ``transcripts:write``: it may send audio and drive the stream

    async def start_publisher(self, params: StartParams | None) -> None: ...

    async def stop_publisher(self, publisher: Publisher) -> None: ...

    def reply(self, body: _Body) -> None: ...

    def status(self) -> Status: ...


PUBLISHING_ACTIONS = frozenset({"start", "participant_event", "pause", "stop"})
"""Actions that change a transcript: they need ``transcripts:write`` (``get_status`` only reads)."""


def insufficient_scope(what: str) -> ProtocolError:
    """The answer to a subscriber whose token may read the transcript but not publish to it."""
    return ProtocolError(ErrorCode.INSUFFICIENT_SCOPE, f"{what} needs a token with the {WRITE!r} scope; this"
                         " connection may only listen", {"required": WRITE})


def pin_participant(params: StartParams | None, participant: dict[str, Any] | None) -> StartParams | None:
    """The start params of a caller whose token names its participant (a meeting token): whatever participant or
    channel split the client declares, its audio is that participant's own stream, under the name it joined with."""
    if participant is None:
        return params
    pinned = Participant.model_validate(participant)
    if params is None:
        return StartParams(participant=pinned)
    return params.model_copy(update={"participant": pinned, "split_channels": False, "channel_names": None})


async def apply_control(channel: ControlChannel, raw: str | bytes | BaseModel) -> None:
    """One client action (its text, or as parsed already), with the same meaning on every ingest path; raises
    ProtocolError to answer."""
    msg = raw if isinstance(raw, BaseModel) else parse_client_message(raw)
    action = msg.action  # type: ignore[attr-defined]
    if action in PUBLISHING_ACTIONS and not channel.may_publish:
        raise insufficient_scope(f"{action!r}")
    pub = channel.publisher
    active = pub is not None and not pub.finished
    if action == "start":
        params = msg.params  # type: ignore[attr-defined]
        if active:
            assert pub is not None
            if channel.declares_format and params is not None and params.format != pub.params.format:
                raise ProtocolError(ErrorCode.ALREADY_STARTED, "audio format cannot change mid-stream; stop first")
            await pub.resume()
        else:
            await channel.start_publisher(params)
    elif action == "get_status":
        if active:
            assert pub is not None
            channel.reply(pub.status_body("paused" if pub.paused else "processing", "transcription", "live"))
        else:
            channel.reply(channel.status())
    elif action == "participant_event":
        if pub is None:
            raise ProtocolError(ErrorCode.NOT_STARTED, "participant events need a started stream")
        await pub.participant_event(msg.params)  # type: ignore[attr-defined]
    elif action == "stop" and pub is not None and pub.storage_error is not None:
        return  # the server ended this stream (disk full) and said so; the client's stop agrees with it
    elif not active:
        raise ProtocolError(ErrorCode.NOT_STARTED, f"nothing to {action}: no audio stream was started")
    elif action == "pause":
        await pub.pause()  # type: ignore[union-attr]
    elif action == "stop":
        await channel.stop_publisher(pub)  # type: ignore[arg-type]
