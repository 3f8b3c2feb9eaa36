"""A publisher: one incoming audio stream (a WebSocket client after ``start``, a WebRTC track, a channel of a
split stream), the one session pipeline every ingest path feeds.

What concerns the stream alone goes to the client that publishes it, not to the transcript: ``receiving audio``
once it is admitted and ``completed`` once its finals are stored and sent (see :data:`Tell`). Every subscriber of
a transcript hears its words and its own ``completed``; a stream's end told to all of them was taken for the
transcript's end (or for a client's own) by a client that stopped on the first ``completed`` it heard, and a
meeting participant that stopped last hung up before its own last finals.

It decodes to 16 kHz mono off the event loop, appends to the stream's recording on disk, and drives the stream's
session (:func:`~asr.transcriber.open_session`); finals are synced to disk and stored (by the hub) before
subscribers hear them. The recording is the audio store's working file for the stream's key: the stored file itself
on one machine, a spool file published to the bucket when the stream ends on several (``server.storage.audio``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import BaseModel

from asr.events import SpeechEvent
from asr.transcriber import open_session
from media import SAMPLE_RATE, DecodeError, WavAppender, make_decoder
from media.audio import PCM_SAMPLE_WIDTHS
from media.decoders import PcmDecoder
from protocol import ErrorCode, ProtocolError, StartParams, Status, Transcription
from protocol.messages import StatusValue, participant_key
from server.pipeline.admission import Caller
from server.pipeline.configs import stream_config
from server.pipeline.convert import speech_message, unredacted_keeper, wire_emit, wire_report
from server.pipeline.disk_full import is_storage_full, storage_full_error
from server.pipeline.recordings import recording_key, taken_over_key
from server.pipeline.speaker_relay import LiveSpeakers, live_speakers, settle_speakers

if TYPE_CHECKING:
    from server.pipeline.parts import LiveParts

log = logging.getLogger("voxlane.live")
Tell = Callable[[BaseModel], None]
"""A message to the one client that publishes a stream (its WebSocket or WebRTC data channel), in order with the
transcript's messages it receives."""
PIECE_SECONDS = 1.0
"""A frame is taken in as pieces of at most this much audio (see :mod:`server.pipeline.ingest`)."""
PIECE_BYTES = 64 * 1024
"""...and, for an encoded container, of at most this many bytes."""
MAX_PAD_SECONDS = 600.0
"""The most silence a resumed recording is padded with (see :meth:`Publisher.open`): a dead node loses what came
after its last checkpoint, seconds, or minutes while the store was away; never hours of writing on a start."""


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
        self._released = asyncio.Event()

    def ahead(self) -> float:
        """Seconds of audio taken in beyond real time since the start (negative: behind)."""
        return self.seconds - (time.monotonic() - self.started)

    async def hold(self, samples: int) -> None:
        """Count ``samples`` (16 kHz) taken in; wait while the stream is beyond its lead."""
        self.seconds += samples / SAMPLE_RATE
        if self.max_lead > 0:
            over = self.ahead() - self.max_lead
            if over > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), over)

    def release(self) -> None:
        """No more holding, from now on (the client left: what it sent is taken in at once)."""
        self.max_lead = 0
        self._released.set()


class StreamHost(Protocol):
    """The transcript a publisher streams into (a :class:`server.pipeline.transcripts.LiveTranscript`), as the
    publisher reads it: named here, so the publisher needs nothing of the registry that makes it."""

    @property
    def id(self) -> str: ...

    @property
    def services(self) -> LiveParts: ...

    @property
    def fenced_out(self) -> bool:
        """Whether another node took the transcript over while this stream ran (its writes are refused)."""
        ...

    @property
    def fence(self) -> int | None: ...

    async def publisher_done(self, pub: Publisher) -> None: ...

    async def record_event(self, event: dict) -> None: ...


class Publisher:
    caller: Caller | None = None  # who opened it, set when admitted: the per-token and per-address caps count it
    slot: str | None = None  # its place in those caps across nodes (server.pipeline.admission.Admission.admit_live)

    def __init__(self, transcript: StreamHost, params: StartParams, offset: float, key: str,
                 recording: Path, tell: Tell | None = None) -> None:
        self.transcript = transcript
        self.params = params
        self._tell = tell  # the publishing client's own channel (None: a channel of a split stream, whose group
        # tells its client, or a protocol that reads none of voxlane's statuses)
        services = transcript.services
        participant = params.participant
        self.participant_id = participant.id if participant else None
        self.speaker = (participant.name or participant_key(participant.id)) if participant else None
        self._decoder = make_decoder(params.format, params.sample_rate, params.channels)
        decoder = self._decoder
        self._piece = _piece_bytes(decoder)
        self._input_bytes = 0  # raw PCM taken in: where a cut falls, to the sample (see cut)
        self.recording_key = key
        self.wav = WavAppender(recording)
        self._publish = functools.partial(services.hub.publish, transcript.id)  # to every subscriber
        config = stream_config(services.settings)
        config.key_terms = tuple(params.key_terms or ())
        correction = services.correction(config.key_terms,
                                     names=[participant.name] if participant and participant.name else ())
        self.session = open_session(
            services.model[0], vad_model=services.model[1],
            emit=wire_emit(self._emit, correction, keep_original=unredacted_keeper(services, transcript.id)),
            config=config,
            offset=offset + self.wav.duration,
            speaker=self.speaker, participant_id=self.participant_id, report=wire_report(self._publish))
        self._told_speech: asyncio.Task | None = None  # the latest ``speech`` message on its way
        if params.vad_events:
            self.session.on_speech = self._tell_speech
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
        self._parts_task: asyncio.Task | None = None
        self._loop = asyncio.get_running_loop()
        assert services.ingest is not None  # a node that takes live audio transcribes
        self._queue = services.ingest.queue()  # decoding, disk and VAD: off the event loop, in order
        self.pacer = Pacer(services.settings.max_audio_lead_seconds)
        self.storage_error: str | None = None  # set once the disk is full: no more audio is taken
        self._ending: asyncio.Task | None = None  # the end a full disk or an idle publisher started
        self._idle_task: asyncio.Task | None = None
        self.last_audio = time.monotonic()

    @classmethod
    async def open(cls, transcript: StreamHost, params: StartParams, offset: float,
                   tell: Tell | None = None, *, pad_to: float | None = None, pad_empty: bool = False) -> Publisher:
        """A publisher whose recording continues the one already stored for its key (fetched from the bucket
        first when it is only there), so a stream that starts again keeps one file and one timeline.

        ``pad_to``: where the transcript's stored timeline ends. A recording shorter than that lost its last
        seconds with a node that died (after its last checkpoint); silence stands in for them, so the new audio
        starts after every stored final instead of under the last ones. An empty recording is padded only with
        ``pad_empty`` (the stream taken over died before its first checkpoint): one that never existed belongs
        to a transcript whose words came from elsewhere (an upload), and starts at 0 s as before."""
        key = recording_key(transcript.id, params.participant.id if params.participant else None)
        path = await transcript.services.audio.working_file(key, resume=True)
        if pad_to is not None:
            padded = await asyncio.to_thread(_pad_recording, path, pad_to, pad_empty)
            if padded > 0:
                log.warning("transcript %s: its recording ends %.1f s before its stored words (audio after a dead"
                            " node's last checkpoint): silence stands in for it", transcript.id, padded)
        return cls(transcript, params, offset, key, path, tell)

    async def begin(self) -> None:
        self.session.start()
        interval = self.transcript.services.settings.status_interval
        if interval > 0:
            self._status_task = asyncio.create_task(self._report_lag(interval))
        idle = self.transcript.services.settings.publisher_idle_timeout
        if idle > 0:
            self._idle_task = asyncio.create_task(self._watch_idle(idle))
        self._parts_task = asyncio.create_task(self._checkpoints(self.transcript.services.settings.live_part_seconds))
        self.tell(self.status_body("processing", "transcription", "receiving audio"))
        if self.participant_id is not None:  # who streams now, for every subscriber (no one's cue to send audio)
            await self.publish_status("processing", "live", "stream started")

    def tell(self, body: BaseModel) -> None:
        """To the publishing client only (see :data:`Tell`)."""
        if self._tell is not None:
            self._tell(body)

    # ------------------------------------------------------------ audio in

    async def feed_bytes(self, data: bytes) -> None:
        """One client frame: decoded and taken in off the event loop, in order, a piece at a time; then the caller
        is held while the stream runs beyond its lead on real time (see :class:`Pacer`)."""
        if self.finished:
            return
        self.last_audio = time.monotonic()
        self._input_bytes += len(data)
        pieces = [self._queue.feed(functools.partial(self._decode_and_store, data[i:i + self._piece]), self.session)
                  for i in range(0, len(data), self._piece)]
        taken = sum(await asyncio.gather(*pieces))
        await self.pacer.hold(taken)
        self.last_audio = time.monotonic()  # a client held back by the pacer is not idle

    async def feed_pcm(self, samples: np.ndarray) -> None:
        """Decoded 16 kHz samples (WebRTC, a split stream's channel), taken in off the event loop, in order."""
        if self.finished or len(samples) == 0:
            return
        self.last_audio = time.monotonic()
        step = int(PIECE_SECONDS * SAMPLE_RATE)
        await asyncio.gather(*(self._queue.feed(functools.partial(self._stored, samples[i:i + step]), self.session)
                               for i in range(0, len(samples), step)))

    def _decode_and_store(self, data: bytes) -> tuple[int, np.ndarray]:
        """(ingest thread)"""
        try:
            samples = self._decoder.feed(data)
        except DecodeError as exc:
            raise ProtocolError(ErrorCode.AUDIO_FORMAT_ERROR, str(exc),
                                {"format": self.params.format}, recoverable=False) from None
        return self._stored(samples)

    def _stored(self, samples: np.ndarray) -> tuple[int, np.ndarray]:
        """(ingest thread) Store: only stored audio is transcribed, so every final's audio is on disk (stored even
        while paused). The samples count for the pacer either way."""
        kept = samples if len(samples) and self._store(samples) else samples[:0]
        return len(samples), kept

    def _flush_decoder(self) -> tuple[int, np.ndarray]:
        """(ingest thread) The decoder's tail, after every frame already accepted."""
        try:
            with contextlib.suppress(DecodeError):
                return self._stored(self._decoder.flush())
            return 0, np.zeros(0, dtype=np.float32)
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

    def end_soon(self) -> None:
        """End the stream as after ``stop``, from a callback: its transcript was taken over by another node (see
        :meth:`server.pipeline.transcripts.LiveTranscript.taken_over`), whose writes this stream's no longer
        mix with."""
        if not self.finished and self._ending is None:
            self._ending = asyncio.create_task(self.finish())

    async def _end_storage_full(self) -> None:
        details: dict[str, Any] = {"recorded_seconds": round(self.wav.duration, 3)}
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
            await self._queue.run(self.session.pause)  # in order with the frames before it
            await self.publish_status("paused", "transcription", "paused: audio is stored, not transcribed")

    async def cut(self) -> None:
        """End the open segment at the audio taken in so far, and go on (OpenAI's ``input_audio_buffer.commit``:
        an item holds exactly the audio appended before its commit). The position is counted in the client's
        own samples, not in what the resampler has let through yet, and the cut runs in order with the frames
        before it (see :meth:`StreamSession.cut`)."""
        if self.finished:
            return
        decoder = self._decoder
        if isinstance(decoder, PcmDecoder):
            width = PCM_SAMPLE_WIDTHS[decoder.fmt] * decoder.input_channels
            at = self._input_bytes // width / decoder.input_sample_rate
        else:
            at = self.pacer.seconds
        await self._queue.run(self.session.cut, at)

    async def resume(self) -> None:
        if self.paused and not self.finished:
            self.paused = False
            await self._queue.run(self.session.resume)
            await self.publish_status("processing", "transcription", "resumed")

    async def finish(self) -> None:
        """Flush everything (stop, or a publisher that vanished): finals stored, then ``completed``."""
        if self.finished:
            return
        self.finished = True  # no frame is accepted after this; those accepted before are taken in first
        try:
            await self._queue.feed(self._flush_decoder, self.session)
        finally:
            self._queue.close()
        await self.session.finish()
        if self._told_speech is not None:
            await asyncio.gather(self._told_speech, return_exceptions=True)
        if self.speakers is not None:  # the offline pass: every window heard, clustered once more
            await settle_speakers(self.transcript.services, self.transcript.id, self.speakers)
        for task in (self._status_task, self._idle_task, self._parts_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self._parts_task is not None:  # a checkpoint in flight lands before the whole file is published
            await asyncio.gather(self._parts_task, return_exceptions=True)
        try:
            await asyncio.to_thread(self.wav.close)
        except OSError as exc:  # the header could not be rewritten: the file's size still tells its length
            if not is_storage_full(exc):
                raise
            log.error("transcript %s: storage full while closing %s: %s", self.transcript.id, self.wav.path, exc)
        aside = taken_over_key(self.recording_key, self.transcript.fence) if self.transcript.fenced_out else None
        try:
            await self.transcript.services.audio.publish(self.recording_key, to=aside,
                                                         fence=self.transcript.fence)
        except Exception:  # the file stays on this node's disk; the next start stores it (AudioStore.recover)
            log.exception("transcript %s: the recording %s could not be stored", self.transcript.id,
                          self.recording_key)
        await self.transcript.publisher_done(self)

    def _tell_speech(self, event: SpeechEvent) -> None:
        """A ``speech`` message to every subscriber, each after the one before it (a broker publish awaits)."""
        previous = self._told_speech

        async def tell() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await self._publish(speech_message(event))

        self._told_speech = asyncio.create_task(tell())

    async def participant_event(self, params) -> None:
        """Record a bot-reported event (chat_message, webcam_on, ...) on the transcript's timeline."""
        event = {"type": params.type, "participant_id": self.participant_id, "data": params.data,
                 "time": round(self.session.offset + self.session.received, 3)}
        await self.transcript.record_event(event)

    @property
    def lag_seconds(self) -> float:
        """How far its transcription is behind the speech received (the load monitor watches it grow)."""
        return self.session.lag_seconds

    def status_body(self, status: StatusValue, stage: str | None, message: str) -> Status:
        load = self.transcript.services.load
        return Status(status=status, stage=stage, message=message, participant_id=self.participant_id,
                      lag_seconds=round(self.session.lag_seconds, 3),
                      shedding=(load.shedding or None) if load is not None else None)

    async def publish_status(self, status: StatusValue, stage: str | None, message: str) -> None:
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

    async def _checkpoints(self, every: float) -> None:
        """The recording's new audio to the audio store every ``every`` seconds while the stream runs (see
        ``AudioStore.checkpoint``): a node that dies loses at most that much of it."""
        audio = self.transcript.services.audio
        while True:
            await asyncio.sleep(every)
            if self.finished or self.transcript.fenced_out:
                return
            try:
                await asyncio.to_thread(self.wav.sync)
                await audio.checkpoint(self.recording_key, fence=self.transcript.fence)
            except Exception as exc:  # the next one tries again; the stream goes on
                log.warning("transcript %s: a checkpoint of %s failed: %s", self.transcript.id,
                            self.recording_key, exc)

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


def _pad_recording(path: Path, until: float, pad_empty: bool) -> float:
    """Silence appended to the recording at ``path`` up to ``until`` seconds; how many seconds it took."""
    wav = WavAppender(path)
    try:
        missing = until - wav.duration
        if missing <= 0 or (wav.duration == 0 and not pad_empty):
            return 0.0
        if missing > MAX_PAD_SECONDS:
            log.warning("%s ends %.0f s before its transcript's stored words: padded by %.0f s only, the new audio"
                        " starts under the last ones", path.name, missing, MAX_PAD_SECONDS)
            missing = MAX_PAD_SECONDS
        step = 10 * SAMPLE_RATE
        left = int(round(missing * SAMPLE_RATE))
        while left > 0:
            wav.append(np.zeros(min(step, left), dtype=np.float32))
            left -= step
        wav.sync()
        return missing
    finally:
        wav.close()


def _piece_bytes(decoder: Any) -> int:
    """How much of a frame is one piece: a second of raw PCM (whole samples of every channel), or
    :data:`PIECE_BYTES` of a container."""
    if isinstance(decoder, PcmDecoder):
        frame = decoder.input_channels * PCM_SAMPLE_WIDTHS[decoder.fmt]
        return max(frame, int(PIECE_SECONDS * decoder.input_sample_rate) * frame)
    return PIECE_BYTES
