"""The broker interface the hub publishes and subscribes through.

What a network broker needs shapes it: a subscription is per transcript and records a read position before the
caller reads the stored history (so nothing falls between the stored part and the live part), and the current
status of a transcript is the broker's (the node that published it may be another one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Deliver = Callable[[str, dict[str, Any]], None]
"""The hub's local delivery: (transcript id, wire message) to this node's subscribers of that transcript."""

CatchUp = Callable[[str], Awaitable[None]]
"""The hub's re-delivery of a transcript's stored finals to this node's subscribers that have not had them: a
network broker calls it when messages from another node may have been lost (every final is stored before it is
published, so the store has them all)."""


def is_transcript_status(message: dict[str, Any]) -> bool:
    """A ``status`` of the whole transcript (not one participant's): what late joiners are told."""
    return message.get("type") == "status" and (message.get("data") or {}).get("participant_id") is None


class Broker(Protocol):
    def attach(self, deliver: Deliver, catch_up: CatchUp) -> None:
        """Where messages for this node go (the hub calls it once, when it is built)."""

    async def publish(self, transcript_id: str, message: dict[str, Any]) -> None:
        """Deliver to this node's subscribers at once and hand on to the other nodes; never raises and never waits
        on the network (the live pipeline calls it)."""

    def subscribe(self, transcript_id: str) -> asyncio.Future[dict[str, Any] | None] | None:
        """A subscriber of the transcript joined on this node (called once per subscriber, after the hub has
        registered it locally). The future is done once the read position is recorded, with the status as of
        that position: every message published on any node after it reaches this node. None: in place at once
        (in-process), and the status as of now is :meth:`status`."""

    def unsubscribe(self, transcript_id: str) -> None:
        """A subscriber of the transcript left this node (once per :meth:`subscribe`)."""

    def status(self, transcript_id: str) -> dict[str, Any] | None:
        """The ``data`` of the transcript's latest status message as this node knows it, or None."""

    def forget(self, transcript_id: str) -> None:
        """The transcript is gone: drop what is kept about it."""

    async def close(self) -> None: ...
