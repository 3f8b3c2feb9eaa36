"""The reading side of Redis fan-out: one task per node reads the streams of the transcripts this node has
subscribers for, and delivers what other nodes appended to them, in stream order.

One blocking XREAD covers every followed stream and the node's wake-up stream, on a connection of its own. A
subscription records its position (the stream's last id, with the status key, in one MULTI) before the caller
reads the stored history, so every entry after it is read and nothing before it is needed. When Redis is away
the reader retries with backoff; back, it resumes from its last ids. Where entries may be lost (the stream was
trimmed past the position, or is gone because Redis restarted without persistence, or another node's entry
numbers show a hole) the hub re-delivers the transcript's stored finals first, and the status key's value is
delivered if the entries read do not end on it: a remote subscriber may then miss partials, never a final.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import RedisError

from server.fanout.redis_keys import first_id, id_before, read_entries, status_key, stream_key, transcript_of, wake_key

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("voxlane.fanout")

BLOCK_MS = 2000
COUNT = 500
BACKOFF_S = (0.05, 2.0)
CATCH_UP_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 1.0
"""A subscriber waits at most this long for its read position (before its history is sent): without one it
still hears this node's messages at once, and the reader takes its position and catches up later."""
WAKE_TTL_S = 3600


class ReaderHost(Protocol):
    """What the reader asks of its broker."""

    def deliver_remote(self, transcript_id: str, message: dict[str, Any]) -> None: ...

    async def catch_up(self, transcript_id: str) -> None: ...

    def status(self, transcript_id: str) -> dict[str, Any] | None: ...

    def status_version(self, transcript_id: str) -> int: ...

    def adopt_status(self, transcript_id: str, status: dict[str, Any] | None, version: int) -> None: ...

    def publishes(self, transcript_id: str) -> bool: ...


@dataclass
class _Follow:
    transcript_id: str
    refs: int = 0
    placed: asyncio.Future[dict[str, Any] | None] | None = None  # the status as of the position, once taken
    join: asyncio.Task[None] | None = None
    position: str | None = None  # the last entry read, or the stream's last at the join; None: not known yet
    remote: bool = False  # another node's entry was read: a possible loss is caught up on
    runs: dict[str, tuple[str, int]] = field(default_factory=dict)  # node -> (run, last entry number) read
    status_after: tuple[str, dict[str, Any]] | None = None  # once read up to this id, the status must be this


def _decode(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Reader:
    def __init__(self, client: Redis, node: str, host: ReaderHost) -> None:
        self._client = client
        self._node = node
        self._host = host
        self._wake = wake_key(node)
        self._wake_id = "0-0"
        self._follows: dict[str, _Follow] = {}
        self._changed = asyncio.Event()
        self._conn: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self.down_since: float | None = None

    # ------------------------------------------------------------ subscriptions (no awaits)

    def follow(self, transcript_id: str) -> asyncio.Future[dict[str, Any] | None]:
        """A subscriber more. The future is done once the read position is taken, with the status as of it: for
        the first subscriber of the transcript on this node after one Redis round trip; for a later one at once
        (what the reader has delivered so far is its position)."""
        f = self._follows.get(transcript_id)
        if f is not None and f.placed is not None and f.placed.done():
            f.refs += 1
            done: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
            done.set_result(self._host.status(transcript_id))
            return done
        if f is None:
            f = self._follows[transcript_id] = _Follow(transcript_id)
            f.placed = asyncio.get_running_loop().create_future()
            f.join = asyncio.create_task(self._join(f), name=f"redis-fanout-join-{transcript_id}")
            if self._task is None:
                self._conn = self._client.client()  # a connection of its own: XREAD blocks it
                self._task = asyncio.create_task(self._run(), name="redis-fanout-reader")
        f.refs += 1
        assert f.placed is not None
        return f.placed

    def unfollow(self, transcript_id: str) -> bool:
        """One subscriber fewer; True when it was this node's last of the transcript (it is not read any more)."""
        f = self._follows.get(transcript_id)
        if f is None:
            return False
        f.refs -= 1
        if f.refs > 0:
            return False
        del self._follows[transcript_id]
        return True

    def following(self) -> list[str]:
        return list(self._follows)

    async def _join(self, f: _Follow) -> None:
        tid = f.transcript_id
        version = self._host.status_version(tid)
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.xrevrange(stream_key(tid), "+", "-", count=1)
            pipe.get(status_key(tid))
            async with asyncio.timeout(JOIN_TIMEOUT_S):  # not wait_for: 3.11's can swallow a cancellation
                last, raw = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:  # the reader takes the position (and catches up) later
            log.warning("Redis fan-out: no read position for %s now (%s); catching up once Redis answers", tid,
                        type(exc).__name__)
            self._placed(f)
            return
        if self._follows.get(tid) is not f:
            self._placed(f)
            return
        f.position = first_id(last) or "0-0"
        self._host.adopt_status(tid, _decode(raw), version)
        self._placed(f)
        try:  # a blocked XREAD cannot take the new stream: wake it
            pipe = self._client.pipeline(transaction=False)
            pipe.xadd(self._wake, {"t": tid}, maxlen=1, approximate=False)
            pipe.expire(self._wake, WAKE_TTL_S)
            await pipe.execute()
        except (RedisError, OSError):
            pass  # the reader is failing too, and reads every stream when it reconnects

    def _placed(self, f: _Follow) -> None:
        """The join answered: subscribers learn the status as of the position (taken in the same step, before
        the reader can deliver anything after it), and the reader reads the stream from now on."""
        if f.placed is not None and not f.placed.done():
            f.placed.set_result(self._host.status(f.transcript_id))
        self._changed.set()

    # ------------------------------------------------------------ the reader task

    async def _run(self) -> None:
        delay = BACKOFF_S[0]
        broken = False
        while True:
            ready = [f for f in self._follows.values() if f.placed is not None and f.placed.done()]
            if not ready:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                unplaced = ready if broken else [f for f in ready if f.position is None]
                if unplaced:
                    await self._recover(unplaced)
                broken = False
                streams = {self._wake: self._wake_id}
                streams.update({stream_key(f.transcript_id): f.position for f in ready if f.position is not None})
                assert self._conn is not None
                response = await self._conn.xread(streams, count=COUNT, block=BLOCK_MS)  # type: ignore[arg-type]
            except (RedisError, OSError) as exc:
                if self.down_since is None:
                    self.down_since = asyncio.get_running_loop().time()
                    log.warning("Redis fan-out: reading fails (%s: %s); retrying with backoff", type(exc).__name__,
                                exc)
                broken = True
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, BACKOFF_S[1])
                continue
            if self.down_since is not None:
                log.warning("Redis fan-out: reading again after %.1f s", asyncio.get_running_loop().time()
                            - self.down_since)
                self.down_since = None
            delay = BACKOFF_S[0]
            await self._dispatch(response)

    async def _dispatch(self, response: Any) -> None:
        for key, entries in read_entries(response):
            if key == self._wake:
                if entries:
                    self._wake_id = entries[-1][0]
                continue
            f = self._follows.get(transcript_of(key))
            if f is None or f.position is None:
                continue
            for entry_id, fields in entries:
                if self._follows.get(f.transcript_id) is not f:
                    break
                await self._entry(f, entry_id, fields)
            self._check_status(f)

    async def _entry(self, f: _Follow, entry_id: str, fields: dict[str, str]) -> None:
        f.position = entry_id
        node, run = fields.get("n", ""), fields.get("r", "")
        if node == self._node:
            return  # delivered here when it was published
        f.remote = True
        try:
            number = int(fields.get("q", "0"))
        except ValueError:
            number = 0
        seen = f.runs.get(node)
        if seen is not None and seen[0] == run:
            if number <= seen[1]:
                return  # appended twice: a MULTI whose reply was lost was retried
            if number > seen[1] + 1:
                log.warning("Redis fan-out: %d messages of %s from %s were lost; catching up on its finals",
                            number - seen[1] - 1, f.transcript_id, node)
                await self._catch_up(f)
        f.runs[node] = (run, number)
        message = _decode(fields.get("m"))
        if message is not None:
            self._host.deliver_remote(f.transcript_id, message)

    # ------------------------------------------------------------ losses

    async def _recover(self, follows: list[_Follow]) -> None:
        """Positions after a failed join or a broken connection: each stream's first and last id and status,
        in one MULTI; where entries after a position may be gone, catch up."""
        pipe = self._client.pipeline(transaction=True)
        for f in follows:
            key = stream_key(f.transcript_id)
            pipe.xrange(key, "-", "+", count=1)
            pipe.xrevrange(key, "+", "-", count=1)
            pipe.get(status_key(f.transcript_id))
        results = await pipe.execute()
        for i, f in enumerate(follows):
            first, last, raw = results[3 * i:3 * i + 3]
            if self._follows.get(f.transcript_id) is not f or not self._lost(f, first_id(first), first_id(last)):
                continue
            if f.remote or not self._host.publishes(f.transcript_id):
                await self._catch_up(f)
            status = _decode(raw)
            if status is not None:
                f.status_after = (first_id(last) or "0-0", status)
                self._check_status(f)

    @staticmethod
    def _lost(f: _Follow, first: str | None, last: str | None) -> bool:
        """Places ``f``; True where entries after its position may be gone."""
        if f.position is None:  # joined while Redis was away
            f.position = last or "0-0"
            return True
        if first is None:  # the stream is gone: Redis restarted without persistence, or it expired
            lost = f.position != "0-0"
            f.position = "0-0"  # whatever is appended from now on
            return lost
        return f.position != "0-0" and id_before(f.position, first)  # trimmed past the position

    async def _catch_up(self, f: _Follow) -> None:
        try:
            async with asyncio.timeout(CATCH_UP_TIMEOUT_S):
                await self._host.catch_up(f.transcript_id)
        except Exception:
            log.exception("Redis fan-out: catching up on the finals of %s failed", f.transcript_id)

    def _check_status(self, f: _Follow) -> None:
        if f.status_after is None or f.position is None or id_before(f.position, f.status_after[0]):
            return
        status = f.status_after[1]
        f.status_after = None
        if self._host.status(f.transcript_id) != status:
            self._host.deliver_remote(f.transcript_id, {"type": "status", "data": status})

    # ------------------------------------------------------------ shutdown

    async def close(self) -> None:
        tasks = [f.join for f in self._follows.values() if f.join is not None and not f.join.done()]
        for f in self._follows.values():
            if f.placed is not None and not f.placed.done():
                f.placed.cancel()
        if self._task is not None:
            tasks.append(self._task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        if self._conn is not None:
            try:
                async with asyncio.timeout(1.0):
                    await self._client.delete(self._wake)
            except (RedisError, OSError, TimeoutError):
                pass
            await self._conn.aclose()
            self._conn = None
