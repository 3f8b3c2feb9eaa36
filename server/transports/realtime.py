"""OpenAI Realtime API transcription sessions on the live pipeline (``WS /v1/realtime?intent=transcription``,
route in server.routes.realtime_ws).

An application written for OpenAI's Realtime transcription (the ``openai`` SDK's ``client.realtime.connect``)
runs against voxlane by changing its base URL: the SDK turns ``http://host/v1`` into ``ws://host/v1/realtime``.
Each connection records one transcript (created on connect, as ``POST /v1/transcripts`` does; its id is
``session.id``) with one anonymous live publisher, so the finals are stored and stay readable over REST.

Events (client -> server: what comes back)

* connect: ``session.created`` (the effective session). Not ``intent=transcription`` (a conversation, a call):
  an ``error`` (``UNSUPPORTED_SESSION``), then close 1008. A token without ``transcripts:write``:
  ``INSUFFICIENT_SCOPE``, close 4403. A server at capacity: ``OVERLOADED``/``RATE_LIMITED``, close 1013.
* ``session.update`` (``session.type`` must be ``transcription``): ``session.updated``. ``audio/pcm`` (24 kHz),
  ``audio/pcmu`` and ``audio/pcma`` (8 kHz G.711, decoded here) are taken; the format can change until audio
  is appended. Turn detection is voxlane's VAD with the server's settings (the session shows their values);
  ``null`` only drops the ``speech_started``/``speech_stopped`` events. Noise reduction is not offered (shown
  ``null``). The transcription model must be an OpenAI transcription id or another id of ``GET /v1/models``
  (``VOXLANE_OPENAI_MODELS``; else ``error`` ``MODEL_NOT_AVAILABLE`` and nothing of the update changes, or on
  the URL's ``?model=`` the socket closes 1008); it is echoed with language and prompt, and the server's model
  and settings decide.
* ``input_audio_buffer.append``: nothing (as OpenAI). The audio is fed to the publisher in frames of at most
  ``VOXLANE_MAX_FRAME_KB``, held to real time plus ``VOXLANE_MAX_AUDIO_LEAD_SECONDS`` like the native
  WebSocket. Events are handled in order while the socket is still read (see server.transports.realtime_inbound);
  with the lead on, one append carries at most the lead or a quarter of ``VOXLANE_IDLE_TIMEOUT`` of audio,
  whichever is more. The publisher starts with the first append (admission then).
* with turn detection on, ``input_audio_buffer.speech_started`` comes as the VAD confirms speech
  (``audio_start_ms``: its onset) and ``speech_stopped`` once the silence after it reaches
  ``silence_duration_ms`` (``audio_end_ms``: the end of the speech), ahead of any words. Their ``item_id`` is
  the item that speech's first segment becomes (made at the onset, taken by that segment).
* every voxlane segment is one conversation item (``item_id``: the speech's, else ``item_`` + segment id).
  Its first partial: ``input_audio_buffer.committed``, ``conversation.item.added``; each partial's newly
  *final* words: ``...input_audio_transcription.delta`` (so the deltas concatenate to the transcript); the
  segment's final: the last delta, ``...input_audio_transcription.completed`` and ``conversation.item.done``.
  OpenAI commits (and sends ``committed``) when speech stops and transcribes afterwards; voxlane transcribes
  while the speaker talks, so an item is committed when its first words are heard.
* ``input_audio_buffer.commit``: the open segment ends at exactly the audio appended so far (speech going on
  opens the next segment there, so no word is read into two items) and its final is sent before the next
  client event is read; if no segment appeared since the previous commit, an item with an
  empty transcript stands for the audio (as OpenAI answers silence). Under 100 ms of audio since the last
  commit or clear: ``error`` ``input_audio_buffer_commit_empty``, as OpenAI.
* ``input_audio_buffer.clear``: ``input_audio_buffer.cleared``. Voxlane transcribes audio as it arrives, so
  nothing waits in a buffer to be dropped: what was appended is still transcribed (the next commit counts
  only audio appended after the clear).
* a bad event (invalid JSON, unknown type, oversized, bad base64, invalid fields): ``error`` naming it (with the
  client's ``event_id``); the session goes on, unless it sent ``VOXLANE_WS_MAX_BAD_MESSAGES`` of them within a
  minute (``TOO_MANY_ERRORS``, close 1008). No audio for ``VOXLANE_SESSION_IDLE_TIMEOUT``: ``SESSION_IDLE``,
  close 1000. Close: the publisher finishes (finals stored). A session that
  never appended audio leaves no transcript behind.

Speakers are not labelled: a Realtime transcription item has no speaker field, and a session is one
microphone. The token comes as ``Authorization: Bearer`` (what the Python SDK sends), ``?token=``, or a
browser's ``openai-insecure-api-key.<key>`` subprotocol (answered with ``realtime``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket

from asr.policy import join_words
from media.g711 import g711_to_pcm16
from protocol import ErrorCode, ProtocolError, StartParams
from protocol.close import CLOSE_INTERNAL, CLOSE_TRY_AGAIN
from protocol.realtime import (
    CLIENT_ERROR,
    COMMIT_EMPTY,
    LOGPROBS,
    MIN_COMMIT_MS,
    SERVER_ERROR,
    Audio,
    AudioAppend,
    AudioClear,
    AudioCommit,
    AudioFormatIn,
    AudioInput,
    Cleared,
    ClientEvent,
    Committed,
    DurationUsage,
    InputAudioContent,
    ItemAdded,
    ItemDone,
    LogProb,
    RealtimeError,
    ServerEvent,
    ServerVad,
    SessionCreated,
    SessionUpdate,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TranscriptionCompleted,
    TranscriptionConfig,
    TranscriptionDelta,
    TranscriptionIn,
    TranscriptionSession,
    UserAudioItem,
    error_event,
)
from server.features.openai_models import ModelMap, ModelNotServed
from server.http.ws_guard import InboundGuard
from server.pipeline.configs import stream_config
from server.pipeline.publisher import Publisher
from server.transports.hub_session import PUBLISHER, REPLY, HubSession
from server.transports.realtime_inbound import CloseWith, Inbound, decode_audio

if TYPE_CHECKING:
    from server.transports.parts import SessionParts

log = logging.getLogger("voxlane.realtime")

COMMIT_WAIT_S = 60.0
"""Longest a commit waits for the finals it asked for (a session flushes within 60 s, see StreamSession.finish)."""
G711_OFF_LOOP = 64 * 1024
"""G.711 audio this long is decoded off the event loop."""
MAX_MODEL_CHARS = 200
MODEL_NOT_AVAILABLE = "MODEL_NOT_AVAILABLE"  # as POST /v1/audio/transcriptions answers the same name

# queue entries of this connection's own, beside the hub's messages (whose types are voxlane's wire types)
_COMMIT = "realtime.commit"  # a commit's finals are all in: an item for the audio if none appeared


def _ms(seconds: float) -> int:
    return max(0, int(round(seconds * 1000)))


def _settled(words: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A partial's final words: the leading run flagged final (they never change later in the segment)."""
    return list(itertools.takewhile(lambda w: w.get("final"), words))


@dataclass
class _Item:
    """One segment as a conversation item: what its deltas have said so far."""

    id: str
    previous: str | None
    told: str = ""
    words: int = 0
    logprobs: list[LogProb] = field(default_factory=list)


def refusal_error(exc: ProtocolError) -> RealtimeError:
    """A voxlane protocol error (admission, audio format) as a Realtime ``error``."""
    retry = exc.details.get("retry_after_s")
    message = exc.message + (f" (retry after {retry} s)" if retry is not None else "")
    kind = SERVER_ERROR if exc.code in (ErrorCode.OVERLOADED, ErrorCode.STORAGE_FULL) else CLIENT_ERROR
    return RealtimeError(exc.code.value, message, kind=kind)


class RealtimeSession(HubSession[ServerEvent]):
    """One connection: its client events drive one publisher, and the transcript's hub messages become its
    server events. Everything it sends goes through its hub subscription's queue, so replies and transcription
    events reach the client in the order they happened."""

    client = "realtime"

    def __init__(self, ws: WebSocket, svc: SessionParts, transcript_id: str, model: str) -> None:
        super().__init__(ws, svc, transcript_id)
        # the session as configured (session.update)
        self.format = AudioFormatIn()
        self.transcription = TranscriptionIn(model=model)
        self.default_model = model
        self.vad = True
        self.logprobs = False
        self.buffered_ms = 0.0  # audio appended since the last commit or clear
        # the outbound side (the send loop)
        self.items: dict[str, _Item] = {}
        self.last_item: str | None = None
        self.item_since_commit = False
        self.turn: tuple[str, float] | None = None  # the speech heard last: its item id and onset
        self.turn_item: str | None = None  # that id while no segment has taken it
        self.publisher_finals = 0  # finals of the current publisher sent out
        self.progress = asyncio.Event()

    # ------------------------------------------------------------ the session object

    def session(self) -> TranscriptionSession:
        settings = self.svc.settings
        vad = ServerVad(threshold=settings.vad_threshold,
                        prefix_padding_ms=_ms(stream_config(settings).lead_in_s),
                        silence_duration_ms=settings.vad_min_silence_ms) if self.vad else None
        transcription = TranscriptionConfig(**self.transcription.model_dump())
        audio_in = AudioInput(format=self.format.out(), noise_reduction=None, transcription=transcription,
                              turn_detection=vad)
        return TranscriptionSession(id=self.transcript_id, audio=Audio(input=audio_in),
                                    include=[LOGPROBS] if self.logprobs else None)

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        self.reply(SessionCreated(session=self.session()))
        guard = InboundGuard(self.svc.settings, idle_timeout=self.svc.settings.session_idle_timeout)
        await self.serve(Inbound(self, guard, self.svc.settings.send_timeout).run)

    # ------------------------------------------------------------ inbound

    def close(self, close: CloseWith) -> None:
        """The send loop sends the error, then closes the socket (after what was queued before)."""
        self.reply(close.event)
        self.close_after_queued(close.code, close.reason)

    async def handle(self, event: ClientEvent) -> None:
        """One event, in order (the inbound worker): an error answers it and the session goes on; a
        :class:`CloseWith` or an invalid event's :class:`RealtimeError` goes on up once answered."""
        try:
            await self._handle(event)
        except RealtimeError as exc:
            self.reply(exc.event())
            raise
        except ProtocolError as exc:  # the audio could not be decoded, the disk is full, ...
            error = refusal_error(exc)
            error.event_id = event.event_id
            self.reply(error.event())
        except CloseWith:
            raise
        except Exception:  # a bug here must cost this event, not the session
            log.exception("transcript %s: a realtime event failed", self.transcript_id)
            self.reply(RealtimeError("INTERNAL_ERROR", "internal server error", event_id=event.event_id,
                                     kind=SERVER_ERROR).event())

    async def _handle(self, event: ClientEvent) -> None:
        if isinstance(event, AudioAppend):
            await self._append(event)
        elif isinstance(event, AudioCommit):
            await self._commit(event)
        elif isinstance(event, AudioClear):
            self.buffered_ms = 0.0
            self.reply(Cleared())
        elif isinstance(event, SessionUpdate):
            await self._update(event)

    async def _update(self, event: SessionUpdate) -> None:
        """Only the fields present change; null turns turn detection off (and transcription back to defaults)."""
        session = event.session
        audio_in = session.audio.input if session.audio is not None else None
        present = audio_in.model_fields_set if audio_in is not None else set()
        fmt = self.format
        if audio_in is not None and "format" in present:
            fmt = audio_in.format or AudioFormatIn()
            streaming = self.publisher is not None and not self.publisher.finished
            if streaming and fmt.type != self.format.type:
                raise RealtimeError("INVALID_PARAMS", f"the audio format cannot change once audio was appended"
                                    f" ({self.format.type} so far): open a new session for {fmt.type}",
                                    param="session.audio.input.format", event_id=event.event_id)
        transcription = None
        if audio_in is not None and "transcription" in present:
            transcription = audio_in.transcription or TranscriptionIn(model=self.default_model)
            self._check_model(transcription.model, event.event_id)
        self.format = fmt
        if transcription is not None:
            self.transcription = transcription
            language = self.transcription.language
            if language:
                await self.svc.store.update_transcript(self.transcript_id, source_language=language)
        if audio_in is not None and "turn_detection" in present:
            self.vad = audio_in.turn_detection is not None
        if "include" in session.model_fields_set:
            self.logprobs = LOGPROBS in (session.include or [])
        self.reply(SessionUpdated(session=self.session()))

    def _check_model(self, model: str | None, event_id: str | None) -> None:
        """The REST route's rule: an OpenAI id or a configured one (echoed), nothing else."""
        try:
            if model is not None:
                ModelMap.of(self.svc.settings).resolve(model)
        except ModelNotServed as exc:
            raise RealtimeError(MODEL_NOT_AVAILABLE, str(exc), param="session.audio.input.transcription.model",
                                event_id=event_id) from None

    async def _append(self, event: AudioAppend) -> None:
        limit = self._append_limit()
        if limit is not None and len(event.audio) // 4 * 3 > limit * self.format.bytes_per_second:
            seconds = len(event.audio) // 4 * 3 / self.format.bytes_per_second
            raise RealtimeError("INVALID_PARAMS", f"an append of {seconds:.1f} s of audio is over this server's"
                                f" limit of {limit:g} s in one event: send the audio in smaller appends (it was"
                                " dropped)", param="audio", event_id=event.event_id)
        data = await decode_audio(event)
        if not data:
            return
        pub = await self._publisher()
        if pub is None:
            return  # the disk is full: STORAGE_FULL was sent once; audio still coming is dropped
        self.buffered_ms += len(data) * 1000 / self.format.bytes_per_second
        pcm = data
        if self.format.type != "audio/pcm" and len(data) > G711_OFF_LOOP:
            pcm = await asyncio.to_thread(g711_to_pcm16, data, self.format.type.removeprefix("audio/"))
        elif self.format.type != "audio/pcm":
            pcm = g711_to_pcm16(data, self.format.type.removeprefix("audio/"))
        for start in range(0, len(pcm), self.max_frame):  # each slice a native frame: decoded off-loop, paced
            await pub.feed_bytes(pcm[start:start + self.max_frame])

    def _append_limit(self) -> float | None:
        """The most seconds of audio one append may carry (None: no limit). An append is held to real time as a
        whole, and the socket's keepalive must be answered meanwhile: the limit keeps that hold well within
        ``VOXLANE_IDLE_TIMEOUT`` (pings go out every half of it)."""
        settings = self.svc.settings
        if settings.max_audio_lead_seconds <= 0:
            return None  # not held to real time: nothing waits
        return max(settings.max_audio_lead_seconds, settings.idle_timeout / 4)

    async def _publisher(self) -> Publisher | None:
        """The running publisher, started with the first append (or after the last one ended for idleness)."""
        if self.publisher is not None and not self.publisher.finished:
            return self.publisher
        params = StartParams(format="pcm_s16le", sample_rate=self.format.sample_rate, channels=1, diarization=False,
                             vad_events=True)
        return await self.start_publisher(params, COMMIT_WAIT_S, _refused)

    async def _commit(self, event: AudioCommit) -> None:
        buffered, self.buffered_ms = self.buffered_ms, 0.0
        if buffered < MIN_COMMIT_MS:
            raise RealtimeError(COMMIT_EMPTY, f"buffer too small: expected at least {MIN_COMMIT_MS:g} ms of audio,"
                                f" but the buffer has {buffered:.2f} ms", event_id=event.event_id)
        pub = self.publisher
        if pub is not None and not pub.finished:
            await pub.cut()  # the open segment ends at the audio appended so far; what follows is the next item's
            try:
                await asyncio.wait_for(self._finals_out(pub), COMMIT_WAIT_S)
            except TimeoutError:
                log.warning("transcript %s: the finals of a commit took over %.0f s", self.transcript_id,
                            COMMIT_WAIT_S)
                return
        self.sub.put({"type": _COMMIT, "seconds": buffered / 1000})

    async def _finals_out(self, pub: Publisher) -> None:
        """Until every final the publisher's session has emitted has gone out to this client."""
        await pub.session.wait_backlog(0)
        target = pub.session.segments_emitted
        while self.publisher_finals < target:
            self.progress.clear()
            await self.progress.wait()

    # ------------------------------------------------------------ outbound

    def wire(self, message: ServerEvent) -> str:
        return message.wire()

    def outgoing(self, msg: dict[str, Any]) -> list[ServerEvent]:
        kind = msg.get("type")
        if kind == REPLY:
            return [msg["message"]]
        if kind == PUBLISHER:
            self.publisher_finals = 0
            return []
        if kind == _COMMIT:
            return self._commit_item(msg["seconds"])
        data = msg.get("data") or {}
        if kind == "transcription" and data.get("participant_id") is None:
            return self._transcription(data)
        if kind == "speech" and data.get("participant_id") is None and self.vad:
            return [self._speech(data)]
        if kind == "error" and not (data.get("details") or {}).get("participant_id"):
            return [error_event(data.get("code") or "INTERNAL_ERROR", data.get("message") or "", kind=SERVER_ERROR)]
        return []  # status, diarization, summary: voxlane's own

    def _transcription(self, data: dict[str, Any]) -> list[ServerEvent]:
        events: list[ServerEvent] = []
        seg_id = data["segment_id"]
        item = self.items.get(seg_id)
        if item is None:  # the segment's first words: its item is committed and added
            item = self.items[seg_id] = _Item(id=self._item_id(data), previous=self.last_item)
            self.last_item = item.id
            self.item_since_commit = True
            events.append(Committed(item_id=item.id, previous_item_id=item.previous))
            events.append(ItemAdded(previous_item_id=item.previous, item=UserAudioItem(
                id=item.id, status="in_progress", content=[InputAudioContent()])))
        final = bool(data["is_final"])
        events.extend(self._delta(item, data["words"] if final else _settled(data["words"])))
        if not final:
            return events
        del self.items[seg_id]
        text = data["text"]
        if item.told != text:  # never expected: final words do not change (the completed text is the truth)
            log.warning("transcript %s: deltas of %s say %r, its final %r", self.transcript_id, item.id, item.told,
                        text)
        events.append(TranscriptionCompleted(
            item_id=item.id, transcript=text, usage=DurationUsage(seconds=round(max(0.0, data["end"] - data["start"]),
                                                                                3)),
            logprobs=item.logprobs if self.logprobs else None))
        events.append(ItemDone(previous_item_id=item.previous, item=UserAudioItem(
            id=item.id, status="completed", content=[InputAudioContent(transcript=text)])))
        self.publisher_finals += 1
        self.progress.set()
        return events

    def _speech(self, data: dict[str, Any]) -> ServerEvent:
        """The VAD's ``speech`` message. Its item is the one the speech's first segment becomes: not known at the
        onset (the segment has no words yet), so its id is made here and that segment takes it (_item_id)."""
        if data["event"] == "started":
            self.turn_item = f"item_{uuid.uuid4().hex[:12]}"
            self.turn = (self.turn_item, data["time"])
            return SpeechStarted(audio_start_ms=_ms(data["time"]), item_id=self.turn_item)
        item_id = self.turn[0] if self.turn is not None else (self.last_item or f"item_{uuid.uuid4().hex[:12]}")
        return SpeechStopped(audio_end_ms=_ms(data["time"]), item_id=item_id)

    def _item_id(self, data: dict[str, Any]) -> str:
        """A new segment's item: the id its speech_started named, unless it ends before that speech began (a
        segment of the speech before, whose first words came with its final)."""
        if self.turn_item is not None and self.turn is not None and data["end"] > self.turn[1]:
            item_id, self.turn_item = self.turn_item, None
            return item_id
        return f"item_{data['segment_id']}"

    def _delta(self, item: _Item, settled: list[dict[str, Any]]) -> list[ServerEvent]:
        """The words made final since the item's last delta, as text that continues what was said."""
        if len(settled) <= item.words:
            return []
        texts = [w["text"] for w in settled]
        text = join_words(texts)
        if not text.startswith(item.told):
            log.warning("transcript %s: final words of %s changed (%r -> %r)", self.transcript_id, item.id,
                        item.told, text)
            return []
        logprobs, before = [], join_words(texts[:item.words])
        for i in range(item.words, len(settled)):
            upto = join_words(texts[:i + 1])
            piece, before = upto[len(before):], upto
            logprobs.append(LogProb(token=piece, bytes=list(piece.encode()),
                                    logprob=round(math.log(max(1e-6, float(settled[i].get("probability") or 0))), 4)))
        delta, item.told, item.words = text[len(item.told):], text, len(settled)
        item.logprobs.extend(logprobs)
        return [TranscriptionDelta(item_id=item.id, delta=delta, logprobs=logprobs if self.logprobs else None)]

    def _commit_item(self, seconds: float) -> list[ServerEvent]:
        """After a commit's finals: nothing when a segment appeared since the last commit, else an item with an
        empty transcript for the audio, as OpenAI answers a commit of silence."""
        if self.item_since_commit:
            self.item_since_commit = False
            return []
        item_id, previous = f"item_{uuid.uuid4().hex[:12]}", self.last_item
        self.last_item = item_id
        return [
            Committed(item_id=item_id, previous_item_id=previous),
            ItemAdded(previous_item_id=previous, item=UserAudioItem(id=item_id, status="in_progress",
                                                                     content=[InputAudioContent()])),
            TranscriptionCompleted(item_id=item_id, transcript="", usage=DurationUsage(seconds=round(seconds, 3)),
                                   logprobs=[] if self.logprobs else None),
            ItemDone(previous_item_id=previous, item=UserAudioItem(id=item_id, status="completed",
                                                                    content=[InputAudioContent(transcript="")])),
        ]


def _refused(exc: ProtocolError) -> CloseWith:
    """A start the server refused: 1013 (try again) when it is the load, else 1011."""
    load = exc.code in (ErrorCode.OVERLOADED, ErrorCode.RATE_LIMITED)
    return CloseWith(CLOSE_TRY_AGAIN if load else CLOSE_INTERNAL, refusal_error(exc).event(), exc.message)
