"""Fan-out of published messages to every subscriber of a transcript, on this node or (next) across nodes.

The hub hands every message to a :class:`Broker`; the broker calls back the hub's delivery on each node that
has subscribers. In-process here; a Redis broker goes behind the same interface.
"""

from server.fanout.base import Broker, Deliver
from server.fanout.local import LocalBroker

__all__ = ["Broker", "Deliver", "LocalBroker"]
