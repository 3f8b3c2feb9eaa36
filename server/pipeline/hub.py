"""The hub: the only way an event reaches the outside.

``publish`` stores a final segment before anyone hears of it, remembers the
transcript's current status for late joiners, and hands the message to the
broker, which delivers it to every subscriber of the transcript (in-process
here; a Redis broker fans out across nodes behind the same interface).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from protocol import Status, Transcription, envelope
from protocol.messages import _Body
from server.fanout import Broker, LocalBroker
from server.pipeline.convert import segment_row
from server.storage import Store

log = logging.getLogger("voxlane.hub")


class Subscriber:
    """One listener's queue. A reader too slow to keep up is cut off, never waited for."""

    def __init__(self, transcript_id: str, maxsize: int = 2000) -> None:
        self.transcript_id = transcript_id
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize)
        self.overflowed = False

    def put(self, message: dict[str, Any]) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("subscriber of %s fell behind; disconnecting it", self.transcript_id)
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)  # tells the reader to close

    def close(self) -> None:
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            pass


class Hub:
    def __init__(self, store: Store, broker: Broker | None = None) -> None:
        self.store = store
        self.broker = broker or LocalBroker()
        self.broker.attach(self._deliver)
        self._subs: dict[str, set[Subscriber]] = defaultdict(set)
        self._status: dict[str, Status] = {}

    def subscribe(self, transcript_id: str) -> Subscriber:
        sub = Subscriber(transcript_id)
        self._subs[transcript_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.transcript_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.transcript_id]

    def subscriber_count(self, transcript_id: str) -> int:
        return len(self._subs.get(transcript_id, ()))

    def current_status(self, transcript_id: str) -> Status | None:
        return self._status.get(transcript_id)

    async def publish(self, transcript_id: str, body: _Body) -> None:
        if isinstance(body, Transcription) and body.is_final and body.text:
            await self.store_final(transcript_id, body)
        if isinstance(body, Status) and body.participant_id is None:
            self._status[transcript_id] = body
        await self.broker.publish(transcript_id, envelope(body))

    async def store_final(self, transcript_id: str, msg: Transcription) -> None:
        """Store a final without telling anyone: the stored form after the end-of-stream speaker pass (re-cut at
        turns, relabelled), which subscribers already heard as one final and ``diarization`` corrections."""
        await self.store.save_segment(transcript_id, segment_row(msg))

    def forget(self, transcript_id: str) -> None:
        self._status.pop(transcript_id, None)
        for sub in list(self._subs.get(transcript_id, ())):
            sub.close()

    def _deliver(self, transcript_id: str, message: dict[str, Any]) -> None:
        for sub in list(self._subs.get(transcript_id, ())):
            sub.put(message)
