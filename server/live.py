"""Live transcripts and their publishers: the one session pipeline every ingest path feeds.

A publisher is one incoming audio stream (a WebSocket client after ``start``, a
WebRTC track, an upload). It decodes to 16 kHz mono, appends to the transcript's
recording on disk, and drives a :class:`StreamSession`; finals are synced to
disk and stored before subscribers hear them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from asr.diarization import DiarizationConfig
from asr.inference import InferenceLoop, Priority
from asr.session import StreamConfig, StreamSession
from asr.vad import SileroModel, VadConfig
from media import DecodeError, WavAppender, make_decoder
from protocol import ErrorCode, ProtocolError, StartParams, Status, Transcription, parse_client_message
from protocol.messages import _Body
from server.hub import Hub, segment_row
from server.live_speakers import LiveSpeakers, SpeakerWorker
from server.settings import Settings
from server.storage import Store
from server.summaries import summarize_transcript
from server.webhooks import Dispatcher, transcript_completed

log = logging.getLogger("voxlane.live")
RECORDING = "recording.wav"


def stream_config(settings: Settings, priority: Priority = Priority.PARTIAL) -> StreamConfig:
    min_silence = settings.vad_min_silence_ms / 1000  # a pause shorter than this keeps the utterance going
    return StreamConfig(
        vad=VadConfig(threshold=settings.vad_threshold, neg_threshold=max(0.05, settings.vad_threshold - 0.25),
                      resume_within_s=min_silence),
        min_silence_s=min_silence,
        pause_commit_s=settings.pause_commit_ms / 1000,
        pause_settle_s=settings.pause_settle_ms / 1000,
        pause_commit_confidence=settings.pause_commit_confidence,
        min_step_s=settings.min_step_ms / 1000,
        first_step_s=settings.first_step_ms / 1000,
        max_segment_s=settings.max_segment_seconds,
        trim_s=settings.window_seconds,
        language=settings.language,
        priority=priority,
    )


def diarization_config(settings: Settings) -> DiarizationConfig:
    return DiarizationConfig(max_speakers=settings.max_speakers, cluster_threshold=settings.speaker_threshold)


def live_speakers(services: Services, transcript_id: str, offset: float) -> LiveSpeakers:
    """Diarization of one mixed stream of ``transcript_id`` (live or a file), starting at ``offset``."""
    return LiveSpeakers(
        worker=services.speaker_worker, vad_model=services.vad_model, config=diarization_config(services.settings),
        offset=offset, publish=lambda body: services.hub.publish(transcript_id, body),
        save_segment=lambda msg: services.store.save_segment(transcript_id, segment_row(msg)))


async def settle_speakers(services: Services, transcript_id: str, speakers: LiveSpeakers,
                          lock: asyncio.Lock | None = None) -> None:
    """The end-of-stream pass, then its turns stored with the transcript. Labels are an extra: a failure
    is logged and never keeps a transcript from completing."""
    try:
        turns = await speakers.finish()
        async with lock or contextlib.nullcontext():
            await merge_meta(services.store, transcript_id, "diarization", {"turns": turns, "pass": "offline"})
    except Exception:
        log.exception("diarization of transcript %s failed at the end of the stream", transcript_id)


async def merge_meta(store: Store, transcript_id: str, key: str, value) -> None:
    row = await store.get_transcript(transcript_id)
    if row is not None:
        await store.update_transcript(transcript_id, meta={**(row.get("meta") or {}), key: value})


def audio_file_name(participant_id: str | None) -> str:
    if not participant_id:
        return RECORDING
    return "participant-" + re.sub(r"[^A-Za-z0-9_.-]", "_", participant_id)[:80] + ".wav"


@dataclass
class Services:
    """Everything a request handler may need; built once by the app's lifespan."""

    settings: Settings
    store: Store
    hub: Hub
    engine: InferenceLoop
    vad_model: SileroModel
    webhooks: Dispatcher | None = None
    live: LiveRegistry = field(init=False)
    speaker_worker: SpeakerWorker = field(init=False)

    def __post_init__(self) -> None:
        self.live = LiveRegistry(self)
        self.speaker_worker = SpeakerWorker(device=self.settings.device)

    def audio_dir(self, transcript_id: str) -> Path:
        return self.settings.data_path / "audio" / transcript_id


class Publisher:
    def __init__(self, transcript: LiveTranscript, params: StartParams, offset: float) -> None:
        self.transcript = transcript
        self.params = params
        services = transcript.services
        participant = params.participant
        self.participant_id = participant.id if participant else None
        self.speaker = (participant.name or participant.id) if participant else None
        self._decoder = make_decoder(params.format, params.sample_rate, params.channels)
        path = services.audio_dir(transcript.id) / audio_file_name(self.participant_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.wav = WavAppender(path)
        self._publish = functools.partial(services.hub.publish, transcript.id)  # to every subscriber
        self.session = StreamSession(
            engine=services.engine, vad_model=services.vad_model, emit=self._emit,
            config=stream_config(services.settings), offset=offset + self.wav.duration,
            speaker=self.speaker, participant_id=self.participant_id, report=self._publish)
        self.speakers: LiveSpeakers | None = None  # one mixed stream of several voices: diarize it
        wanted = params.diarization if params.diarization is not None else services.settings.diarization == "on"
        if participant is None and wanted:
            self.speakers = live_speakers(services, transcript.id, self.session.offset)
            self.session.listener = self.speakers  # it follows the session's audio and VAD
        self._deliver = self.speakers.relay(self._publish) if self.speakers is not None else self._publish
        self.paused = False
        self.finished = False
        self.started_at = time.monotonic()
        self._status_task: asyncio.Task | None = None

    async def begin(self) -> None:
        self.session.start()
        interval = self.transcript.services.settings.status_interval
        if interval > 0:
            self._status_task = asyncio.create_task(self._report_lag(interval))
        await self.publish_status("processing", "transcription", "receiving audio")

    # ------------------------------------------------------------ audio in

    def feed_bytes(self, data: bytes) -> None:
        try:
            samples = self._decoder.feed(data)
        except DecodeError as exc:
            raise ProtocolError(ErrorCode.AUDIO_FORMAT_ERROR, str(exc),
                                {"format": self.params.format}, recoverable=False) from None
        self.feed_pcm(samples)

    def feed_pcm(self, samples: np.ndarray) -> None:
        if self.finished or len(samples) == 0:
            return
        self.wav.append(samples)  # stored even while paused
        self.session.feed(samples)

    # ------------------------------------------------------------ control

    async def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.session.pause()
            await self.publish_status("paused", "transcription", "paused: audio is stored, not transcribed")

    async def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.session.resume()
            await self.publish_status("processing", "transcription", "resumed")

    async def finish(self) -> None:
        """Flush everything (stop, or a publisher that vanished): finals stored, then ``completed``."""
        if self.finished:
            return
        self.finished = True
        with contextlib.suppress(DecodeError):
            tail = self._decoder.flush()
            if len(tail):
                self.wav.append(tail)
                self.session.feed(tail)
        self._decoder.close()
        await self.session.finish()
        if self.speakers is not None:  # the offline pass: every window heard, clustered once more
            await settle_speakers(self.transcript.services, self.transcript.id, self.speakers,
                                  self.transcript.meta_lock)
        if self._status_task is not None:
            self._status_task.cancel()
        await asyncio.to_thread(self.wav.close)
        await self.transcript.publisher_done(self)

    async def participant_event(self, params) -> None:
        """Record a bot-reported event (chat_message, webcam_on, ...) on the transcript's timeline."""
        event = {"type": params.type, "participant_id": self.participant_id, "data": params.data,
                 "time": round(self.session.offset + self.session.received, 3)}
        await self.transcript.record_event(event)

    def status_body(self, status: str, stage: str | None, message: str) -> Status:
        return Status(status=status, stage=stage, message=message, participant_id=self.participant_id,
                      lag_seconds=round(self.session.lag_seconds, 3))

    async def publish_status(self, status: str, stage: str | None, message: str) -> None:
        await self._publish(self.status_body(status, stage, message))

    # ------------------------------------------------------------ events out

    async def _emit(self, msg: Transcription) -> None:
        if msg.is_final:
            await asyncio.to_thread(self.wav.sync)  # the audio behind a final is on disk before it is sent
        await self._deliver(msg)

    async def _report_lag(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self.paused:
                await self.publish_status("processing", "transcription", "live")


class LiveTranscript:
    def __init__(self, services: Services, transcript_id: str) -> None:
        self.services = services
        self.id = transcript_id
        self.publishers: set[Publisher] = set()
        self.origin: float | None = None  # monotonic time of transcript t=0, for late participants
        self.meta_lock = asyncio.Lock()  # concurrent publishers update one transcript row

    async def add_publisher(self, params: StartParams, offset: float | None = None) -> Publisher:
        """A new stream; ``offset`` (a participant's place on the transcript clock) defaults to now."""
        if params.split_channels:  # one participant publisher per channel, fed by one decoder
            from server.channels import SplitStream  # it builds on Publisher: keep the import cycle lazy
            return await SplitStream.open(self, params)  # type: ignore[return-value]
        if params.participant is None and any(p.participant_id is None for p in self.publishers):
            raise ProtocolError(ErrorCode.ALREADY_STARTED,
                                "this transcript already has an anonymous publisher; send 'participant' to add"
                                " another stream")
        if params.participant is not None and any(p.participant_id == params.participant.id for p in self.publishers):
            raise ProtocolError(ErrorCode.ALREADY_STARTED,
                                f"participant {params.participant.id!r} is already streaming to this transcript")
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
        if params.participant is not None:
            pub.session.offset = offset  # participant files hold only their own audio
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
        store = self.services.store
        async with self.meta_lock:
            row = await store.get_transcript(self.id)
            if row is not None:
                meta = dict(row.get("meta") or {})
                meta.setdefault("participant_events", []).append(event)
                await store.update_transcript(self.id, meta=meta)

    async def _recorded_duration(self) -> float:
        row = await self.services.store.get_transcript(self.id)
        return float(row.get("duration") or 0.0) if row else 0.0

    async def publisher_done(self, pub: Publisher) -> None:
        self.publishers.discard(pub)
        last = not self.publishers  # decided before any await: publishers finishing together complete it once
        end = pub.session.offset + pub.session.received
        async with self.meta_lock:
            row = await self.services.store.get_transcript(self.id)
            duration = max(float((row or {}).get("duration") or 0.0), end)
            if not last:
                await self.services.store.update_transcript(self.id, duration=round(duration, 3))
        await self.services.hub.publish(self.id, pub.status_body("completed", "transcription", "stream finished"))
        if pub.participant_id is not None:
            await self.record_event({"type": "leave", "participant_id": pub.participant_id, "data": {},
                                     "time": round(end, 3)})
        if last:
            await self.services.store.update_transcript(self.id, status="completed", duration=round(duration, 3))
            await self.services.hub.publish(self.id, Status(status="completed", stage="transcription",
                                                            progress=100.0, message="transcript complete"))
            await transcript_completed(self.services, self.id)
            self.services.live.drop(self)
            await summarize_transcript(self.services, self.id)  # in the background: never delays `completed`


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


class ControlChannel(Protocol):
    """What an ingest path (WebSocket, WebRTC data channel) offers the shared control semantics."""

    publisher: Publisher | None
    declares_format: bool  # False where the codec, not ``start``, describes the audio (WebRTC)

    async def start_publisher(self, params: StartParams | None) -> None: ...

    async def stop_publisher(self, publisher: Publisher) -> None: ...

    def reply(self, body: _Body) -> None: ...

    def status(self) -> Status: ...


async def apply_control(channel: ControlChannel, raw: str | bytes) -> None:
    """One client action, with the same meaning on every ingest path; raises ProtocolError to answer."""
    msg = parse_client_message(raw)
    action = msg.action  # type: ignore[attr-defined]
    pub = channel.publisher
    active = pub is not None and not pub.finished
    if action == "start":
        params = msg.params  # type: ignore[attr-defined]
        if active:
            assert pub is not None
            if channel.declares_format and params is not None and params.format != pub.params.format:
                raise ProtocolError(ErrorCode.ALREADY_STARTED, "audio format cannot change mid-stream; stop first")
            await pub.resume()
        else:
            await channel.start_publisher(params)
    elif action == "get_status":
        if active:
            assert pub is not None
            channel.reply(pub.status_body("paused" if pub.paused else "processing", "transcription", "live"))
        else:
            channel.reply(channel.status())
    elif action == "participant_event":
        if pub is None:
            raise ProtocolError(ErrorCode.NOT_STARTED, "participant events need a started stream")
        await pub.participant_event(msg.params)  # type: ignore[attr-defined]
    elif not active:
        raise ProtocolError(ErrorCode.NOT_STARTED, f"nothing to {action}: no audio stream was started")
    elif action == "pause":
        await pub.pause()  # type: ignore[union-attr]
    elif action == "stop":
        await channel.stop_publisher(pub)  # type: ignore[arg-type]
