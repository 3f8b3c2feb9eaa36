"""Channel-per-speaker streams: one client stream whose channels are separate people.

A ``start`` with ``split_channels`` decodes the stream once, per channel (no downmix), and feeds each channel to
its own participant ``Publisher`` (``channel-1`` ... named ``Channel 1`` ... unless the client
sent ``channel_names``): each has its own session in the shared inference loop, its own audio file and its
place on the transcript clock, exactly like a meeting bot's participant streams. To the ingest path the group
looks like one publisher (pause, resume, stop and get_status apply to every channel), and its client is told
as one: ``receiving audio`` once every channel is admitted, ``completed`` once every channel's finals are out (a
channel that ends first is no client's cue to stop listening).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from pydantic import BaseModel

from media import DecodeError, make_decoder
from protocol import ErrorCode, Participant, ProtocolError, StartParams, Status
from protocol.messages import StatusValue
from server.pipeline.publisher import Pacer, Publisher, StreamHost, Tell


class GroupHost(StreamHost, Protocol):
    """The transcript a split stream's channels join, each as a participant publisher."""

    async def add_publisher(self, params: StartParams, offset: float | None = None,
                            tell: Tell | None = None) -> Publisher: ...


RAW_CHANNEL = "pcm_f32le"
"""What each channel's publisher is declared as: it is fed decoded 16 kHz samples, never bytes."""


def channel_participants(channels: int, names: list[str] | None = None) -> list[Participant]:
    """``channel-1``/``Channel 1``, ... (a client-given name replaces the default one)."""
    names = names or []
    return [Participant(id=f"channel-{i + 1}", name=names[i] if i < len(names) else f"Channel {i + 1}")
            for i in range(channels)]


class SplitStream:
    """The publisher an ingest path holds for a split stream; it fans the channels out to participant publishers."""

    participant_id = None

    def __init__(self, transcript: GroupHost, params: StartParams, decoder, tell: Tell | None = None) -> None:
        self.transcript = transcript
        self.params = params
        self._tell = tell
        self._decoder = decoder
        self.channels: list[Publisher] = []
        self.paused = False
        self._finished = False
        assert transcript.services.ingest is not None
        self._queue = transcript.services.ingest.queue()  # the group's decoding; each channel takes its own in
        self.pacer = Pacer(transcript.services.settings.max_audio_lead_seconds)

    @classmethod
    async def open(cls, transcript: GroupHost, params: StartParams, tell: Tell | None = None) -> SplitStream:
        try:
            decoder = make_decoder(params.format, params.sample_rate, params.channels, split_channels=True)
        except DecodeError as exc:
            raise ProtocolError(ErrorCode.AUDIO_FORMAT_ERROR, str(exc), {"format": params.format}) from None
        group = cls(transcript, params, decoder, tell)
        offset = None  # every channel starts at the same instant of the transcript clock
        try:
            for who in channel_participants(params.channels, params.channel_names):
                pub = await transcript.add_publisher(StartParams(
                    format=RAW_CHANNEL, sample_rate=16000, channels=1, participant=who, language=params.language,
                    key_terms=params.key_terms, vad_events=params.vad_events),
                    offset=offset)
                offset = pub.session.offset
                group.channels.append(pub)
        except BaseException:
            decoder.close()
            await asyncio.gather(*(p.finish() for p in group.channels), return_exceptions=True)
            raise
        group.tell(group.status_body("processing", "transcription", "receiving audio"))
        return group

    def tell(self, body: BaseModel) -> None:
        """To the client of the group (see :data:`server.pipeline.publisher.Tell`)."""
        if self._tell is not None:
            self._tell(body)

    @property
    def finished(self) -> bool:
        return self._finished or all(p.finished for p in self.channels)

    @property
    def storage_error(self) -> str | None:
        """Why the server ended one of the channels on a full disk, or None: the control path asks it of
        whatever publisher a stream has (a client's stop after such an end agrees with the server)."""
        return next((p.storage_error for p in self.channels if p.storage_error is not None), None)

    # ------------------------------------------------------------ audio in

    async def feed_bytes(self, data: bytes) -> None:
        """One client frame, decoded off the event loop; each channel is then taken in by its publisher, and the
        caller is held while the stream runs beyond its lead on real time (as a single publisher's is)."""
        if self.finished:
            return
        parts = await self._queue.run(self._decode, data)
        await self._fan_out(parts)
        await self.pacer.hold(max((len(p) for p in parts), default=0))

    def _decode(self, data: bytes) -> list:
        """(ingest thread)"""
        try:
            return self._decoder.feed_channels(data)
        except DecodeError as exc:
            raise ProtocolError(ErrorCode.AUDIO_FORMAT_ERROR, str(exc), {"format": self.params.format},
                                recoverable=False) from None

    def _flush(self) -> list:
        """(ingest thread) The decoder's tail, after every frame already accepted."""
        try:
            with contextlib.suppress(DecodeError):
                return self._decoder.flush_channels()
            return []
        finally:
            self._decoder.close()

    async def _fan_out(self, parts) -> None:
        if parts:
            await asyncio.gather(*(pub.feed_pcm(samples) for pub, samples in zip(self.channels, parts, strict=True)))

    async def feed_pcm(self, samples) -> None:
        raise ProtocolError(ErrorCode.AUDIO_FORMAT_ERROR, "a split stream needs its channels: send them as bytes")

    # ------------------------------------------------------------ control

    async def pause(self) -> None:
        self.paused = True
        await asyncio.gather(*(p.pause() for p in self.channels))

    async def resume(self) -> None:
        self.paused = False
        await asyncio.gather(*(p.resume() for p in self.channels))

    async def finish(self) -> None:
        """Flush every channel: their finals are stored, then each one's and the transcript's ``completed``."""
        if self._finished:
            return
        self._finished = True
        try:
            await self._fan_out(await self._queue.run(self._flush))
        finally:
            self._queue.close()
        await asyncio.gather(*(p.finish() for p in self.channels))
        self.tell(self.status_body("completed", "transcription", "stream finished"))

    async def participant_event(self, params) -> None:
        """A bot event for one channel's participant: ``data.participant_id`` names it."""
        pid = (params.data or {}).get("participant_id")
        pub = next((p for p in self.channels if p.participant_id == pid), None)
        if pub is None:
            ids = [p.participant_id for p in self.channels]
            raise ProtocolError(ErrorCode.INVALID_PARAMS, "this stream is split by channel: set data.participant_id"
                                f" to one of {', '.join(str(i) for i in ids)}", {"participant_ids": ids})
        await pub.participant_event(params)

    def status_body(self, status: StatusValue, stage: str | None, message: str) -> Status:
        lag = max((p.session.lag_seconds for p in self.channels), default=0.0)
        load = self.transcript.services.load
        return Status(status=status, stage=stage, message=message, lag_seconds=round(lag, 3),
                      shedding=(load.shedding or None) if load is not None else None)

    async def publish_status(self, status: StatusValue, stage: str | None, message: str) -> None:
        await self.transcript.services.hub.publish(self.transcript.id, self.status_body(status, stage, message))
