"""WebRTC ingest with aiortc as the client (no browser), against a real loopback-only server."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from typing import Any

import av
import httpx
import numpy as np
import psutil
import pytest
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from conftest import stop_server
from webrtc_support import LOOPBACK, recording, settled, start_loopback_server, start_offset, wait_transcript

from bench.metrics import wer_counts
from media.ice import IceConfig, filter_remote_candidates, gather_on
from media.webrtc import WebRtcPeer
from server.cli.live_client import create_transcript, load_pcm16k, ws_url
from server.native_threads import TRIM_INTERVAL_S
from tests.http_support import TLS
from tests.rest_support import Api

pytest_plugins = ("tests.rest_fixtures",)

SPEECH = "single/librispeech_2412-153948-0000.wav"  # 11.7 s
SHORT = "single/librispeech_1089-134686_1utt.wav"  # 6.6 s
FRAME = 960  # 20 ms at 48 kHz


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    # no periodic status reports: a status message on the channel is then an answer or an event
    srv = start_loopback_server(tmp_path_factory.mktemp("voxlane-webrtc"), VOXLANE_STATUS_INTERVAL="0")
    yield srv
    stop_server(srv)


class FileTrack(AudioStreamTrack):
    """Plays 16 kHz mono audio as a browser would send it: 48 kHz stereo s16, 20 ms frames, real time (or
    ``speed`` times that: a hostile peer).

    The track ends after the last frame (or blocks forever with ``hang=True``, a client gone silent).
    """

    def __init__(self, audio16k: np.ndarray | None, hang: bool = False, speed: float = 1.0) -> None:
        super().__init__()
        if audio16k is None or not len(audio16k):
            self.pcm = np.zeros(0, dtype=np.int16)
        else:
            frame = av.AudioFrame.from_ndarray(np.rint(np.clip(audio16k, -1, 1) * 32767).astype(np.int16)
                                               .reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = 16000
            up = av.AudioResampler(format="s16", layout="stereo", rate=48000)
            self.pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in up.resample(frame) + up.resample(None)])
        self.hang = hang
        self.speed = speed
        self.sent = 0
        self._t0: float | None = None
        self.finished = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        start = self.sent * FRAME * 2
        if start >= len(self.pcm):
            self.finished.set()
            if self.hang:
                await asyncio.Event().wait()
            self.stop()
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.monotonic()
        delay = self._t0 + self.sent * 0.02 / self.speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = self.pcm[start: start + FRAME * 2]
        if len(chunk) < FRAME * 2:
            chunk = np.pad(chunk, (0, FRAME * 2 - len(chunk)))
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = self.sent * FRAME
        frame.time_base = fractions.Fraction(1, 48000)
        self.sent += 1
        return frame


class RtcClient:
    """A minimal WebRTC publisher: one audio track and the ``control`` data channel."""

    def __init__(self, base: str, transcript_id: str) -> None:
        self.base = base
        self.transcript_id = transcript_id
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = None
        self.messages: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._open = asyncio.Event()
        self.session_id: str | None = None

    def _adopt(self, channel) -> None:
        self.channel = channel
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self._open.set()
        channel.on("open", self._open.set)

    def _on_message(self, text: str) -> None:
        self.messages.append(json.loads(text))
        self._arrived.set()

    async def connect(self, track: FileTrack | None, server_offers: bool = False, within: float = 10) -> None:
        url = f"{self.base}/v1/transcripts_webrtc/{self.transcript_id}"
        async with httpx.AsyncClient(verify=TLS, timeout=30) as http:
            if server_offers:
                r = await http.post(url + "/offer")
                assert r.status_code == 200, r.text
                offer = r.json()
                assert offer["type"] == "offer"
                self.session_id = offer["session_id"]
                self.pc.on("datachannel", self._adopt)
                await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
                if track is not None:
                    self.pc.addTrack(track)
                with gather_on([LOOPBACK]):
                    await self.pc.setLocalDescription(await self.pc.createAnswer())
                r = await http.post(url + "/answer", json={"session_id": self.session_id, "type": "answer",
                                                           "sdp": self.pc.localDescription.sdp})
                assert r.status_code == 200, r.text
            else:
                if track is not None:
                    self.pc.addTrack(track)
                self._adopt(self.pc.createDataChannel("control"))
                with gather_on([LOOPBACK]):
                    await self.pc.setLocalDescription(await self.pc.createOffer())
                r = await http.post(url + "/offer", json={"type": "offer", "sdp": self.pc.localDescription.sdp})
                assert r.status_code == 200, r.text
                answer = r.json()
                assert answer["type"] == "answer"
                self.session_id = answer["session_id"]
                await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        for line in answer_or_offer_candidates(self.pc.remoteDescription.sdp):
            assert f" {LOOPBACK} " in line, f"server offered a non-loopback candidate: {line}"
        await asyncio.wait_for(self._open.wait(), within)
        assert self.pc.connectionState == "connected"

    def send(self, action: str, params: dict | None = None, raw: str | None = None) -> int:
        """Send an action; returns the index of the next message, for :meth:`wait_for`."""
        assert self.channel is not None
        mark = len(self.messages)
        self.channel.send(raw if raw is not None else json.dumps({"action": action, "params": params or {}}))
        return mark

    async def wait_for(self, pred, since: int = 0, within: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for m in self.messages[since:]:
                if pred(m):
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message; got {self.messages[since:]}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                pass

    def finals(self) -> list[dict[str, Any]]:
        return [m["data"] for m in self.messages if m["type"] == "transcription" and m["data"]["is_final"]]

    async def close(self) -> None:
        await self.pc.close()


def answer_or_offer_candidates(sdp: str) -> list[str]:
    return [line for line in sdp.splitlines() if line.startswith("a=candidate:")]


def is_status(status: str, message: str | None = None):
    def pred(m: dict) -> bool:
        return m["type"] == "status" and m["data"]["status"] == status and (
            message is None or m["data"]["message"] == message)
    return pred


async def ws_listen(server, transcript_id: str, out: list[dict], stop: asyncio.Event) -> None:
    async with websockets.connect(ws_url(server.url, transcript_id)) as ws:
        while not stop.is_set():
            try:
                out.append(json.loads(await asyncio.wait_for(ws.recv(), 0.2)))
            except TimeoutError:
                continue


# ---------------------------------------------------------------------------------------- tests


async def test_stream_actions_subscribers_and_recording(server, audio_dir, references):
    """Browser-style handshake; get_status, stop; a WebSocket subscriber; text, timing and audio checks."""
    audio = load_pcm16k(audio_dir / SPEECH)
    tid = await create_transcript(server.url, "webrtc")
    ws_messages: list[dict] = []
    ws_done = asyncio.Event()
    watcher = asyncio.create_task(ws_listen(server, tid, ws_messages, ws_done))
    track = FileTrack(audio)
    client = RtcClient(server.url, tid)
    try:
        await client.connect(track)
        # the channel opens with the transcript's status; get_status is answered on it
        await client.wait_for(lambda m: m["type"] == "status")
        mark = client.send("get_status")
        reply = await client.wait_for(lambda m: m["type"] == "status", since=mark, within=2)
        assert reply["data"]["status"] in ("processing", "initializing")

        await asyncio.wait_for(track.finished.wait(), len(audio) / 16000 + 10)
        await asyncio.sleep(0.3)
        mark = client.send("stop")
        done = await client.wait_for(is_status("completed", "transcript complete"), since=mark, within=60)
        finals = client.finals()
        assert finals, client.messages
        last_final = max(i for i, m in enumerate(client.messages)
                         if m["type"] == "transcription" and m["data"]["is_final"])
        assert last_final < client.messages.index(done), "finals must precede 'completed'"
        # audio after stop is not transcribed, and 'stop' again has nothing to stop
        mark = client.send("stop")
        err = await client.wait_for(lambda m: m["type"] == "error", since=mark)
        assert err["data"]["code"] == "NOT_STARTED"
    finally:
        await client.close()
        await asyncio.sleep(0.5)
        ws_done.set()
        await watcher

    text = " ".join(f["text"] for f in finals)
    errors, words = wer_counts(references[SPEECH]["text"], text)
    print(f"\nWebRTC WER {errors}/{words} = {errors / words:.3f}: {text}")
    assert errors / words <= 0.25, text

    # a WebSocket subscriber sees the WebRTC publisher's messages
    ws_finals = [m["data"]["segment_id"] for m in ws_messages if m["type"] == "transcription" and m["data"]["is_final"]]
    assert ws_finals == [f["segment_id"] for f in finals]
    assert any(m["type"] == "transcription" and not m["data"]["is_final"] for m in ws_messages), "no partials"
    assert any(is_status("completed")(m) for m in ws_messages)

    # stored like any transcript
    row = await wait_transcript(server, tid, "completed")
    assert [s["text"] for s in row["segments"]] == [f["text"] for f in finals]

    # every sample arrived, in time order, from the first one
    rec = recording(server, tid)
    got, want = len(rec) / 16000, len(audio) / 16000
    offset, corr = start_offset(rec, audio)
    print(f"recorded {got:.3f} s of a {want:.3f} s file; first second at {offset * 1000:+.1f} ms, r={corr:.3f}")
    assert abs(got - want) <= 0.3
    assert 0 <= offset <= 0.05, "the start of the audio was lost or delayed"
    assert corr >= 0.8


async def test_server_offer_pause_resume_and_disconnect_without_stop(server, audio_dir):
    """Reverse handshake; protocol errors, pause/start, participant_event; closing without stop keeps finals."""
    audio = load_pcm16k(audio_dir / SHORT)
    tid = await create_transcript(server.url, "webrtc-reverse")
    track = FileTrack(audio)
    client = RtcClient(server.url, tid)
    await client.connect(track, server_offers=True)
    try:
        # the same offer cannot be answered twice, and a session belongs to its transcript
        body = {"session_id": client.session_id, "type": "answer", "sdp": client.pc.localDescription.sdp}
        async with httpx.AsyncClient(verify=TLS, timeout=30) as http:
            r = await http.post(f"{server.url}/v1/transcripts_webrtc/{tid}/answer", json=body)
            assert r.status_code == 409, r.text
            other = await create_transcript(server.url, "other")
            r = await http.post(f"{server.url}/v1/transcripts_webrtc/{other}/answer", json=body)
            assert r.status_code == 404, r.text

        mark = client.send("", raw="{not json")
        assert (await client.wait_for(lambda m: m["type"] == "error", since=mark))["data"]["code"] == "INVALID_JSON"
        mark = client.send("dance")
        assert (await client.wait_for(lambda m: m["type"] == "error", since=mark))["data"]["code"] == "UNKNOWN_ACTION"

        await client.wait_for(is_status("processing", "receiving audio"))  # the first frame started the stream
        await asyncio.sleep(1.5)
        mark = client.send("pause")
        await client.wait_for(is_status("paused"), since=mark)
        mark = client.send("get_status")
        assert (await client.wait_for(lambda m: m["type"] == "status", since=mark))["data"]["status"] == "paused"
        await asyncio.sleep(0.5)
        mark = client.send("start")
        await client.wait_for(is_status("processing", "resumed"), since=mark)
        mark = client.send("participant_event", {"type": "chat_message", "data": {"text": "hello"}})
        mark = client.send("get_status")  # answered after the event was handled: no error in between
        await client.wait_for(lambda m: m["type"] == "status", since=mark)
        assert not [m for m in client.messages[mark - 1:] if m["type"] == "error"]

        await asyncio.wait_for(track.finished.wait(), len(audio) / 16000 + 10)
        await asyncio.sleep(0.3)
    finally:
        await client.close()  # no "stop": the server notices the closed connection

    row = await wait_transcript(server, tid, "completed")
    assert row["segments"], row
    assert "".join(s["text"] for s in row["segments"]).strip()
    rec = recording(server, tid)
    assert abs(len(rec) - len(audio)) / 16000 <= 0.3  # paused audio is stored too
    assert (await settled(server, within=10))["webrtc_sessions"] == 0


async def test_http_errors(server):
    tid = await create_transcript(server.url, "webrtc-errors")
    base = f"{server.url}/v1/transcripts_webrtc"
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("control")
    pc.addTransceiver("audio", direction="sendonly")
    with gather_on([LOOPBACK]):
        await pc.setLocalDescription(await pc.createOffer())
    good = pc.localDescription.sdp
    await pc.close()
    async with httpx.AsyncClient(verify=TLS, timeout=30) as http:
        async def post(path: str, **kw) -> httpx.Response:
            return await http.post(base + path, **kw)

        r = await post("/nope/offer", json={"type": "offer", "sdp": good})
        assert r.status_code == 404 and r.json()["error"]["code"] == "TRANSCRIPT_NOT_FOUND"
        r = await post("/nope/answer", json={"session_id": "x", "type": "answer", "sdp": good})
        assert r.status_code == 404
        r = await post(f"/{tid}/offer", json={"type": "offer"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "VALIDATION_ERROR"
        r = await post(f"/{tid}/offer", content=b"{broken")
        assert r.status_code == 400
        r = await post(f"/{tid}/offer", json={"type": "offer", "sdp": "hello"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_SDP"
        r = await post(f"/{tid}/offer", json={"type": "offer", "sdp": "v=0\r\nm=audio x\r\na=candidate:garbage\r\n"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_SDP"
        # loopback-only: an offer whose candidates are all elsewhere cannot connect, and says why
        elsewhere = good.replace(f" {LOOPBACK} ", " 192.0.2.7 ")
        r = await post(f"/{tid}/offer", json={"type": "offer", "sdp": elsewhere})
        assert r.status_code == 400 and "VOXLANE_ICE_HOSTS" in r.json()["error"]["message"]
        r = await post(f"/{tid}/answer", json={"session_id": "unknown", "type": "answer", "sdp": good})
        assert r.status_code == 404
        r = await post(f"/{tid}/answer", json={"type": "answer", "sdp": good})
        assert r.status_code == 422


async def test_offer_needs_write_scope(private_api: Api):
    """A WebRTC connection publishes audio: a read-only token cannot open one (nor answer an offer)."""
    api = private_api
    tid = (await api.client.post("/v1/transcripts/", json={"name": "rtc"}, headers=api.auth("alice"))).json()["id"]
    reader = api.auth("alice", ["transcripts:read"])
    base = f"/v1/transcripts_webrtc/{tid}"
    sessions = len(api.app.state.webrtc)
    for path, body in (("/offer", {"type": "request"}), ("/answer", {"session_id": "x", "type": "answer",
                                                                      "sdp": "v=0"})):
        r = await api.client.post(base + path, json=body, headers=reader)
        assert r.status_code == 403 and r.json()["error"]["code"] == "INSUFFICIENT_SCOPE", r.text
    assert len(api.app.state.webrtc) == sessions


async def test_faster_than_real_time_peer_is_held_to_the_lead(server, audio_dir):
    """A peer that sends 47 s of audio in about a second: frames beyond the 10 s lead on the wall clock are
    dropped (RTP cannot be pushed back), the peer is told once (RATE_LIMITED), and the stream goes on."""
    audio = np.tile(load_pcm16k(audio_dir / SPEECH), 4)
    tid = await create_transcript(server.url, "webrtc-fast")
    track = FileTrack(audio, speed=40)
    client = RtcClient(server.url, tid)
    try:
        await client.connect(track)
        started = time.monotonic()
        await asyncio.wait_for(track.finished.wait(), 30)
        sent_for = time.monotonic() - started
        err = await client.wait_for(lambda m: m["type"] == "error")
        assert err["data"]["code"] == "RATE_LIMITED" and err["data"]["details"]["max_audio_lead_seconds"] == 10
        await asyncio.sleep(0.5)
        mark = client.send("stop")
        await client.wait_for(is_status("completed", "transcript complete"), since=mark, within=60)
        assert [m["data"]["code"] for m in client.messages if m["type"] == "error"] == ["RATE_LIMITED"]
    finally:
        await client.close()
    got = len(recording(server, tid)) / 16000
    print(f"recorded {got:.1f} s of {len(audio) / 16000:.1f} s sent in {sent_for:.1f} s")
    assert 5 < got <= 10 + sent_for + 2.0


def test_candidate_filter():
    sdp = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
           "a=candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host generation 0\r\n"
           "a=candidate:2 1 udp 2122260223 127.0.0.1 50001 typ host generation 0\r\n"
           "a=candidate:3 1 udp 2122260223 3f1c0e44-1b2a.local 50002 typ host generation 0\r\n"
           "a=candidate:4 1 udp 2122262783 fe80::1 50003 typ host generation 0\r\n"
           "a=candidate:5 1 udp 2122262783 ::1 50004 typ host generation 0\r\n")
    out, kept, dropped = filter_remote_candidates(sdp, IceConfig.from_settings("", "127.0.0.1"))
    assert (kept, dropped) == (1, 4) and " 127.0.0.1 " in out and ".local" not in out
    out, kept, dropped = filter_remote_candidates(sdp, IceConfig.from_settings("", ""))
    assert (kept, dropped) == (5, 0) and out == sdp
    out, kept, dropped = filter_remote_candidates(sdp, IceConfig.from_settings("", "127.0.0.1, ::1"))
    assert (kept, dropped) == (2, 3)
    assert not IceConfig.from_settings("", "10.0.0.5").loopback_only
    ice = IceConfig.from_settings("stun:127.0.0.1:3478, turn:u:p@127.0.0.1:3479?transport=tcp", "")
    assert [(s.urls, s.username, s.credential) for s in ice.servers] == [
        ("stun:127.0.0.1:3478", None, None), ("turn:127.0.0.1:3479?transport=tcp", "u", "p")]
    for bad_hosts, bad_servers in (("localhost", ""), ("", "http://x"), ("", "turn:127.0.0.1")):
        with pytest.raises(ValueError):
            IceConfig.from_settings(bad_servers, bad_hosts)


async def offer_half_a_second(server_peer: WebRtcPeer, client: RTCPeerConnection, audio_dir) -> tuple[FileTrack, str]:
    """Connect ``client`` to ``server_peer`` in process with a track of 0.5 s of speech and then nothing; the track
    and the server's answer SDP."""
    track = FileTrack(load_pcm16k(audio_dir / SHORT)[:8000], hang=True)
    client.addTrack(track)
    with gather_on([LOOPBACK]):
        await client.setLocalDescription(await client.createOffer())
    answer = await server_peer.accept_offer(client.localDescription.sdp)
    await client.setRemoteDescription(answer)
    return track, answer.sdp


async def test_silent_peer_is_closed(audio_dir):
    """In process, with a short timeout: a client that stops sending audio is closed and released."""
    closed: list[str] = []
    received: list[np.ndarray] = []

    class Peer(WebRtcPeer):
        async def on_audio(self, samples: np.ndarray) -> None:
            received.append(samples)

        async def on_closed(self, reason: str) -> None:
            closed.append(reason)

    server_peer = Peer(IceConfig.from_settings("", LOOPBACK), silence_timeout=1.0)
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        track, answer = await offer_half_a_second(server_peer, client, audio_dir)
        assert all(f" {LOOPBACK} " in c for c in answer_or_offer_candidates(answer))
        await asyncio.wait_for(track.finished.wait(), 10)
        await asyncio.wait_for(server_peer.wait_closed(), 10)
    finally:
        await client.close()
    assert closed == ["no audio for 1 s"]
    assert server_peer.pc.connectionState == "closed"
    assert 0.3 <= sum(len(r) for r in received) / 16000 <= 0.5


async def test_a_peer_finishing_its_stream_is_not_closed_as_silent(audio_dir):
    """After "stop" the client sends no audio and waits for its finals: while the stream is being finished the
    silence timer waits, and it runs again from the end of the finishing."""
    closed: list[tuple[str, float]] = []

    class Peer(WebRtcPeer):
        async def on_audio(self, samples: np.ndarray) -> None:
            return None

        async def on_closed(self, reason: str) -> None:
            closed.append((reason, time.monotonic()))

    server_peer = Peer(IceConfig.from_settings("", LOOPBACK), silence_timeout=1.0)
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        track, _ = await offer_half_a_second(server_peer, client, audio_dir)
        await asyncio.wait_for(track.finished.wait(), 10)
        await server_peer.finishing(asyncio.sleep(2.5))  # a slow finish: longer than the silence timeout
        done = time.monotonic()
        assert not closed, "closed while the stream was being finished"
        await asyncio.wait_for(server_peer.wait_closed(), 10)
    finally:
        await client.close()
    assert [r for r, _ in closed] == ["no audio for 1 s"]
    assert closed[0][1] - done >= 0.9


async def test_connect_disconnect_cycles_do_not_leak(server, audio_dir):
    """50 quick sessions (some with a second of speech, some with none) leave the server as they found it."""
    audio = load_pcm16k(audio_dir / SHORT)[:16000]
    tid = await create_transcript(server.url, "webrtc-cycles")
    proc = psutil.Process(server.process.pid)

    async def cycle(i: int) -> None:
        client = RtcClient(server.url, tid)
        with_audio = i % 3 == 0
        track = FileTrack(audio if with_audio else None, hang=not with_audio)
        await client.connect(track, server_offers=(i % 2 == 1))
        if with_audio:
            await asyncio.wait_for(track.finished.wait(), 10)
            if i % 2 == 0:
                mark = client.send("stop")
                await client.wait_for(is_status("completed"), since=mark, within=30)
        await client.close()
        if with_audio:  # the transcript takes one anonymous publisher at a time: let this one finish
            await settled(server, within=30, pause=0)

    for i in range(3):  # warm up: imports, first-use caches, thread pools
        await cycle(i)
    # each reading after the server's heap trimmer has run (server.native_threads): read before it, the RSS
    # counts what the last sessions freed and glibc still holds, which is not a leak
    before = await settled(server, pause=TRIM_INTERVAL_S + 1)
    fds0, rss0 = proc.num_fds(), proc.memory_info().rss
    t0 = time.monotonic()
    for i in range(50):
        await cycle(i)
    took = time.monotonic() - t0
    after = await settled(server, pause=TRIM_INTERVAL_S + 1)
    fds1, rss1 = proc.num_fds(), proc.memory_info().rss
    print(f"\n50 cycles in {took:.1f} s: tasks {before['tasks']}->{after['tasks']}, threads {before['threads']}->"
          f"{after['threads']}, fds {fds0}->{fds1}, rss {rss0 / 2**20:.1f}->{rss1 / 2**20:.1f} MiB")
    assert after["webrtc_sessions"] == 0
    assert after["tasks"] <= before["tasks"] + 2
    assert after["threads"] <= before["threads"] + 2
    assert fds1 <= fds0 + 5
    assert rss1 - rss0 <= 40 * 2**20


async def test_server_shutdown_finishes_open_streams(tmp_path, audio_dir):
    """Stopping the server ends each WebRTC stream like 'stop' (finals, then completed) before closing it. On the
    synthetic backend: the shutdown's order is the subject, not the words."""
    srv = start_loopback_server(tmp_path, VOXLANE_ASR_BACKEND="synthetic")
    client = None
    try:
        tid = await create_transcript(srv.url, "webrtc-shutdown")
        client = RtcClient(srv.url, tid)
        await client.connect(FileTrack(load_pcm16k(audio_dir / SPEECH)[:5 * 16000]))
        await client.wait_for(is_status("processing", "receiving audio"))
        await asyncio.sleep(4)
        srv.process.terminate()
        await client.wait_for(is_status("completed", "transcript complete"), within=30)
        assert client.finals()
        for _ in range(100):
            if srv.process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert srv.process.poll() is not None, "the server did not exit"
    finally:
        if client is not None:
            await client.close()
        stop_server(srv)
