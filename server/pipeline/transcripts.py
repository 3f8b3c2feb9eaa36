"""Live transcripts: the publishers of one transcript on one clock, and the registry of those that are live."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from media import DecodeError
from protocol import ErrorCode, ProtocolError, StartParams, Status
from protocol.messages import participant_key
from server.pipeline import lifecycle
from server.pipeline.channels import SplitStream
from server.pipeline.disk_full import is_storage_full, storage_full_error
from server.pipeline.publisher import Publisher, Tell
from server.storage import StaleFence
from server.storage.outage import until_stored

if TYPE_CHECKING:
    from server.pipeline.admission import Caller
    from server.pipeline.hub import Hub, Subscriber
    from server.pipeline.parts import LiveParts

log = logging.getLogger("voxlane.live")


class LiveTranscript:
    def __init__(self, services: LiveParts, registry: LiveRegistry, transcript_id: str) -> None:
        self.services = services
        self.registry = registry
        self.id = transcript_id
        self.publishers: set[Publisher] = set()
        self.origin: float | None = None  # monotonic time of transcript t=0, for late participants
        self.duration_lock = asyncio.Lock()  # publishers ending together: the longest end is kept
        self.opening = 0  # starts under way: the registry keeps the transcript while one may still add a publisher
        self.fence: int | None = None  # what this node's streams of it write with (Store.take_live)
        self.fenced_out = False  # the database refused that fence: another node took the transcript over

    async def add_publisher(self, params: StartParams, offset: float | None = None,
                            tell: Tell | None = None) -> Publisher:
        """A new stream; ``offset`` (a participant's place on the transcript clock) defaults to now; ``tell``
        reaches the client that publishes it (its ``receiving audio`` and its own ``completed``). A start that
        is refused leaves no empty transcript in the registry: the Realtime and Deepgram sessions refused at
        admission each left one behind for good (240 after 400 sessions with audio, while admission warmed up)."""
        self.opening += 1
        try:
            return await self._add_publisher(params, offset, tell)
        finally:
            self.opening -= 1
            self.registry.drop(self)  # kept while it streams or another start is under way

    async def _add_publisher(self, params: StartParams, offset: float | None, tell: Tell | None) -> Publisher:
        if params.split_channels:  # one participant publisher per channel, fed by one decoder
            return await SplitStream.open(self, params, tell)  # type: ignore[return-value]
        if params.participant is None and any(p.participant_id is None for p in self.publishers):
            raise ProtocolError(ErrorCode.ALREADY_STARTED,
                                "this transcript already has an anonymous publisher; send 'participant' to add"
                                " another stream")
        if params.participant is not None and any(participant_key(p.participant_id) == participant_key(
                params.participant.id) for p in self.publishers):
            raise ProtocolError(ErrorCode.ALREADY_STARTED,
                                f"participant {params.participant.id!r} is already streaming to this transcript")
        if not self.services.role.live:
            raise ProtocolError(ErrorCode.OVERLOADED, "this node takes no live audio (VOXLANE_LIVE=off): connect"
                                " through the address that routes live streams", {"reason": "not_a_live_node",
                                                                                  "retry_after_s": 0})
        admission = self.services.admission
        stream = uuid.uuid4().hex  # this stream's slot in the per-caller caps
        # OVERLOADED / RATE_LIMITED
        caller = await admission.admit_live(stream, transcript=self.id) if admission is not None else None
        first = not self.publishers
        if first:  # this node streams the transcript now; another node that does refuses (ALREADY_STARTED)
            try:
                await self.services.leases.acquire(self.id)
            except BaseException:
                if admission is not None:
                    await admission.release(stream)
                raise
        try:
            return await self._open_publisher(params, offset, caller, stream, tell)
        except BaseException:
            if admission is not None:
                await admission.release(stream)
            if first and not self.publishers:
                await self.services.leases.release(self.id)
            raise

    async def _with_stored_key_terms(self, params: StartParams) -> StartParams:
        """A stream that names no key terms takes its transcript's (``meta.key_terms``: a meeting room's)."""
        if params.key_terms:
            return params
        row = await self.services.store.get_transcript(self.id)
        stored = ((row or {}).get("meta") or {}).get("key_terms")
        if not stored:
            return params
        try:
            return StartParams.model_validate({**params.model_dump(), "key_terms": stored})
        except ValidationError:  # a room's terms are checked when the room is saved; an old row is not trusted
            log.warning("transcript %s: its stored key terms are not valid and are not used", self.id)
            return params

    async def _open_publisher(self, params: StartParams, offset: float | None, caller: Caller | None,
                              slot: str, tell: Tell | None) -> Publisher:
        now = time.monotonic()
        pad_to: float | None = None
        orphaned = False
        if self.origin is None:
            existing, orphaned = await self._stored_end()
            self.origin = now - existing
            if params.participant is None:  # the recording is the transcript's timeline
                pad_to = existing
        if params.participant is None:
            offset = 0.0
        elif offset is None:
            offset = max(0.0, now - self.origin)
        params = await self._with_stored_key_terms(params)
        try:
            pub = await Publisher.open(self, params, offset if params.participant else 0.0, tell, pad_to=pad_to,
                                       pad_empty=orphaned)
        except DecodeError as exc:
            raise ProtocolError(ErrorCode.AUDIO_FORMAT_ERROR, str(exc), {"format": params.format}) from None
        except OSError as exc:  # no room for the recording file: nothing was started
            if not is_storage_full(exc):
                raise
            raise storage_full_error("no room to record this stream") from None
        if params.participant is not None:
            pub.session.offset = offset  # participant files hold only their own audio
        pub.caller = caller
        pub.slot = slot
        self.publishers.add(pub)
        if self.services.admission is not None:  # counted as a publisher from here on, no longer as opening
            self.services.admission.opened(slot)
        try:
            await self._announce(pub, params, offset)
        except BaseException:
            # its client left (the session's worker cancelled) or a store call failed while it started: registered
            # now, it must finish like any other, or it streams for good (its transcript never completed, its slot
            # held: under VOXLANE_MAX_LIVE_STREAMS=1 every later stream was refused). Shielded: a second cancel
            # does not stop the flush half-way.
            await asyncio.shield(pub.finish())
            raise
        return pub

    async def _announce(self, pub: Publisher, params: StartParams, offset: float) -> None:
        """What a registered publisher tells before its audio: the transcript is live, it joined."""
        if len(self.publishers) == 1:
            self.fence = await self.services.store.take_live(self.id)
            self.fenced_out = False
            self.services.hub.fence(self.id, self.fence)
            await self.services.hub.publish(self.id, Status(status="processing", stage="live",
                                                            message="live transcription started"))
        await pub.begin()
        if params.participant is not None:  # who joined, and when: the meeting-style downloads read it
            await self.record_event({"type": "join", "participant_id": pub.participant_id, "data": {},
                                     "participant": params.participant.model_dump(mode="json"),
                                     "time": round(offset, 3)})

    async def record_event(self, event: dict) -> None:
        if self.fenced_out:
            return
        try:
            await until_stored(f"an event of {self.id}", lambda: lifecycle.record_event(
                self.services, self.id, event, fence=self.fence))
        except StaleFence:
            self.taken_over()

    def taken_over(self) -> None:
        """The database refused this node's fence: another node started a stream of the transcript, or finished
        it as a dead node's, while this node was stalled or cut off from Redis past its lease. Every stream of it
        here ends without writing anything more (its late finals would interleave with the new owner's), and
        each client here is told to reconnect: through the load balancer it reaches the node that serves the
        transcript now."""
        if self.fenced_out:
            return
        self.fenced_out = True
        self.registry.fenced_out += 1
        log.warning("transcript %s: another node took it over while this node streamed it (fence %s); ending %d"
                    " stream(s) here, their clients told to reconnect", self.id, self.fence, len(self.publishers))
        self.services.hub.refused(self.id)  # nothing more of these streams reaches subscribers
        error = ProtocolError(ErrorCode.TRANSCRIPT_MOVED, "another node serves this transcript now (this one was"
                              " stalled or cut off past its lease): reconnect to go on; the finals stored so far"
                              " stay", {"reason": "taken_over"})
        for pub in list(self.publishers):
            pub.tell(error.to_message())
        self.services.hub.hand_over(self.id)
        for pub in list(self.publishers):
            pub.end_soon()

    async def _stored_end(self) -> tuple[float, bool]:
        """Where the transcript's stored timeline ends, and whether a stream left it ``live`` (its node died,
        or is cut off: this start takes it over). Its duration is stored when a stream ends; a stream that never
        ended stored only its finals, so they count too."""
        row = await self.services.store.get_transcript(self.id)
        if row is None:
            return 0.0, False
        end = float(row.get("duration") or 0.0)
        orphaned = row["status"] == "live" and not self.publishers
        if orphaned:
            end = max([end, *(float(s["end"]) for s in await self.services.store.get_segments(self.id))])
        return end, orphaned

    async def publisher_done(self, pub: Publisher) -> None:
        """The stream's finals are stored and sent: its client is told ``completed`` (after the transcript's own
        completion when it was the last stream), and the other subscribers that it finished."""
        self.publishers.discard(pub)
        if pub.slot is not None and self.services.admission is not None:
            await self.services.admission.release(pub.slot)
        last = not self.publishers  # decided before any await: publishers finishing together complete it once
        end = pub.session.offset + pub.session.received
        if self.fenced_out:  # the transcript is another node's now: nothing of this stream is written
            if last:
                await self._let_go()
            return
        async with self.duration_lock:
            row = await until_stored(f"the end of a stream of {self.id}", lambda: self.services.store.get_transcript(
                self.id))
            duration = max(float((row or {}).get("duration") or 0.0), end)
            if not last:
                try:
                    await until_stored(f"the duration of {self.id}", lambda: self.services.store.update_transcript(
                        self.id, duration=round(duration, 3), fence=self.fence))
                except StaleFence:
                    self.taken_over()
                    return
        if pub.participant_id is not None:
            await self.record_event({"type": "leave", "participant_id": pub.participant_id, "data": {},
                                     "time": round(end, 3)})
        if last:
            await self._complete(duration)
        else:  # the transcript goes on: a status of the stream, not ``completed``, which means the transcript's end
            await self.services.hub.publish(self.id, pub.status_body("processing", "live", "stream finished"))
        pub.tell(pub.status_body("completed", "transcription", "stream finished"))

    async def _complete(self, duration: float) -> None:
        if self.fenced_out or self.services.leases.lost(self.id):  # another node has it (or finished it)
            await self._let_go()
            return
        try:
            # with the fence: a node that lost the transcript unnoticed completes nothing (False, not an error)
            await until_stored(f"the completion of {self.id}", lambda: lifecycle.complete(
                self.services, self.id, duration=duration, message="transcript complete", fence=self.fence))
        finally:
            await self._let_go()  # after the completion: no node ever sees it live without an owner

    async def _let_go(self) -> None:
        """The last stream here ended: the registry, the hub and the lease forget this node's hold on it."""
        self.registry.drop(self)
        if self.registry.find(self.id) is None:  # no new stream of it here already
            self.services.hub.fence(self.id, None)
        await self.services.leases.release(self.id)


class LiveRegistry:
    def __init__(self, services: LiveParts) -> None:
        self.services = services
        self._live: dict[str, LiveTranscript] = {}
        self.fenced_out = 0  # transcripts whose streams here the database refused, since the start (/metrics)
        services.hub.on_stale = self.taken_over

    def taken_over(self, transcript_id: str) -> None:
        """Another node has the transcript now (the hub's store of a final was refused, or the lease lapsed
        to another node): its streams here end, their clients told to reconnect."""
        live = self._live.get(transcript_id)
        if live is not None:
            live.taken_over()

    async def check_fences(self) -> None:
        """Every transcript this node streams whose fence another node has moved on is taken over: a stream
        that stores nothing for a while (a pause, a node cut off from Redis) learns it here, at the lease
        renewals' pace, rather than at its next final."""
        held = {tid: live.fence for tid, live in list(self._live.items())
                if live.fence is not None and live.publishers and not live.fenced_out}
        if not held:
            return
        now = await self.services.store.live_fences(list(held))
        for tid, fence in held.items():
            if tid in now and now[tid] != fence:
                self.taken_over(tid)

    def get(self, transcript_id: str) -> LiveTranscript:
        live = self._live.get(transcript_id)
        if live is None:
            live = self._live[transcript_id] = LiveTranscript(self.services, self, transcript_id)
        return live

    def find(self, transcript_id: str) -> LiveTranscript | None:
        return self._live.get(transcript_id)

    def streams(self, transcript_id: str) -> bool:
        """Whether this node streams the transcript now (a start that was refused leaves no stream)."""
        live = self._live.get(transcript_id)
        return live is not None and bool(live.publishers)

    def publishers(self) -> list[Publisher]:
        """Every live stream of every transcript (admission control counts them)."""
        return [p for live in list(self._live.values()) for p in list(live.publishers)]

    def drop(self, live: LiveTranscript) -> None:
        """Forget ``live`` unless it streams or a start on it is still under way (which would be orphaned)."""
        if self._live.get(live.id) is live and not live.publishers and not live.opening:
            del self._live[live.id]

    async def until_left(self, transcript_id: str, pub: Publisher, within: float) -> None:
        """Until ``pub`` has left its transcript (flushed: its finals stored and sent) or ``within`` seconds: a
        session that starts its next stream after one ended for idleness keeps the finals in order."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            live = self._live.get(transcript_id)
            if live is None or pub not in live.publishers:
                return
            await asyncio.sleep(0.05)

    async def discard_unstreamed(self, transcript_id: str) -> None:
        """Delete the transcript a session made on connect if it never streamed (its row still ``created``,
        nothing live here): a session that never appended audio would leave clutter. A start its client left
        half-way still streamed and completed it (its audio is stored), so asking the session whether it kept a
        publisher is not enough."""
        if transcript_id in self._live:
            return
        row = await self.services.store.get_transcript(transcript_id)
        if row is not None and row.get("status") == "created":
            await self.services.store.delete_transcript(transcript_id)
            self.services.hub.forget(transcript_id)

    async def finish_all(self) -> None:
        pubs = [p for live in list(self._live.values()) for p in list(live.publishers)]
        await asyncio.gather(*(p.finish() for p in pubs), return_exceptions=True)


class Watched(Protocol):
    """Where a transcript's status is known: its subscribers' hub, and this node's live streams."""

    hub: Hub
    live: LiveRegistry


def transcript_status(services: Watched, transcript_id: str, sub: Subscriber | None = None) -> Status:
    """The status a newly connected client is told: the last published one (on any node, with Redis), else what is
    known now. With ``sub``: the one as of its read position, so that the status told after the stored history
    and the statuses in its queue follow on, none twice."""
    status = services.hub.current_status(transcript_id, sub)
    if status is not None:
        return status
    live = services.live.find(transcript_id)
    if live and live.publishers:
        return Status(status="processing", stage="live", message="live")
    return Status(status="initializing", stage=None, message="waiting for audio")
