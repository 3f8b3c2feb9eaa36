"""Deepgram's live transcription (``WS /v1/listen``, route in server.routes.deepgram_ws) on the live pipeline.

A client written for Deepgram (the ``deepgram-sdk`` live client, LiveKit's and Pipecat's Deepgram STT) runs
against voxlane by changing its base URL. Each connection records one transcript (its id is every message's
``request_id``) with one anonymous publisher, started by the first audio, so the finals stay readable over REST.

* binary messages are audio as the query declared it (``encoding``/``sample_rate``/``channels``; without
  ``encoding``, a container the decoder recognises). G.711 is expanded here; each frame is held to real time
  plus ``VOXLANE_MAX_AUDIO_LEAD_SECONDS`` like the native WebSocket's, while the socket is still read
  (server.transports.deepgram_inbound). A frame over ``VOXLANE_MAX_FRAME_KB`` is dropped with an ``Error``. An
  empty binary message is a ``CloseStream``. A client that leaves has every frame it sent taken in at once.
* a voxlane partial's words flagged final never change: each run of them is sent once as ``is_final`` Results
  (``speech_final`` false); the rest of the partial is an interim (``is_final`` false) with
  ``interim_results=true``. A segment's final sends its remaining words with ``is_final`` and ``speech_final``,
  so no word is in two ``is_final`` Results.
* ``SpeechStarted`` (``vad_events=true``) when the VAD hears speech begin (``timestamp``: its onset);
  ``UtteranceEnd`` (``utterance_end_ms`` set) when it heard the speech stop, once the words before are all sent
  (``last_word_end``). The pause that ends an utterance is the server's ``VOXLANE_VAD_MIN_SILENCE_MS``.
* ``Finalize``: the open segment is closed now; its final (the last ``is_final`` Results the Finalize caused,
  an empty one if there was nothing to close) carries ``from_finalize: true``.
* ``CloseStream``: the audio sent before it is taken in unpaced, every final is sent, then ``Metadata``, then the
  socket closes (1000).
* ``KeepAlive``: nothing. ``Configure``: ``ConfigureFailure`` (key terms are fixed for a stream here).
* a bad text message: ``Error`` naming it, and the stream goes on; after ``VOXLANE_WS_MAX_BAD_MESSAGES`` of them
  within a minute the socket closes (1008). What a client sends is held to ``VOXLANE_WS_INBOUND_KB_PER_S``, and a
  stream without audio for ``VOXLANE_SESSION_IDLE_TIMEOUT`` is closed (``KeepAlive`` does not count), as the
  other live protocols are (server.http.ws_guard).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from starlette.websockets import WebSocket

from media.g711 import g711_to_pcm16
from protocol import ErrorCode, ProtocolError, StartParams
from protocol.close import CLOSE_INTERNAL, CLOSE_NORMAL, CLOSE_TRY_AGAIN
from protocol.deepgram import (
    ConfigureFailure,
    DgError,
    ListenParams,
    Metadata,
    ModelInfo,
    Results,
    ResultsMetadata,
    wire,
)
from server.transports.deepgram_inbound import (
    FLUSH_WAIT_S,
    CloseWith,
    Closing,
    Inbound,
    protocol_refusal,
)
from server.transports.deepgram_results import ResultMapper
from server.transports.hub_session import PUBLISHER, REPLY, HubSession

if TYPE_CHECKING:
    from server.pipeline.publisher import Publisher
    from server.transports.parts import SessionParts

log = logging.getLogger("voxlane.deepgram")

G711 = {"mulaw": "pcmu", "alaw": "pcma"}
OFF_LOOP = 1 << 20

# queue entries of this connection's own, beside the hub's messages
_HOLD = "deepgram.hold"  # a Finalize begins: segment finals wait until it is known which one it caused
_FINALIZED = "deepgram.finalized"  # a Finalize's finals are all emitted: ``target`` of them


class DeepgramSession(HubSession[BaseModel]):
    """One connection: binary audio and control messages drive one publisher; the transcript's hub messages
    become Deepgram's messages. Everything sent goes through the hub subscription's queue, in order."""

    client = "deepgram"

    def __init__(self, ws: WebSocket, svc: SessionParts, transcript_id: str, params: ListenParams,
                 model: ModelInfo, model_uuid: str) -> None:
        super().__init__(ws, svc, transcript_id)
        self.params = params
        self.meta = ResultsMetadata(request_id=transcript_id, model_info=model, model_uuid=model_uuid)
        self.model = model
        self.sha256 = hashlib.sha256()
        self.created = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        self.mapper = ResultMapper(params, self.meta)  # the outbound side (the send loop)
        self.held: list[BaseModel] | None = None
        self.finalize_target: int | None = None
        self.close_target: int | None = None

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        await self.serve(Inbound(self, self.svc.settings).run)

    def close(self, closing: Closing) -> None:
        """Queues the session's last words and its close (sent by the send loop, after what is queued)."""
        if closing.error is not None:
            self.reply(closing.error)
        reason = closing.error.description if closing.error is not None else ""
        self.close_after_queued(closing.code, reason, target=closing.target)

    # ------------------------------------------------------------ inbound (the worker, in order)

    async def control(self, message: dict[str, Any]) -> Closing | None:
        """Acts on one control message; how the session closes for CloseStream."""
        kind = message["type"]
        if kind == "CloseStream":
            return await self._close_stream()
        if kind == "Finalize":
            await self._finalize()
        elif kind == "Configure":
            self.reply(ConfigureFailure(request_id=self.transcript_id, code="CONFIGURE_KEYTERMS_NOT_SUPPORTED",
                                        description="key terms are set for the whole stream here: reconnect with"
                                                    " the keyterm parameter"))
        return None  # KeepAlive: nothing to do

    async def audio(self, data: bytes) -> None:
        """One binary frame (at most ``VOXLANE_MAX_FRAME_KB``: the reader dropped a bigger one)."""
        pub = await self._publisher()
        if pub is None:
            return  # the disk is full: STORAGE_FULL was sent once; audio still coming is dropped
        self.sha256.update(data)
        g711 = G711.get(self.params.encoding or "")
        if g711 is not None:
            data = await asyncio.to_thread(g711_to_pcm16, data, g711) if len(data) > OFF_LOOP else g711_to_pcm16(
                data, g711)
        for start in range(0, len(data), self.max_frame):  # each slice a native frame: decoded off-loop, paced
            await pub.feed_bytes(data[start:start + self.max_frame])

    async def _publisher(self) -> Publisher | None:
        """The running publisher, started by the first audio (or after the last one ended for idleness)."""
        if self.publisher is not None and not self.publisher.finished:
            return self.publisher
        p = self.params
        pcm = p.encoding is not None and p.voxlane_format not in ("ogg", "flac")
        params = StartParams(format="pcm_s16le" if pcm else p.voxlane_format,
                             sample_rate=p.sample_rate or 16000, channels=p.channels, split_channels=p.multichannel,
                             diarization=p.diarize, language=p.language, key_terms=p.key_terms or None,
                             vad_events=p.vad_events or p.utterance_end_ms is not None)
        return await self.start_publisher(params, FLUSH_WAIT_S, _refused)

    def _emitted(self) -> int:
        """Segment finals the current publisher's sessions have emitted."""
        pub = self.publisher
        if pub is None:
            return 0
        return sum(p.session.segments_emitted for p in getattr(pub, "channels", None) or [pub])

    async def _finalize(self) -> None:
        pub = self.publisher
        if pub is None or pub.finished:
            self.reply(self.mapper.results([], 0, 0.0, 0.0, final=True, speech_final=False, from_finalize=True))
            return
        self.sub.put({"type": _HOLD})
        target = 0
        try:
            await pub.pause()  # the open segment is closed now, as the native 'pause' does ...
            await pub.resume()  # ... and the audio that follows is transcribed as before
            subs = getattr(pub, "channels", None) or [pub]
            await asyncio.wait_for(asyncio.gather(*(p.session.wait_backlog(0) for p in subs)), FLUSH_WAIT_S)
            target = self._emitted()
        except TimeoutError:
            log.warning("transcript %s: the finals of a Finalize took over %.0f s", self.transcript_id, FLUSH_WAIT_S)
        finally:
            self.sub.put({"type": _FINALIZED, "target": target})

    async def _close_stream(self) -> Closing:
        """Every final out, then Metadata, then close."""
        target = 0
        if self.publisher is not None:
            await self.publisher.finish()
            target = self._emitted()
        return Closing(CLOSE_NORMAL, target=target)

    def metadata(self) -> Metadata:
        pub = self.publisher
        seconds = pub.pacer.seconds if pub is not None else 0.0
        return Metadata(request_id=self.transcript_id, sha256=self.sha256.hexdigest(), created=self.created,
                        duration=round(seconds, 3), channels=self.mapper.channels, models=[self.meta.model_uuid],
                        model_info={self.meta.model_uuid: self.model})

    # ------------------------------------------------------------ outbound

    def defer_close(self, msg: dict[str, Any]) -> bool:
        """A CloseStream's close waits for its finals (``target`` of them), then ``Metadata``."""
        if msg.get("target") is None:
            return False
        self.close_target = msg["target"]
        return True

    async def finished_sending(self) -> bool:
        if self.close_target is not None and self.mapper.finals >= self.close_target and self.held is None:
            await self.send(self.metadata())
            await self.ws.close(code=CLOSE_NORMAL)
            return True
        return False

    def wire(self, message: BaseModel) -> str:
        return wire(message)

    def outgoing(self, msg: dict[str, Any]) -> list[BaseModel]:
        kind = msg.get("type")
        if kind == REPLY:
            return [msg["message"]]
        if kind == PUBLISHER:
            self.mapper.finals = 0
            return []
        if kind == _HOLD:
            self.held = self.held if self.held is not None else []
            return []
        if kind == _FINALIZED:
            self.finalize_target = msg["target"]
            return self._release()
        data = msg.get("data") or {}
        if kind in ("transcription", "speech"):
            channel = self.mapper.channel(data.get("participant_id"))
            if channel is None:
                return []
            out = (self.mapper.transcription if kind == "transcription" else self.mapper.speech)(data, channel)
            if self.held is None:
                return out
            self.held.extend(out)
            return self._release()
        if kind == "error" and not (data.get("details") or {}).get("participant_id"):
            return [DgError(variant=data.get("code") or "INTERNAL_ERROR", description=data.get("message") or "")]
        return []  # status, diarization, summary: voxlane's own

    def _release(self) -> list[BaseModel]:
        """A Finalize's held messages, once its finals are in: the last segment final says ``from_finalize``."""
        if self.held is None or self.finalize_target is None or self.mapper.finals < self.finalize_target:
            return []
        held, self.held, self.finalize_target = self.held, None, None
        last = next((m for m in reversed(held) if isinstance(m, Results) and m.speech_final), None)
        if last is None:
            held.append(last := self.mapper.results([], 0, 0.0, 0.0, final=True, speech_final=False))
        last.from_finalize = True
        return held


def _refused(exc: ProtocolError) -> CloseWith:
    """A start the server refused: 1013 (try again) when it is the load, else 1011."""
    load = exc.code in (ErrorCode.OVERLOADED, ErrorCode.RATE_LIMITED)
    return CloseWith(CLOSE_TRY_AGAIN if load else CLOSE_INTERNAL, protocol_refusal(exc))
