"""Fan-out across nodes on Redis Streams (``VOXLANE_REDIS_URL``).

A message published here goes to this node's subscribers at once, never waiting on Redis, and is appended to its
transcript's stream (:mod:`server.fanout.redis_writer`); this node's reader delivers what other nodes append to
the streams of the transcripts it has subscribers for (:mod:`server.fanout.redis_reader`). Streams rather than
pub/sub: a reader that lost its connection resumes from its last id instead of losing what was sent meanwhile,
and one stream keeps a transcript's order for every node.

A transcript's status is the one this node published last or, where another node publishes it, the status key
read with the subscription's read position, then every status read from the stream after it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from server.fanout.base import CatchUp, Deliver, is_transcript_status
from server.fanout.redis_reader import Reader
from server.fanout.redis_writer import DONE_TTL_S, IDLE_TTL_S, MAX_PENDING, MAXLEN, Appender

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("voxlane.fanout")


class RedisBroker:
    """``client`` is the node's Redis client (:mod:`server.redis_client`), which its owner closes; ``node`` is
    this process' id (:func:`server.node.node_id`)."""

    def __init__(self, client: Redis, node: str, *, maxlen: int = MAXLEN, done_ttl_s: int = DONE_TTL_S,
                 idle_ttl_s: int = IDLE_TTL_S, max_pending: int = MAX_PENDING) -> None:
        self.node = node
        self._deliver: Deliver | None = None
        self._catch_up: CatchUp | None = None
        self._status: dict[str, dict[str, Any]] = {}
        self._remote_status: set[str] = set()  # transcripts whose status came from Redis, not from this node
        self._versions: dict[str, int] = {}  # statuses published here, per transcript
        self.appender = Appender(client, node, maxlen=maxlen, done_ttl_s=done_ttl_s, idle_ttl_s=idle_ttl_s,
                                 max_pending=max_pending)
        self.reader = Reader(client, node, self)

    def attach(self, deliver: Deliver, catch_up: CatchUp) -> None:
        self._deliver, self._catch_up = deliver, catch_up

    async def publish(self, transcript_id: str, message: dict[str, Any]) -> None:
        if is_transcript_status(message):
            self._status[transcript_id] = message["data"]
            self._remote_status.discard(transcript_id)
            self._versions[transcript_id] = self._versions.get(transcript_id, 0) + 1
        if self._deliver is not None:
            self._deliver(transcript_id, message)
        try:
            self.appender.append(transcript_id, message)
        except Exception:  # the live pipeline must not hear of it; this node's subscribers already have it
            log.exception("Redis fan-out: could not queue a message of %s", transcript_id)

    def subscribe(self, transcript_id: str) -> asyncio.Future[dict[str, Any] | None] | None:
        return self.reader.follow(transcript_id)

    def unsubscribe(self, transcript_id: str) -> None:
        if self.reader.unfollow(transcript_id) and transcript_id in self._remote_status:
            # no longer read: what Redis said would go stale; the next subscription reads it again
            self._remote_status.discard(transcript_id)
            self._status.pop(transcript_id, None)

    def status(self, transcript_id: str) -> dict[str, Any] | None:
        return self._status.get(transcript_id)

    def forget(self, transcript_id: str) -> None:
        self._status.pop(transcript_id, None)
        self._remote_status.discard(transcript_id)
        self._versions.pop(transcript_id, None)

    async def close(self) -> None:
        """Write what is still waiting (2 s at most: the last ``completed`` of a shutdown), then stop."""
        await self.appender.close()
        await self.reader.close()

    # ------------------------------------------------------------ ReaderHost

    def deliver_remote(self, transcript_id: str, message: dict[str, Any]) -> None:
        if is_transcript_status(message):
            self._status[transcript_id] = message["data"]
            self._remote_status.add(transcript_id)
        if self._deliver is not None:
            self._deliver(transcript_id, message)

    async def catch_up(self, transcript_id: str) -> None:
        if self._catch_up is not None:
            await self._catch_up(transcript_id)

    def status_version(self, transcript_id: str) -> int:
        return self._versions.get(transcript_id, 0)

    def adopt_status(self, transcript_id: str, status: dict[str, Any] | None, version: int) -> None:
        """The status key as of a new read position. This node's own status stays where it is newer: one
        published here during the join, or not yet written to Redis."""
        if status is None or status == self._status.get(transcript_id) \
                or self._versions.get(transcript_id, 0) != version or self.appender.status_waiting(transcript_id):
            return
        self._status[transcript_id] = status
        self._remote_status.add(transcript_id)

    def publishes(self, transcript_id: str) -> bool:
        return self.appender.publishes(transcript_id)
