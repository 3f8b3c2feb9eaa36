"""The broker interface the hub publishes through."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Deliver = Callable[[str, dict[str, Any]], None]
"""The hub's local delivery: (transcript id, wire message) to this node's subscribers of that transcript."""


class Broker(Protocol):
    async def publish(self, transcript_id: str, message: dict[str, Any]) -> None: ...

    def attach(self, deliver: Deliver) -> None:
        """Where messages for this node go (the hub calls it once, when it is built)."""

    async def close(self) -> None: ...
