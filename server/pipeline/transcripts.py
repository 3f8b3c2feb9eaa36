"""Live transcripts: the publishers of one transcript on one clock, and the registry of those that are live."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from media import DecodeError
from protocol import ErrorCode, ProtocolError, StartParams, Status
from protocol.messages import participant_key
from server.pipeline import lifecycle
from server.pipeline.channels import SplitStream
from server.pipeline.disk_full import is_storage_full, storage_full_error
from server.pipeline.publisher import Publisher

if TYPE_CHECKING:
    from server.services import Services


class LiveTranscript:
    def __init__(self, services: Services, transcript_id: str) -> None:
        self.services = services
        self.id = transcript_id
        self.publishers: set[Publisher] = set()
        self.origin: float | None = None  # monotonic time of transcript t=0, for late participants
        self.duration_lock = asyncio.Lock()  # publishers ending together: the longest end is kept

    async def add_publisher(self, params: StartParams, offset: float | None = None) -> Publisher:
        """A new stream; ``offset`` (a participant's place on the transcript clock) defaults to now."""
        if params.split_channels:  # one participant publisher per channel, fed by one decoder
            return await SplitStream.open(self, params)  # type: ignore[return-value]
        if params.participant is None and any(p.participant_id is None for p in self.publishers):
            raise ProtocolError(ErrorCode.ALREADY_STARTED,
                                "this transcript already has an anonymous publisher; send 'participant' to add"
                                " another stream")
        if params.participant is not None and any(participant_key(p.participant_id) == participant_key(
                params.participant.id) for p in self.publishers):
            raise ProtocolError(ErrorCode.ALREADY_STARTED,
                                f"participant {params.participant.id!r} is already streaming to this transcript")
        admission = self.services.admission
        caller = admission.admit_live() if admission is not None else None  # OVERLOADED / RATE_LIMITED
        now = time.monotonic()
        if self.origin is None:
            existing = await self._recorded_duration()
            self.origin = now - existing
        if params.participant is None:
            offset = 0.0
        elif offset is None:
            offset = max(0.0, now - self.origin)
        try:
            pub = Publisher(self, params, offset if params.participant else 0.0)
        except DecodeError as exc:
            raise ProtocolError(ErrorCode.AUDIO_FORMAT_ERROR, str(exc), {"format": params.format}) from None
        except OSError as exc:  # no room for the recording file: nothing was started
            if not is_storage_full(exc):
                raise
            raise storage_full_error("no room to record this stream") from None
        if params.participant is not None:
            pub.session.offset = offset  # participant files hold only their own audio
        pub.caller = caller
        self.publishers.add(pub)
        if len(self.publishers) == 1:
            await self.services.store.update_transcript(self.id, status="live")
            await self.services.hub.publish(self.id, Status(status="processing", stage="live",
                                                            message="live transcription started"))
        await pub.begin()
        if params.participant is not None:  # who joined, and when: the meeting-style downloads read it
            await self.record_event({"type": "join", "participant_id": pub.participant_id, "data": {},
                                     "participant": params.participant.model_dump(mode="json"),
                                     "time": round(offset, 3)})
        return pub

    async def record_event(self, event: dict) -> None:
        await lifecycle.record_event(self.services, self.id, event)

    async def _recorded_duration(self) -> float:
        row = await self.services.store.get_transcript(self.id)
        return float(row.get("duration") or 0.0) if row else 0.0

    async def publisher_done(self, pub: Publisher) -> None:
        self.publishers.discard(pub)
        last = not self.publishers  # decided before any await: publishers finishing together complete it once
        end = pub.session.offset + pub.session.received
        async with self.duration_lock:
            row = await self.services.store.get_transcript(self.id)
            duration = max(float((row or {}).get("duration") or 0.0), end)
            if not last:
                await self.services.store.update_transcript(self.id, duration=round(duration, 3))
        await self.services.hub.publish(self.id, pub.status_body("completed", "transcription", "stream finished"))
        if pub.participant_id is not None:
            await self.record_event({"type": "leave", "participant_id": pub.participant_id, "data": {},
                                     "time": round(end, 3)})
        if last:
            self.services.live.drop(self)
            await lifecycle.complete(self.services, self.id, duration=duration, message="transcript complete")


class LiveRegistry:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._live: dict[str, LiveTranscript] = {}

    def get(self, transcript_id: str) -> LiveTranscript:
        live = self._live.get(transcript_id)
        if live is None:
            live = self._live[transcript_id] = LiveTranscript(self.services, transcript_id)
        return live

    def find(self, transcript_id: str) -> LiveTranscript | None:
        return self._live.get(transcript_id)

    def publishers(self) -> list[Publisher]:
        """Every live stream of every transcript (admission control counts them)."""
        return [p for live in list(self._live.values()) for p in list(live.publishers)]

    def drop(self, live: LiveTranscript) -> None:
        if self._live.get(live.id) is live and not live.publishers:
            del self._live[live.id]

    async def finish_all(self) -> None:
        pubs = [p for live in list(self._live.values()) for p in list(live.publishers)]
        await asyncio.gather(*(p.finish() for p in pubs), return_exceptions=True)


def transcript_status(services: Services, transcript_id: str) -> Status:
    """The status a newly connected client is told: the last published one, else what is known now."""
    status = services.hub.current_status(transcript_id)
    if status is not None:
        return status
    live = services.live.find(transcript_id)
    if live and live.publishers:
        return Status(status="processing", stage="live", message="live")
    return Status(status="initializing", stage=None, message="waiting for audio")
