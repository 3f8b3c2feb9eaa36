"""The hub: the only way an event reaches the outside.

``publish`` stores a final segment before anyone hears of it and hands the
message to the broker, which delivers it to every subscriber of the transcript
on this node and, with Redis, on the others (``server.fanout``). The broker
also keeps the transcript's current status for late joiners.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Generator
from typing import Any

from pydantic import ValidationError

from protocol import Status, Transcription, envelope
from protocol.close import CLOSE_MOVED, CLOSE_NORMAL, CLOSE_TRY_AGAIN
from protocol.messages import _Body
from server.fanout import Broker, LocalBroker
from server.pipeline.convert import segment_row, stored_message
from server.storage import StaleFence, Store
from server.storage.outage import until_stored

log = logging.getLogger("voxlane.hub")


class Subscriber:
    """One listener's queue. A reader too slow to keep up is cut off, never waited for.

    Awaiting it waits until the broker has recorded its read position (``sub = await hub.subscribe(tid)``, before
    the stored history is read): at once in-process, one Redis round trip with Redis. ``status`` is then the
    transcript's status as of that position, which a late joiner is told after the history: every later one is
    in the queue.
    """

    def __init__(self, transcript_id: str, maxsize: int = 2000) -> None:
        self.transcript_id = transcript_id
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize)
        self.overflowed = False
        self.moved = False
        self.finals: set[str] = set()  # segments whose final it was handed
        self.joined: asyncio.Future[dict[str, Any] | None] | None = None
        self.status: dict[str, Any] | None = None

    def __await__(self) -> Generator[Any, None, Subscriber]:
        return self._joined().__await__()

    async def _joined(self) -> Subscriber:
        if self.joined is not None:
            self.status = await asyncio.shield(self.joined)  # shared by this node's subscribers of the transcript
            self.joined = None
        return self

    def put(self, message: dict[str, Any]) -> None:
        if self.overflowed:
            return
        if message.get("type") == "transcription":
            data = message.get("data") or {}
            segment = str(data.get("segment_id"))
            if segment in self.finals:
                return  # a segment has one final and nothing after it: this is a re-delivery (a broker catching up)
            if data.get("is_final"):
                self.finals.add(segment)
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("subscriber of %s fell behind; disconnecting it", self.transcript_id)
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)  # tells the reader to close

    @property
    def close_code(self) -> int:
        """How a reader closes its socket once the queue ends (None): "try again" when it was cut off for
        falling behind, a normal close when the transcript went away."""
        if self.moved:
            return CLOSE_MOVED
        return CLOSE_TRY_AGAIN if self.overflowed else CLOSE_NORMAL

    def close(self, *, moved: bool = False) -> None:
        """End the queue; ``moved``: the transcript is served by another node now (its reader reconnects)."""
        self.moved = self.moved or moved
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            pass


class Hub:
    def __init__(self, store: Store, broker: Broker | None = None) -> None:
        self.store = store
        self.broker = broker or LocalBroker()
        self.broker.attach(self._deliver, self._catch_up)
        self._subs: dict[str, set[Subscriber]] = defaultdict(set)
        self._fences: dict[str, int] = {}  # transcripts this node streams -> the fence their finals are stored with
        self._stale: set[str] = set()  # of those, the ones whose fence the database refused
        self._ending: set[asyncio.Task] = set()  # other nodes' ends waiting for their catch-up (see _deliver)
        self._ending_here: set[str] = set()  # transcripts whose end this node is publishing, caught up already
        self.on_stale: Callable[[str], None] = lambda transcript_id: None
        """Told when the database refused a final of a transcript this node streams (another took it over)."""

    def subscribe(self, transcript_id: str) -> Subscriber:
        """A new subscriber, receiving from now on. Await it (``await hub.subscribe(tid)``) before reading the
        stored history: then every message published on any node after that history reaches it. Without the
        await it receives this node's messages at once and other nodes' once the broker's position is taken."""
        sub = Subscriber(transcript_id)
        self._subs[transcript_id].add(sub)
        sub.joined = self.broker.subscribe(transcript_id)
        if sub.joined is None:
            sub.status = self.broker.status(transcript_id)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.transcript_id)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.transcript_id]
        self.broker.unsubscribe(sub.transcript_id)

    def subscriber_count(self, transcript_id: str) -> int:
        return len(self._subs.get(transcript_id, ()))

    def current_status(self, transcript_id: str, sub: Subscriber | None = None) -> Status | None:
        """The transcript's latest status as the broker knows it (with Redis: whichever node published it), or as
        of ``sub``'s read position."""
        data = self.broker.status(transcript_id) if sub is None else sub.status
        if data is None:
            return None
        try:
            return Status.model_validate(data)
        except ValidationError:  # written by another version of voxlane
            log.warning("status of %s cannot be read: %s", transcript_id, data)
            return None

    async def publish(self, transcript_id: str, body: _Body) -> None:
        if isinstance(body, Transcription) and body.is_final and body.text:
            if not await self.store_final(transcript_id, body):
                return  # refused: nobody hears of a final that is not stored
        elif transcript_id in self._stale:
            return  # this node lost the transcript: what its old stream still says is not the transcript's
        message = envelope(body)
        if not _ends_transcript(message) or not self._subs.get(transcript_id):
            await self.broker.publish(transcript_id, message)
            return
        # this node's subscribers get the stored finals they missed first (see _deliver), here before the end
        # goes out: a server that stops right after it (its shutdown completing every stream) still tells them
        await self._catch_up_before_end(transcript_id)
        self._ending_here.add(transcript_id)
        try:
            await self.broker.publish(transcript_id, message)
        finally:
            self._ending_here.discard(transcript_id)

    async def store_final(self, transcript_id: str, msg: Transcription) -> bool:
        """Store a final without telling anyone: the stored form after the end-of-stream speaker pass (re-cut at
        turns, relabelled), which subscribers already heard as one final and ``diarization`` corrections. While
        the database is away it waits for it (the final's audio is on disk; its subscribers hear it once stored).

        False when the database refused it: the transcript's live stream on this node is fenced out (see
        :meth:`fence`), and :attr:`on_stale` was told."""
        row = segment_row(msg)
        fence = self._fences.get(transcript_id)
        try:
            await until_stored(f"final {msg.segment_id} of {transcript_id}",
                               lambda: self.store.save_segment(transcript_id, row, fence=fence))
        except StaleFence:
            self.refused(transcript_id)
            return False
        return True

    def fence(self, transcript_id: str, fence: int | None) -> None:
        """The fence this node's live stream of the transcript writes with (``Store.take_live``), or None once it
        ended: every final stored through the hub carries it."""
        self._stale.discard(transcript_id)
        if fence is None:
            self._fences.pop(transcript_id, None)
        else:
            self._fences[transcript_id] = fence

    def fence_of(self, transcript_id: str) -> int | None:
        return self._fences.get(transcript_id)

    def refused_for(self, transcript_id: str) -> bool:
        """Whether the database refused this node's fence of the transcript (see :meth:`refused`)."""
        return transcript_id in self._stale

    def refused(self, transcript_id: str) -> None:
        """The database refused a write of this node's stream of the transcript: from now on nothing of that
        stream reaches subscribers, and :attr:`on_stale` ends it."""
        if transcript_id in self._stale:
            return
        self._stale.add(transcript_id)
        self.on_stale(transcript_id)

    def hand_over(self, transcript_id: str) -> None:
        """Another node serves the transcript now: each subscriber here is closed with "moved", to reconnect."""
        for sub in list(self._subs.get(transcript_id, ())):
            sub.close(moved=True)

    def forget(self, transcript_id: str) -> None:
        self.broker.forget(transcript_id)
        for sub in list(self._subs.get(transcript_id, ())):
            sub.close()

    def _deliver(self, transcript_id: str, message: dict[str, Any]) -> None:
        if self._subs.get(transcript_id) and _ends_transcript(message) and transcript_id not in self._ending_here:
            # another node's end: the stream's node may have died with finals stored but still queued for the
            # broker (or the sweep finished it there): subscribers here get every stored final they missed first
            task = asyncio.get_running_loop().create_task(self._deliver_end(transcript_id, message))
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)
            return
        self._put(transcript_id, message)

    def _put(self, transcript_id: str, message: dict[str, Any]) -> None:
        for sub in list(self._subs.get(transcript_id, ())):
            sub.put(message)

    async def _deliver_end(self, transcript_id: str, message: dict[str, Any]) -> None:
        await self._catch_up_before_end(transcript_id)
        self._put(transcript_id, message)

    async def _catch_up_before_end(self, transcript_id: str) -> None:
        try:
            await self._catch_up(transcript_id)
        except Exception as exc:  # the database away: the end still goes out
            log.warning("transcript %s: stored finals could not be read before its end: %s", transcript_id, exc)

    async def _catch_up(self, transcript_id: str) -> None:
        """Finals this node's subscribers may have missed (another node's messages lost while Redis was away):
        every final is stored before it is published, so each subscriber gets the stored ones it was not handed.
        A subscriber that sent the stored history itself skips those again by segment id, as it does live ones."""
        if not self._subs.get(transcript_id):
            return
        for row in await self.store.get_segments(transcript_id):
            if not (row.get("text") or "").strip():
                continue
            message = envelope(stored_message(row))
            whole = _piece_of(row["id"])
            for sub in list(self._subs.get(transcript_id, ())):
                # a piece the end-of-stream speaker pass cut from a final the subscriber heard whole is not news
                if row["id"] not in sub.finals and whole not in sub.finals:
                    sub.put(message)


def _ends_transcript(message: dict[str, Any]) -> bool:
    """Whether ``message`` tells a transcript's end (completed or failed; a stream's own end goes to its client
    alone, never through the hub)."""
    if message.get("type") != "status":
        return False
    data = message.get("data") or {}
    return data.get("status") in ("completed", "failed") and data.get("participant_id") is None


def _piece_of(segment_id: str) -> str | None:
    """The final a stored piece was cut from (``<id>-<k>``, k >= 2: see ``LiveSpeakers``), or None."""
    whole, dash, k = segment_id.rpartition("-")
    return whole if dash and whole and k.isdigit() and int(k) >= 2 else None
