"""In-process delivery: the embedded default, one node."""

from __future__ import annotations

import asyncio
from typing import Any

from server.fanout.base import CatchUp, Deliver, is_transcript_status


class LocalBroker:
    """Every publisher and subscriber is in this process: delivery is a function call, a subscription is in
    place at once, and the status is the last one published here."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        self._status: dict[str, dict[str, Any]] = {}

    def attach(self, deliver: Deliver, catch_up: CatchUp) -> None:
        self._deliver = deliver

    async def publish(self, transcript_id: str, message: dict[str, Any]) -> None:
        if is_transcript_status(message):
            self._status[transcript_id] = message["data"]
        if self._deliver is not None:
            self._deliver(transcript_id, message)

    def subscribe(self, transcript_id: str) -> asyncio.Future[dict[str, Any] | None] | None:
        return None

    def unsubscribe(self, transcript_id: str) -> None:
        return None

    def status(self, transcript_id: str) -> dict[str, Any] | None:
        return self._status.get(transcript_id)

    def forget(self, transcript_id: str) -> None:
        self._status.pop(transcript_id, None)

    async def close(self) -> None:
        return None
