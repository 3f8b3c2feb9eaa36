"""Live ownership across nodes: one node streams a transcript at a time, and a dead node's transcripts end.

The node that terminates a transcript's publishers holds a lease on it in Redis (``voxlane:owner:<id>``, the
node's id as value, ``VOXLANE_LIVE_LEASE_SECONDS`` long) and renews it every quarter of that. A publisher that
arrives on another node meanwhile is refused with ``ALREADY_STARTED``, as a second anonymous publisher is on one
node. The last publisher's end completes the transcript, then releases the lease.

If the owning node dies, its lease lapses. Every node that shares Redis sweeps once a second for ``live``
transcripts without a lease that no node of its own streams, and finishes them from what was stored
(:mod:`server.pipeline.recovery`), telling every subscriber through the fan-out. A Redis that restarted forgets
every lease at once: owners put theirs back at their next renewal, so no sweep runs until Redis has been up for
a lease's length. So a subscriber elsewhere hears the end of a dead node's stream within the lease plus one sweep.

Leases say which node should stream a transcript; the database says which stream may write to it. Each stream
that starts moves the transcript's fence on (``Store.take_live``) and every write it makes carries the fence it
started with (its finals, its duration, its events, its completion); the sweep claims and completes an orphan in
one conditional write that moves the fence too. A node that stalled past its lease, or was cut off from Redis,
and streams on is refused at its next write: its streams end there without another word stored, and their
clients are told to reconnect (``TRANSCRIPT_MOVED``, then close code 1012). A lease found in another node's
hands at a renewal ends them the same way, before any write.

The same renewals keep the per-token and per-address stream caps counted across nodes: each capped caller has a
sorted set of the streams it publishes on any node, each scored by when it lapses unless its node renews it.

Without Redis a node is alone: :class:`LocalLeases` grants everything, and what a stopped process left ``live``
is finished when the next one starts (:func:`server.pipeline.recovery.finish_all_abandoned`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from protocol import ErrorCode, ProtocolError
from server.pipeline.recovery import Finishing, finish_abandoned, live_transcripts

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("voxlane.ownership")
SWEEP_S = 1.0
FAILED_CLAIM_S = 5.0
"""A transcript whose finish failed is tried again after this (by any node), not after the claim's 30 s; and the
transcripts after it in the same sweep are not held up by it."""
_KEY = "voxlane:owner:{}"
_RECOVERING = "voxlane:recovering:{}"
_ORPHANED = "voxlane:orphaned:{}"  # when a sweep first found the transcript without an owner (ms since the epoch)

# KEYS[1] lease; ARGV: node, lease ms. 1: renewed, 2: taken again after Redis forgot it, 0: another node has it.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: one sorted set per capped caller (its streams, scored by when they lapse); ARGV: now, lapse, member, then
# each key's limit. Every set is pruned, checked, then added to: all or nothing. Returns the full key's index, or 0.
_TAKE = """
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  if redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then return i end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[3])
  redis.call('PEXPIREAT', key, math.floor(tonumber(ARGV[2]) * 1000))
end
return 0
"""
_SLOTS = "voxlane:streams:{}"


class Leases(Protocol):
    async def acquire(self, transcript_id: str) -> None:
        """Own the transcript's live streams, or raise ``ALREADY_STARTED`` when another node does."""

    async def release(self, transcript_id: str) -> None: ...

    def lost(self, transcript_id: str) -> bool:
        """Whether another node took the transcript while this one still streamed it (its lease lapsed)."""

    async def take_slots(self, stream: str, caps: list[tuple[str, int]]) -> str | None:
        """Count one more live stream against each ``(key, limit)`` on every node at once; the first key already
        at its limit (nothing taken then), or None (taken)."""

    async def give_back_slots(self, stream: str) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalLeases:
    """One node: it owns whatever it streams."""

    async def acquire(self, transcript_id: str) -> None:
        return None

    async def release(self, transcript_id: str) -> None:
        return None

    def lost(self, transcript_id: str) -> bool:
        return False

    async def take_slots(self, stream: str, caps: list[tuple[str, int]]) -> str | None:
        return None  # one node: admission counts its own publishers

    async def give_back_slots(self, stream: str) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisLeases:
    """Leases in Redis, renewed in the background, and the sweep that ends a dead node's transcripts."""

    def __init__(self, redis: Redis, node: str, lease_s: float, *, sweep: Callable[[], Awaitable[None]] | None,
                 lost: Callable[[str], None] = lambda transcript_id: None, grace_s: float = 0.0,
                 check_fences: Callable[[], Awaitable[None]] | None = None) -> None:
        self.redis = redis
        self._check_fences = check_fences  # the database's word on what this node streams, as often as renewals
        self.grace_ms = int(grace_s * 1000)
        self._on_lost = lost  # told when another node holds the lease of a transcript this node still streams
        self.node = node
        self.lease_ms = int(lease_s * 1000)
        self._held: dict[str, int] = {}  # transcript -> how many of this node's streams hold its lease
        self._lost: set[str] = set()
        self._slots: dict[str, list[str]] = {}  # this node's streams -> the caller keys they count against
        self._sweep = sweep
        self._tasks: list[asyncio.Task] = []
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._take = redis.register_script(_TAKE)

    async def acquire(self, transcript_id: str) -> None:
        from redis.exceptions import RedisError

        key = _KEY.format(transcript_id)
        try:
            taken = await self._renew(keys=[key], args=[self.node, self.lease_ms])
        except (RedisError, OSError) as exc:  # no one to ask: stream on; the renewal takes the lease once it can
            log.warning("transcript %s: Redis is not reachable (%s); streaming without a lease for now",
                        transcript_id, type(exc).__name__)
            taken = 2
        if not taken:
            raise ProtocolError(ErrorCode.ALREADY_STARTED, "this transcript is being streamed on another node;"
                                " stop that stream first (a load balancer should route a transcript's streams to"
                                " one node: see docs/deployment.md)", {"reason": "owned_by_another_node"})
        self._held[transcript_id] = self._held.get(transcript_id, 0) + 1
        self._lost.discard(transcript_id)
        if taken == 2 and self.grace_ms:  # taken up where no one held it: its grace starts afresh next time
            with contextlib.suppress(RedisError, OSError):
                await self.redis.delete(_ORPHANED.format(transcript_id))

    async def release(self, transcript_id: str) -> None:
        """One of this node's streams of the transcript let go; the lease goes with the last. A stream that ended
        while a new one on this node had already taken the transcript over (a publisher that came back as the
        idle one finished) leaves the new one its lease: it deleted it, and another node's sweep then finished a
        transcript still being streamed."""
        from redis.exceptions import RedisError

        left = self._held.get(transcript_id, 0) - 1
        if left > 0:
            self._held[transcript_id] = left
            return
        self._held.pop(transcript_id, None)
        self._lost.discard(transcript_id)
        with contextlib.suppress(RedisError, OSError):
            await self._release(keys=[_KEY.format(transcript_id)], args=[self.node])

    def lost(self, transcript_id: str) -> bool:
        return transcript_id in self._lost

    async def take_slots(self, stream: str, caps: list[tuple[str, int]]) -> str | None:
        from redis.exceptions import RedisError

        if not caps:
            return None
        keys = [_SLOTS.format(key) for key, _ in caps]
        now = time.time()
        try:
            full = await self._take(keys=keys, args=[now, now + self.lease_ms / 1000, f"{self.node}:{stream}",
                                                    *(limit for _, limit in caps)])
        except (RedisError, OSError):  # no count across nodes now: each node's own count still applies
            return None
        if full:
            return caps[int(full) - 1][0]
        self._slots[stream] = keys
        return None

    async def give_back_slots(self, stream: str) -> None:
        from redis.exceptions import RedisError

        keys = self._slots.pop(stream, [])
        with contextlib.suppress(RedisError, OSError):
            for key in keys:
                await self.redis.zrem(key, f"{self.node}:{stream}")

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._renew_loop(), name="lease-renewal")]
        if self._check_fences is not None:
            self._tasks.append(asyncio.create_task(self._fence_loop(self._check_fences), name="fence-check"))
        if self._sweep is not None:
            self._tasks.append(asyncio.create_task(self._sweep_loop(self._sweep), name="lease-sweep"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for transcript_id in list(self._held):
            self._held[transcript_id] = 1
            await self.release(transcript_id)

    async def _renew_loop(self) -> None:
        from redis.exceptions import RedisError

        while True:
            await asyncio.sleep(self.lease_ms / 4000)
            for transcript_id in list(self._held):
                try:
                    kept = await self._renew(keys=[_KEY.format(transcript_id)], args=[self.node, self.lease_ms])
                except (RedisError, OSError):
                    break  # Redis is away: try again next round (our leases may lapse; see the module docstring)
                if not kept and transcript_id in self._held and transcript_id not in self._lost:
                    self._lost.add(transcript_id)
                    log.error("transcript %s: another node took its lease while this node streamed it", transcript_id)
                    self._on_lost(transcript_id)  # its streams here end: the other node's writes hold the fence
            with contextlib.suppress(RedisError, OSError):
                lapse = time.time() + self.lease_ms / 1000
                for stream, keys in list(self._slots.items()):
                    for key in keys:
                        await self.redis.zadd(key, {f"{self.node}:{stream}": lapse})
                        await self.redis.expireat(key, int(lapse) + 1)

    async def _fence_loop(self, check: Callable[[], Awaitable[None]]) -> None:
        """At the renewals' pace, apart from them: a database that hangs must not stop this node's leases."""
        while True:
            await asyncio.sleep(self.lease_ms / 4000)
            if not self._held:
                continue
            try:
                await check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: the stream's writes wait anyway; the next round asks
                log.debug("checking this node's fences failed: %s", exc)

    async def _sweep_loop(self, sweep: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or the database away: the next sweep tries again
                log.debug("lease sweep failed: %s", exc)

    async def settled(self) -> bool:
        """Whether Redis has been up for a lease's length: every living owner has renewed since it started."""
        info = await self.redis.info("server")
        return int(info.get("uptime_in_seconds", 0)) * 1000 >= self.lease_ms

    async def hold_claim(self, transcript_id: str, seconds: float) -> None:
        """Keep this node's recovery claim on a transcript for ``seconds`` more (after a failed finish: no node
        tries again before then)."""
        await self.redis.pexpire(_RECOVERING.format(transcript_id), int(seconds * 1000))

    async def drop_claim(self, transcript_id: str) -> None:
        await self.redis.delete(_RECOVERING.format(transcript_id))

    async def orphaned(self, transcript_ids: list[str], now: float | None = None) -> list[str]:
        """Of these ``live`` transcripts, those no node has held a lease on for the grace period (in which a
        publisher whose node died may reconnect to another node and go on), each claimed for recovery by this
        node (of several nodes sweeping at once, one recovers it)."""
        if not transcript_ids or not await self.settled():
            return []
        holders = await self.redis.mget([_KEY.format(t) for t in transcript_ids])
        now_ms = int((time.time() if now is None else now) * 1000)
        mine = []
        for transcript_id, holder in zip(transcript_ids, holders, strict=True):
            if holder is not None:
                continue
            if self.grace_ms:
                key = _ORPHANED.format(transcript_id)
                await self.redis.set(key, now_ms, nx=True, px=4 * self.grace_ms + self.lease_ms)
                since = int(await self.redis.get(key) or now_ms)
                if now_ms - since < self.grace_ms:
                    continue
            if await self.redis.set(_RECOVERING.format(transcript_id), self.node, nx=True,
                                    px=max(self.lease_ms, 30000)):
                mine.append(transcript_id)
        return mine


def make_leases(redis: Redis | None, node: str, lease_seconds: float, *, finisher: Finishing,
                streams: Callable[[str], bool], lost: Callable[[str], None] = lambda transcript_id: None,
                grace_seconds: float = 0.0, check_fences: Callable[[], Awaitable[None]] | None = None) -> Leases:
    """Redis leases when the node shares Redis; otherwise a node is alone. Every node with Redis sweeps for the
    transcripts of dead nodes (an API node that takes no live audio too: it may be the one left) and finishes
    them through ``finisher``; ``streams`` says which this node streams itself, ``lost`` is told of a transcript
    whose lease another node took while this one streamed it, and ``check_fences`` runs with every renewal round
    (the database says whether another node took over a transcript this one streams)."""
    if redis is None:
        return LocalLeases()

    leases: RedisLeases

    async def sweep() -> None:
        async for page in live_transcripts(finisher.store):
            for transcript_id in await leases.orphaned([t for t in page if not streams(t)]):
                try:
                    await finish_abandoned(finisher, transcript_id)
                except Exception:  # the others go on; this one is tried again once its claim lapses
                    log.exception("finishing transcript %s of a stopped node failed", transcript_id)
                    await leases.hold_claim(transcript_id, FAILED_CLAIM_S)
                else:
                    await leases.drop_claim(transcript_id)

    leases = RedisLeases(redis, node, lease_seconds, sweep=sweep, lost=lost, grace_s=grace_seconds,
                         check_fences=check_fences)
    return leases
