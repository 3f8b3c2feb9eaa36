"""The appending side of Redis fan-out: messages published on this node, written to their transcripts' streams.

Publishing only queues (the live pipeline never waits on Redis); one writer task empties the queues, every
message that is waiting in one MULTI/EXEC, so a burst costs one round trip. While Redis is away the messages stay
queued in order, at most :data:`MAX_PENDING` per transcript (the oldest go first beyond it: a reader sees the hole
in the entries' run numbers and takes the finals from the store), and the writer retries with backoff, one
message at a time until one goes through (so at most one more is held, in the attempt).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError, ResponseError

from server.fanout.base import is_transcript_status
from server.fanout.redis_keys import status_key, stream_key

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("voxlane.fanout")

MAX_PENDING = 1000
"""Messages kept per transcript while Redis is away: a live stream sends 2-4 a second, so minutes of them."""
MAXLEN = 2000
"""Entries kept per stream (XADD MAXLEN ~): what a reader that lost its connection can still catch up on."""
DONE_TTL_S = 3600
"""A stream and its status key expire this long after the transcript's last ``completed``/``failed``."""
IDLE_TTL_S = 86400
"""Each append pushes the expiry this far ahead, so a stream whose node died mid-transcript goes away too."""
BATCH = 500
BACKOFF_S = (0.05, 2.0)
TERMINAL = ("completed", "failed")


@dataclass
class _Append:
    run: str
    seq: int
    payload: str  # the message as JSON
    status: str | None  # a status of the whole transcript: its data as JSON, for the status key
    terminal: bool  # the transcript's latest status here is completed or failed


@dataclass
class _Run:
    """This node's appends to one transcript: a run token, their numbers, and those still waiting."""

    token: str
    seq: int = 0
    terminal: bool = False
    dropped: int = 0


class Appender:
    def __init__(self, client: Redis, node: str, *, maxlen: int = MAXLEN, done_ttl_s: int = DONE_TTL_S,
                 idle_ttl_s: int = IDLE_TTL_S, max_pending: int = MAX_PENDING) -> None:
        self._client = client
        self._node = node
        self._maxlen, self._done_ttl, self._idle_ttl = maxlen, done_ttl_s, idle_ttl_s
        self._max_pending = max_pending
        self._queues: dict[str, deque[_Append]] = {}
        self._runs: dict[str, _Run] = {}
        self._inflight: dict[str, list[_Append]] = {}
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0  # messages given up on for good (beyond MAX_PENDING, or refused by Redis)
        self.down_since: float | None = None

    # ------------------------------------------------------------ the publishing side (no awaits)

    def append(self, transcript_id: str, message: dict[str, Any]) -> None:
        run = self._runs.get(transcript_id)
        if run is None:
            run = self._runs[transcript_id] = _Run(secrets.token_hex(4))
        status = None
        if is_transcript_status(message):
            run.terminal = message["data"].get("status") in TERMINAL
            status = json.dumps(message["data"], separators=(",", ":"))
        run.seq += 1
        queue = self._queues.setdefault(transcript_id, deque())
        queue.append(_Append(run.token, run.seq, json.dumps(message, separators=(",", ":")), status, run.terminal))
        if len(queue) > self._max_pending:
            queue.popleft()
            self.dropped += 1
            run.dropped += 1
            if run.dropped == 1:
                log.warning("Redis fan-out: more than %d messages of %s waiting for Redis; dropping the oldest"
                            " (other nodes' subscribers take its finals from the store)", self._max_pending,
                            transcript_id)
        self._idle.clear()
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="redis-fanout-writer")

    def publishes(self, transcript_id: str) -> bool:
        """This node is appending to the transcript (a run of it is open)."""
        return transcript_id in self._runs

    def status_waiting(self, transcript_id: str) -> bool:
        """A status published here is not in Redis yet: this node's own status is newer than Redis's."""
        waiting = (*self._queues.get(transcript_id, ()), *self._inflight.get(transcript_id, ()))
        return any(a.status is not None for a in waiting)

    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values()) + sum(len(b) for b in self._inflight.values())

    # ------------------------------------------------------------ the writer task

    async def _run(self) -> None:
        delay = BACKOFF_S[0]
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queues:
                batch = self._take(1 if self.down_since is not None else BATCH)
                try:
                    await self._write(batch)
                except (RedisError, OSError) as exc:
                    if isinstance(exc, ResponseError):  # refused, not unreachable (and EXEC ran the rest): not again
                        self._settle(batch)
                        refused = sum(len(b) for b in batch.values())
                        self.dropped += refused
                        log.error("Redis refused a write of %d fan-out appends (%s); not retried", refused, exc)
                        continue
                    self._give_back(batch)
                    if self.down_since is None:
                        self.down_since = asyncio.get_running_loop().time()
                        log.warning("Redis fan-out: appends fail (%s: %s); keeping up to %d per transcript and"
                                    " retrying", type(exc).__name__, exc, self._max_pending)
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    delay = min(delay * 2, BACKOFF_S[1])
                    continue
                except BaseException:
                    self._give_back(batch)
                    raise
                self._settle(batch)
                delay = BACKOFF_S[0]
                if self.down_since is not None:
                    log.warning("Redis fan-out: appends go through again after %.1f s",
                                asyncio.get_running_loop().time() - self.down_since)
                    self.down_since = None
            self._idle.set()

    def _take(self, room: int) -> dict[str, list[_Append]]:
        """Up to ``room`` waiting messages, each transcript's in order, out of the queues (in flight)."""
        batch: dict[str, list[_Append]] = {}
        for tid in list(self._queues):
            queue = self._queues[tid]
            take = [queue.popleft() for _ in range(min(room, len(queue)))]
            if take:
                batch[tid] = take
                room -= len(take)
            if not queue:
                del self._queues[tid]
            if room == 0:
                break
        self._inflight = batch
        return batch

    def _give_back(self, batch: dict[str, list[_Append]]) -> None:
        """A failed write: its messages go back in front of those published since, and the bound holds."""
        self._inflight = {}
        for tid, items in batch.items():
            queue = self._queues.setdefault(tid, deque())
            queue.extendleft(reversed(items))
            while len(queue) > self._max_pending:
                queue.popleft()
                self.dropped += 1

    def _settle(self, batch: dict[str, list[_Append]]) -> None:
        """Written: a transcript whose last status here is final and has nothing left to write is forgotten (a
        later message starts a new run)."""
        self._inflight = {}
        for tid in batch:
            run = self._runs.get(tid)
            if run is not None and run.terminal and tid not in self._queues:
                del self._runs[tid]

    async def _write(self, batch: dict[str, list[_Append]]) -> None:
        pipe = self._client.pipeline(transaction=True)
        for tid, items in batch.items():
            key, skey = stream_key(tid), status_key(tid)
            for item in items:
                pipe.xadd(key, {"n": self._node, "r": item.run, "q": item.seq, "m": item.payload},
                          maxlen=self._maxlen, approximate=True)
                if item.status is not None:
                    pipe.set(skey, item.status)
            ttl = self._done_ttl if items[-1].terminal else self._idle_ttl
            pipe.expire(key, ttl)
            pipe.expire(skey, ttl)
        await pipe.execute()

    # ------------------------------------------------------------ shutdown

    async def flush(self, within: float) -> bool:
        """Wait (at most ``within`` s) until everything published here is written."""
        try:
            async with asyncio.timeout(within):  # not wait_for: 3.11's can swallow a cancellation
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, within: float = 2.0) -> None:
        if self._task is None:
            return
        if not await self.flush(within) and self.waiting():
            log.warning("Redis fan-out: %d messages were never written (Redis unreachable at shutdown)",
                        self.waiting())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
