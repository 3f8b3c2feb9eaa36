"""Fan-out of published messages to every subscriber of a transcript, on this node and across nodes.

The hub hands every message to a :class:`Broker`; the broker calls back the hub's delivery on each node that
has subscribers. :class:`LocalBroker` is the embedded default (one node, in-process); ``server.fanout.redis``
holds the Redis Streams broker, imported only where ``VOXLANE_REDIS_URL`` asks for it.
"""

from server.fanout.base import Broker, CatchUp, Deliver, is_transcript_status
from server.fanout.local import LocalBroker

__all__ = ["Broker", "CatchUp", "Deliver", "LocalBroker", "is_transcript_status"]
