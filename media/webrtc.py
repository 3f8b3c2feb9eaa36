"""WebRTC audio ingest transport (aiortc): one :class:`WebRtcPeer` per client connection.

This module is the transport half of WebRTC ingest. It knows SDP, ICE and audio frames, and
nothing about sessions, storage or the wire protocol: a peer turns the client's audio track into
16 kHz mono float32 chunks (:meth:`WebRtcPeer.on_audio`), hands over the text of a data channel
named ``control`` (:meth:`WebRtcPeer.on_control_message`) and says when the connection is over
(:meth:`WebRtcPeer.on_closed`). ``server/transports/webrtc.py`` subclasses it to drive a publisher.

Two handshakes are supported:

* the client offers (browsers): :meth:`WebRtcPeer.accept_offer` returns the answer;
* the server offers (clients that can only answer, e.g. gateways or bots built on stacks without
  an offerer role): :meth:`WebRtcPeer.create_offer` makes an offer with a receive-only audio
  transceiver and a ``control`` data channel, and :meth:`WebRtcPeer.accept_answer` completes it.

The server never trickles candidates: every offer or answer it returns already holds all of its
candidates, and it expects the same of the client (wait for ICE gathering to complete).

ICE: :class:`IceConfig` comes from ``VOXLANE_ICE_SERVERS`` (STUN/TURN, none by default: aiortc
would otherwise add a public STUN server) and ``VOXLANE_ICE_HOSTS`` (the local addresses host
candidates are gathered on). When every configured host is a loopback address the server runs
loopback-only: it also drops remote candidates that are not loopback, so no connectivity check
and no mDNS query ever leaves the machine.

A peer closes itself when its connection fails or closes, when it never connects, and when no
audio frame has arrived for a while (see the ``*_TIMEOUT_S`` constants); closing releases the
connection's sockets, decoder thread and tasks before :meth:`WebRtcPeer.on_closed` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable
from typing import cast

import av
import numpy as np
from aiortc import RTCDataChannel, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.audio import SAMPLE_RATE, s16_to_float
from media.ice import IceConfig, SdpError, filter_remote_candidates, gather_on, install_host_address_hook

log = logging.getLogger("voxlane.webrtc")

CONTROL_CHANNEL = "control"
CONNECT_TIMEOUT_S = 30.0
"""From the handshake (or from the server's offer, while it waits for an answer) to ``connected``."""
FIRST_AUDIO_TIMEOUT_S = 60.0
"""Connected but no audio frame yet (a browser may be showing its microphone permission prompt)."""
SILENCE_TIMEOUT_S = 10.0
"""No audio frame for this long after audio has flowed: the client is gone or stopped sending."""
WATCH_INTERVAL_S = 0.5
CLOSE_DRAIN_TIMEOUT_S = 5.0
"""How long closing waits for frames already received to be handed to :meth:`WebRtcPeer.on_audio`."""
MAX_AUDIO_LEAD_S = 10.0
"""Audio frames more than this far ahead of the wall clock (since the first frame) are dropped (see
:meth:`WebRtcPeer.on_audio_overrun`): RTP over UDP cannot be pushed back, and a peer that sends faster than
real time would otherwise cost CPU and memory without bound."""

_EMPTY = np.zeros(0, dtype=np.float32)


# ---------------------------------------------------------------------------------------- audio


class AudioConverter:
    """aiortc audio frames (Opus: 48 kHz stereo s16, 20 ms) -> 16 kHz mono float32.

    libswresample downmixes s16 stereo with unity gain (a float downmix adds about +3 dB and can
    leave samples beyond +-1.0). A change of input format (renegotiated codec) starts a new
    resampler after draining the old one.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._key: tuple[str, str, int] | None = None

    def convert(self, frame: av.AudioFrame) -> np.ndarray:
        chunks: list[np.ndarray] = []
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._key:
            chunks.append(self.flush())
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            self._key = key
        assert self._resampler is not None
        chunks.extend(_s16_mono(f) for f in self._resampler.resample(frame))
        return _join(chunks)

    def flush(self) -> np.ndarray:
        """The resampler's tail; the next frame starts a fresh resampler."""
        if self._resampler is None:
            return _EMPTY
        tail = _join([_s16_mono(f) for f in self._resampler.resample(None)])
        self._resampler = None
        self._key = None
        return tail


def _s16_mono(frame: av.AudioFrame) -> np.ndarray:
    return s16_to_float(frame.to_ndarray().tobytes())


def _join(chunks: list[np.ndarray]) -> np.ndarray:
    chunks = [c for c in chunks if c.size]
    if not chunks:
        return _EMPTY
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


# ---------------------------------------------------------------------------------------- peer


class WebRtcPeer:
    """One RTCPeerConnection that receives one audio track and a ``control`` data channel.

    Subclasses override the ``on_*`` hooks. ``on_audio`` is awaited by the single task that reads
    the track, so chunks arrive in order and a slow hook delays (never drops) later audio.
    ``on_control_message`` is called synchronously, in arrival order, from the event loop.
    """

    def __init__(self, ice: IceConfig, *, connect_timeout: float = CONNECT_TIMEOUT_S,
                 first_audio_timeout: float = FIRST_AUDIO_TIMEOUT_S,
                 silence_timeout: float = SILENCE_TIMEOUT_S, max_audio_lead: float = MAX_AUDIO_LEAD_S,
                 id_prefix: str = "") -> None:
        install_host_address_hook()
        self.id = id_prefix + secrets.token_urlsafe(12)  # a prefix tells which process holds the peer
        self.ice = ice
        self.connect_timeout = connect_timeout
        self.first_audio_timeout = first_audio_timeout
        self.silence_timeout = silence_timeout
        self.pc = RTCPeerConnection(configuration=ice.rtc_configuration())
        self.channel: RTCDataChannel | None = None
        self.frames_received = 0
        self.samples_received = 0  # at 16 kHz, after conversion
        self.max_audio_lead = max_audio_lead  # 0: no limit
        self.frames_dropped = 0  # beyond the lead on real time
        self._audio_in = 0.0  # seconds of audio in the frames taken
        self._first_audio: float | None = None
        self._overrun = False  # dropping frames (reported once, until the peer is back within half the lead)
        self.input_format: tuple[str, str, int] | None = None  # (format, layout, rate) of the first frame
        self.close_reason: str | None = None
        self._loop = asyncio.get_running_loop()
        self._created = self._loop.time()
        self._connected_at: float | None = None
        self._last_audio: float | None = None
        self._finishing = 0  # streams being finished: the silence timer waits for them (see finishing)
        self._converter = AudioConverter()
        self._audio_errors = 0
        self._audio_task: asyncio.Task | None = None
        self._close_task: asyncio.Task | None = None
        self._closed = asyncio.Event()
        self._watchdog = asyncio.create_task(self._watch(), name=f"webrtc-watch-{self.id}")
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("datachannel", self._on_datachannel)

    # ------------------------------------------------------------------ hooks

    async def on_audio(self, samples: np.ndarray) -> None:
        """16 kHz mono float32 audio, in order."""

    def on_control_open(self, channel: RTCDataChannel) -> None:
        """The ``control`` channel is open; :meth:`send_text` works from now on."""

    def on_control_message(self, data: str | bytes) -> None:
        """One message from the ``control`` channel."""

    def on_audio_overrun(self, lead: float) -> None:
        """Audio arrives faster than real time: frames beyond ``lead`` seconds ahead are being dropped (called
        once, and again only after the peer came back within half the lead)."""

    async def on_closed(self, reason: str) -> None:
        """The connection is closed and every received frame went through :meth:`on_audio`."""

    # ------------------------------------------------------------------ handshakes

    async def accept_offer(self, sdp: str) -> RTCSessionDescription:
        """The client offered: apply its offer, return the server's complete answer."""
        await self._set_remote(sdp, "offer")
        self._choose_audio()
        await self._set_local(await self.pc.createAnswer())
        return self.pc.localDescription

    async def create_offer(self) -> RTCSessionDescription:
        """The server offers: a receive-only audio transceiver and a ``control`` data channel."""
        self.pc.addTransceiver("audio", direction="recvonly")
        self._adopt_channel(self.pc.createDataChannel(CONTROL_CHANNEL))
        await self._set_local(await self.pc.createOffer())
        return self.pc.localDescription

    async def accept_answer(self, sdp: str) -> None:
        """The client answered the server's offer."""
        if self.pc.signalingState != "have-local-offer":
            raise SdpError(f"no offer is waiting for an answer (signaling state {self.pc.signalingState})")
        await self._set_remote(sdp, "answer")
        self._choose_audio()

    async def _set_remote(self, sdp: str, kind: str) -> None:
        if not isinstance(sdp, str) or not sdp.strip().startswith("v=0"):
            raise SdpError(f"the {kind} is not an SDP session description (it must start with 'v=0')")
        sdp, kept, dropped = filter_remote_candidates(sdp, self.ice)
        if dropped:
            log.debug("peer %s: dropped %d remote candidate(s) not allowed by VOXLANE_ICE_HOSTS", self.id, dropped)
            if not kept:
                raise SdpError(f"none of the {kind}'s ICE candidates can be used: this server only accepts"
                               f" candidates on {', '.join(self.ice.hosts)} (VOXLANE_ICE_HOSTS)",)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        except Exception as exc:  # aiortc raises ValueError, KeyError, IndexError, ... on bad SDP
            raise SdpError(f"the {kind} could not be applied: {type(exc).__name__}: {exc}") from None

    async def _set_local(self, description: RTCSessionDescription) -> None:
        with gather_on(self.ice.hosts):
            await self.pc.setLocalDescription(description)  # gathers every local candidate

    def _choose_audio(self) -> None:
        """Receive the first audio transceiver; make every other media section inactive."""
        chosen: RTCRtpTransceiver | None = None
        for t in self.pc.getTransceivers():
            track = t.receiver.track
            if chosen is None and t.kind == "audio" and track is not None:
                chosen = t
            elif t.currentDirection is None:  # still negotiating: refuse it in the answer
                t.direction = "inactive"
        if chosen is not None and self._audio_task is None:
            self._audio_task = asyncio.create_task(self._read_audio(chosen.receiver.track),
                                                   name=f"webrtc-audio-{self.id}")

    # ------------------------------------------------------------------ data channel

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != CONTROL_CHANNEL or self.channel is not None:
            log.info("peer %s: ignoring data channel %r", self.id, channel.label)
            channel.close()
            return
        self._adopt_channel(channel)

    def _adopt_channel(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("message", self.on_control_message)
        if channel.readyState == "open":
            self.on_control_open(channel)
        else:
            channel.on("open", lambda: self.on_control_open(channel))

    def send_text(self, text: str) -> bool:
        """Send on the ``control`` channel; False when it is not open."""
        channel = self.channel
        if channel is None or channel.readyState != "open" or self.closing:
            return False
        channel.send(text)
        return True

    # ------------------------------------------------------------------ audio

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                # an audio track's frames (aiortc types recv() for every kind of track)
                frame = cast(av.AudioFrame, await track.recv())
            except MediaStreamError:  # receiver stopped: every queued frame was delivered before this
                return
            if self.input_format is None:
                self.input_format = (frame.format.name, frame.layout.name, frame.sample_rate)
                log.info("peer %s: first audio frame %s %s %d Hz, %d samples", self.id, *self.input_format,
                         frame.samples)
            self.frames_received += 1
            self._last_audio = self._loop.time()
            if self._too_early(frame):
                continue
            samples = self._converter.convert(frame)
            if not samples.size:
                continue
            self.samples_received += samples.size
            try:
                await self.on_audio(samples)
            except Exception:  # keep reading: frames left unread would pile up in the track's queue
                self._audio_errors += 1
                if self._audio_errors == 1 or self._audio_errors % 500 == 0:
                    log.exception("peer %s: audio handler failed (%d times)", self.id, self._audio_errors)

    def _too_early(self, frame: av.AudioFrame) -> bool:
        """Whether the frame would put the audio taken beyond the lead on the wall clock (it is dropped before
        any work is spent on it)."""
        if self.max_audio_lead <= 0 or not frame.sample_rate:
            return False
        now = self._loop.time()
        if self._first_audio is None:
            self._first_audio = now
        seconds = frame.samples / frame.sample_rate
        ahead = self._audio_in + seconds - (now - self._first_audio)
        if ahead > self.max_audio_lead:
            self.frames_dropped += 1
            if not self._overrun:
                self._overrun = True
                log.warning("peer %s: audio arrives faster than real time; dropping frames beyond %g s ahead",
                            self.id, self.max_audio_lead)
                self.on_audio_overrun(self.max_audio_lead)
            return True
        if ahead < self.max_audio_lead / 2:  # the peer slowed down: a new overrun is reported again
            self._overrun = False
        self._audio_in += seconds
        return False

    def flush_audio(self) -> np.ndarray:
        """The converter's buffered tail (a few samples): call before ending a stream."""
        tail = self._converter.flush()
        self.samples_received += tail.size
        return tail

    # ------------------------------------------------------------------ lifetime

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState

    @property
    def closing(self) -> bool:
        return self._close_task is not None

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        log.debug("peer %s: connection %s", self.id, state)
        if state == "connected" and self._connected_at is None:
            self._connected_at = self._loop.time()
        elif state in ("failed", "closed"):
            self.close(f"connection {state}")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            now = self._loop.time()
            if self._connected_at is None:
                if now - self._created > self.connect_timeout:
                    self.close(f"not connected within {self.connect_timeout:g} s")
                    return
            elif self._last_audio is None:
                if now - self._connected_at > self.first_audio_timeout:
                    self.close(f"no audio within {self.first_audio_timeout:g} s of connecting")
                    return
            elif not self._finishing and now - self._last_audio > self.silence_timeout:
                self.close(f"no audio for {self.silence_timeout:g} s")
                return

    async def finishing(self, work: Awaitable[None]) -> None:
        """Run ``work``, the end of a stream the client asked to stop, with the silence timer held; it starts
        again when the work is done. The client sends no audio after "stop" and waits on this connection for
        the last finals and ``completed``: a loaded server that took longer than ``silence_timeout`` to read
        the last audio closed the connection between "stream finished" and "transcript complete"."""
        self._finishing += 1
        try:
            await work
        finally:
            self._finishing -= 1
            if self._last_audio is not None:
                self._last_audio = self._loop.time()

    def close(self, reason: str = "closed by server") -> Awaitable[None]:
        """Close once (later calls return the same closing); awaiting it waits for :meth:`on_closed`."""
        if self._close_task is None:
            self.close_reason = reason
            self._close_task = asyncio.ensure_future(self._close(reason))
        return asyncio.shield(self._close_task)

    async def wait_closed(self) -> None:
        """Until the peer has closed (for any reason) and :meth:`on_closed` has run."""
        await self._closed.wait()

    async def _close(self, reason: str) -> None:
        log.info("peer %s: closing (%s) after %d audio frames", self.id, reason, self.frames_received)
        if self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        try:
            await self.pc.close()  # stops the receiver: its decoder thread ends, the track ends
        except Exception:
            log.exception("peer %s: error while closing the peer connection", self.id)
        if self._audio_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._audio_task), CLOSE_DRAIN_TIMEOUT_S)
            except TimeoutError:
                log.warning("peer %s: audio reader did not finish; cancelling it", self.id)
                self._audio_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._audio_task
            except Exception:
                log.exception("peer %s: audio reader failed", self.id)
        if self.channel is not None:
            self.channel.remove_all_listeners()
        try:
            await self.on_closed(reason)
        except Exception:
            log.exception("peer %s: error in on_closed", self.id)
        finally:
            self._closed.set()
        with contextlib.suppress(BaseException):
            await self._watchdog
