"""In-process delivery: the embedded default, one node."""

from __future__ import annotations

from typing import Any

from server.fanout.base import Deliver


class LocalBroker:
    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    def attach(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def publish(self, transcript_id: str, message: dict[str, Any]) -> None:
        if self._deliver is not None:
            self._deliver(transcript_id, message)

    async def close(self) -> None:
        return None
