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
import hashlib
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from asr.diarization import DiarizationConfig
from asr.inference import InferenceLoop, Priority
from asr.session import StreamConfig, StreamSession
from asr.vad import SileroModel, VadConfig
from media import SAMPLE_RATE, DecodeError, WavAppender, make_decoder
from protocol import ErrorCode, ProtocolError, StartParams, Status, Transcription, parse_client_message
from protocol.messages import _Body, participant_key
from server.admission import Admission, Caller
from server.auth import WRITE
from server.disk_full import is_storage_full, storage_full_error
from server.hub import Hub, segment_row
from server.live_speakers import LiveSpeakers, SpeakerWorker
from server.settings import Settings
from server.storage import Store
from server.summaries import summarize_transcript
from server.webhooks import Dispatcher, transcript_completed

log = logging.getLogger("voxlane.live")
RECORDING = "recording.wav"
T = TypeVar("T")


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
        close_after_s=settings.segment_close_seconds,
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


def audio_file_name(participant_id: str | int | None) -> str:
    participant_id = participant_key(participant_id)  # 1 and "1" are one participant: one recording
    if not participant_id:
        return RECORDING
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", participant_id)
    if safe == participant_id and len(safe) <= 80:
        return f"participant-{safe}.wav"
    # ids that had to be changed ("a b" and "a_b", two long ids with one prefix) must not share a file
    digest = hashlib.sha256(participant_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"participant-{safe[:80]}-{digest}.wav"


@dataclass
class Services:
    """Everything a request handler may need; built once by the app's lifespan."""

    settings: Settings
    store: Store
    hub: Hub
    engine: InferenceLoop
    vad_model: SileroModel
    webhooks: Dispatcher | None = None
    admission: Admission | None = None  # refuses a live stream the server cannot serve well (server.admission)
    live: LiveRegistry = field(init=False)
    speaker_worker: SpeakerWorker = field(init=False)

    def __post_init__(self) -> None:
        self.live = LiveRegistry(self)
        self.speaker_worker = SpeakerWorker(device=self.settings.device)

    def audio_dir(self, transcript_id: str) -> Path:
        return self.settings.data_path / "audio" / transcript_id


class IngestWorker:
    """One stream's blocking ingest work (decoding, resampling, VAD, disk writes), off the event loop.

    A frame of audio can cost a second of CPU (an 8 MB frame of 8 kHz PCM is 500 s of audio to resample and
    run the VAD over); on the event loop that would stall every other stream and request. Calls run on one
    thread of their own, one at a time, in the order they were made: a stream's audio stays in order, and a
    caller that goes away (a cancelled connection) neither drops nor reorders work already handed over.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxlane-ingest")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.shield(asyncio.get_running_loop().run_in_executor(self._executor, fn, *args))

    def close(self) -> None:
        """No more work (calls already made still run); the thread ends once idle."""
        self._executor.shutdown(wait=False)


class Pacer:
    """Holds a live stream to real time plus a lead (``VOXLANE_MAX_AUDIO_LEAD_SECONDS``).

    A client may send a backlog (a reconnect, a buffered start) up to ``max_lead`` seconds ahead of the wall
    clock since its stream started; beyond it :meth:`hold` waits until real time catches up. The ingest path
    awaits it before reading the next frame, so a client that sends faster than real time is pushed back by
    TCP instead of filling the server's memory and CPU. 0 turns it off.
    """

    def __init__(self, max_lead: float) -> None:
        self.max_lead = max_lead
        self.started = time.monotonic()
        self.seconds = 0.0  # audio taken in

    def ahead(self) -> float:
        """Seconds of audio taken in beyond real time since the start (negative: behind)."""
        return self.seconds - (time.monotonic() - self.started)

    async def hold(self, samples: int) -> None:
        """Count ``samples`` (16 kHz) taken in; wait while the stream is beyond its lead."""
        self.seconds += samples / SAMPLE_RATE
        if self.max_lead > 0:
            over = self.ahead() - self.max_lead
            if over > 0:
                await asyncio.sleep(over)


class Publisher:
    caller: Caller | None = None  # who opened it, set when admitted: the per-token and per-address caps count it

    def __init__(self, transcript: LiveTranscript, params: StartParams, offset: float) -> None:
        self.transcript = transcript
        self.params = params
        services = transcript.services
        participant = params.participant
        self.participant_id = participant.id if participant else None
        self.speaker = (participant.name or participant_key(participant.id)) if participant else None
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
            self.speakers.on_turn = self.session.turn_at  # a new voice opens a new segment
        self._deliver = self.speakers.relay(self._publish) if self.speakers is not None else self._publish
        self.paused = False
        self.finished = False
        self.started_at = time.monotonic()
        self._status_task: asyncio.Task | None = None
        self._loop = asyncio.get_running_loop()
        self._worker = IngestWorker()  # decoding, disk and VAD: off the event loop, in order
        self.pacer = Pacer(services.settings.max_audio_lead_seconds)
        self.storage_error: str | None = None  # set once the disk is full: no more audio is taken
        self._ending: asyncio.Task | None = None  # the end a full disk or an idle publisher started
        self._idle_task: asyncio.Task | None = None
        self.last_audio = time.monotonic()

    async def begin(self) -> None:
        self.session.start()
        interval = self.transcript.services.settings.status_interval
        if interval > 0:
            self._status_task = asyncio.create_task(self._report_lag(interval))
        idle = self.transcript.services.settings.publisher_idle_timeout
        if idle > 0:
            self._idle_task = asyncio.create_task(self._watch_idle(idle))
        await self.publish_status("processing", "transcription", "receiving audio")

    # ------------------------------------------------------------ audio in

    async def feed_bytes(self, data: bytes) -> None:
        """One client frame: decoded and taken in off the event loop, in order; then the caller is held while
        the stream runs beyond its lead on real time (see :class:`Pacer`)."""
        if self.finished:
            return
        self.last_audio = time.monotonic()
        await self.pacer.hold(await self._worker.run(self._decode_and_ingest, data))
        self.last_audio = time.monotonic()  # a client held back by the pacer is not idle

    async def feed_pcm(self, samples: np.ndarray) -> None:
        """Decoded 16 kHz samples (WebRTC, a split stream's channel), taken in off the event loop, in order."""
        if self.finished or len(samples) == 0:
            return
        self.last_audio = time.monotonic()
        await self._worker.run(self._ingest, samples)

    def _decode_and_ingest(self, data: bytes) -> int:
        """(ingest thread)"""
        try:
            samples = self._decoder.feed(data)
        except DecodeError as exc:
            raise ProtocolError(ErrorCode.AUDIO_FORMAT_ERROR, str(exc),
                                {"format": self.params.format}, recoverable=False) from None
        return self._ingest(samples)

    def _ingest(self, samples: np.ndarray) -> int:
        """(ingest thread) Store, then transcribe; returns the samples taken."""
        if len(samples) and self._store(samples):  # stored even while paused
            self.session.feed(samples)  # only stored audio is transcribed: every final's audio is on disk
        return len(samples)

    def _flush_decoder(self) -> None:
        """(ingest thread) The decoder's tail, after every frame already accepted."""
        try:
            with contextlib.suppress(DecodeError):
                self._ingest(self._decoder.flush())
        finally:
            self._decoder.close()

    def _store(self, samples: np.ndarray) -> bool:
        if self.storage_error is not None:
            return False
        try:
            self.wav.append(samples)
        except OSError as exc:
            if not is_storage_full(exc):
                raise
            self._storage_full(exc)
            return False
        return True

    def _storage_full(self, exc: BaseException) -> None:
        """The disk is full: every listener is told once (STORAGE_FULL, not recoverable), and the stream ends
        as after ``stop``, so the audio already stored is transcribed and its finals stored."""
        if self.storage_error is not None:
            return
        self.storage_error = str(exc)
        log.error("transcript %s: storage full, ending the stream at %.1f s: %s", self.transcript.id,
                  self.wav.duration, exc)
        self._loop.call_soon_threadsafe(self._begin_ending)  # this may run on the ingest thread

    def _begin_ending(self) -> None:
        self._ending = asyncio.create_task(self._end_storage_full())

    async def _end_storage_full(self) -> None:
        details = {"recorded_seconds": round(self.wav.duration, 3)}
        if self.participant_id is not None:  # 0 is a participant id too
            details["participant_id"] = self.participant_id
        error = storage_full_error("the recording stopped; what was received before is stored and transcribed",
                                   details)
        await self._publish(error.to_message())
        await self.finish()

    # ------------------------------------------------------------ control

    async def pause(self) -> None:
        if not self.paused and not self.finished:
            self.paused = True
            await self._worker.run(self.session.pause)  # in order with the frames before it
            await self.publish_status("paused", "transcription", "paused: audio is stored, not transcribed")

    async def resume(self) -> None:
        if self.paused and not self.finished:
            self.paused = False
            await self._worker.run(self.session.resume)
            await self.publish_status("processing", "transcription", "resumed")

    async def finish(self) -> None:
        """Flush everything (stop, or a publisher that vanished): finals stored, then ``completed``."""
        if self.finished:
            return
        self.finished = True  # no frame is accepted after this; those accepted before are taken in first
        try:
            await self._worker.run(self._flush_decoder)
        finally:
            self._worker.close()
        await self.session.finish()
        if self.speakers is not None:  # the offline pass: every window heard, clustered once more
            await settle_speakers(self.transcript.services, self.transcript.id, self.speakers,
                                  self.transcript.meta_lock)
        for task in (self._status_task, self._idle_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        try:
            await asyncio.to_thread(self.wav.close)
        except OSError as exc:  # the header could not be rewritten: the file's size still tells its length
            if not is_storage_full(exc):
                raise
            log.error("transcript %s: storage full while closing %s: %s", self.transcript.id, self.wav.path, exc)
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
        # A full disk ends the stream (see _storage_full); the session still flushes what it holds.
        if msg.is_final:
            try:
                await asyncio.to_thread(self.wav.sync)  # the audio behind a final is on disk before it is sent
            except OSError as exc:  # its samples were written; only the header update or flush failed
                if not is_storage_full(exc):
                    raise
                self._storage_full(exc)
        try:
            await self._deliver(msg)
        except Exception as exc:  # the store could not take the final: nobody hears of what is not stored
            if not is_storage_full(exc):
                raise
            log.error("transcript %s: final %s could not be stored: %s", self.transcript.id, msg.segment_id, exc)
            self._storage_full(exc)

    async def _report_lag(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self.paused:
                await self.publish_status("processing", "transcription", "live")

    async def _watch_idle(self, idle_s: float) -> None:
        """A publisher whose audio stopped coming (a client gone quiet without closing) is finished as after
        ``stop``, rather than holding its stream open; a paused client still sends audio."""
        while not self.finished:
            await asyncio.sleep(max(0.05, self.last_audio + idle_s - time.monotonic()))
            if not self.finished and time.monotonic() - self.last_audio >= idle_s:
                log.info("transcript %s: no audio for %.0f s, finishing the stream", self.transcript.id, idle_s)
                await self.publish_status("processing", "transcription",
                                          f"no audio for {idle_s:g} s: the stream is finished")
                await self.finish()


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


class ControlChannel(Protocol):
    """What an ingest path (WebSocket, WebRTC data channel) offers the shared control semantics."""

    publisher: Publisher | None
    declares_format: bool  # False where the codec, not ``start``, describes the audio (WebRTC)
    may_publish: bool  # the caller's token has ``transcripts:write``: it may send audio and drive the stream

    async def start_publisher(self, params: StartParams | None) -> None: ...

    async def stop_publisher(self, publisher: Publisher) -> None: ...

    def reply(self, body: _Body) -> None: ...

    def status(self) -> Status: ...


PUBLISHING_ACTIONS = frozenset({"start", "participant_event", "pause", "stop"})
"""Actions that change a transcript: they need ``transcripts:write`` (``get_status`` only reads)."""


def insufficient_scope(what: str) -> ProtocolError:
    """The answer to a subscriber whose token may read the transcript but not publish to it."""
    return ProtocolError(ErrorCode.INSUFFICIENT_SCOPE, f"{what} needs a token with the {WRITE!r} scope; this"
                         " connection may only listen", {"required": WRITE})


async def apply_control(channel: ControlChannel, raw: str | bytes) -> None:
    """One client action, with the same meaning on every ingest path; raises ProtocolError to answer."""
    msg = parse_client_message(raw)
    action = msg.action  # type: ignore[attr-defined]
    if action in PUBLISHING_ACTIONS and not channel.may_publish:
        raise insufficient_scope(f"{action!r}")
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
