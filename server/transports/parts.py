"""What a live transport session takes from its node, declared here as a port: the transports never import the
composition root, and a test hands them any object with these parts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from server.pipeline.hub import Hub
    from server.pipeline.transcripts import LiveRegistry
    from server.settings import Settings
    from server.storage import Store


class SessionParts(Protocol):
    """A session streams into this node's live transcripts (``live``), hears their messages through the hub,
    reads its transcript's row, and names this node (``node``) in the ids it hands out."""

    settings: Settings
    store: Store
    hub: Hub
    live: LiveRegistry
    node: str
