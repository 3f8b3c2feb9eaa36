"""Slow, stuck, silent and half-open peers against a real server: none of them delays anyone else, and each is
closed by a timeout rather than held forever. The server runs the synthetic backend (one word per 0.3 s of speech,
at once): what a peer does to the others is the subject, and without a model's decode times in the latencies a
delay a peer causes stands out the more.

The stuck peer is a real TCP client with a tiny receive buffer that completes the WebSocket handshake and then
never reads (it does not answer pings either): a dashboard on a dead laptop, a half-open connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import numpy as np
import psutil
import pytest
import websockets

from bench.metrics import final_latencies, wer_counts
from media import float_to_s16
from server.cli.live_client import StreamRecord, create_transcript, load_pcm16k, stream_audio, subscribe, ws_url
from tests.conftest import RunningServer, served
from tests.http_support import TLS

SPEECH = "single/librispeech_1221-135766_2utt.wav"  # 21.6 s, two utterances
STUCK_SPEECH = "single/librispeech_2412-153948-0000.wav"  # 11.7 s: longer than the stuck peer may stay
IDLE_TIMEOUT = 6.0
SEND_TIMEOUT = 3.0
PUBLISHER_IDLE = 4.0
HEADER_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def peers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with served(tmp_path_factory.mktemp("peers"), VOXLANE_IDLE_TIMEOUT=str(IDLE_TIMEOUT),
                VOXLANE_SEND_TIMEOUT=str(SEND_TIMEOUT), VOXLANE_PUBLISHER_IDLE_TIMEOUT=str(PUBLISHER_IDLE),
                VOXLANE_HTTP_HEADER_TIMEOUT=str(HEADER_TIMEOUT), VOXLANE_HTTP_BODY_TIMEOUT=str(HEADER_TIMEOUT),
                VOXLANE_PING_INTERVAL="1", VOXLANE_STATUS_INTERVAL="0.5", VOXLANE_DIARIZATION="off",
                VOXLANE_ASR_BACKEND="synthetic") as srv:
        yield srv


# ---------------------------------------------------------------- a raw WebSocket peer that never reads


def _frame(payload: bytes, opcode: int = 1) -> bytes:
    """One masked client frame (RFC 6455)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    data = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)
    return head + mask + data.tobytes()


def stuck_peer(base: str, transcript_id: str, rcvbuf: int = 4096) -> socket.socket:
    """Handshake, then nothing is ever read again (the 101 head is read byte by byte, so no frame is)."""
    url = urlparse(base)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((url.hostname, url.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /v1/transcripts_websocket/{transcript_id} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Read what is buffered; True once the server has closed (EOF or reset) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(1 << 16):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def server_rss_mb(server: RunningServer) -> float:
    return psutil.Process(server.process.pid).memory_info().rss / 2**20


async def _publish_and_listen(server: RunningServer, audio: np.ndarray, tid: str) -> tuple[StreamRecord, list]:
    done = asyncio.Event()
    listener = asyncio.create_task(subscribe(server.url, tid, done))
    await asyncio.sleep(0.3)
    rec = await stream_audio(server.url, audio, transcript_id=tid)
    done.set()
    return rec, await listener


def _latencies(rec: StreamRecord) -> list[float]:
    """From each segment's last audio sent to its final, and from each word's to the first message that holds it
    final: what a subscriber waits for."""
    return final_latencies(rec) + [t - rec.sent_at(end) for end, t in _word_commits(rec).values()]


def _word_commits(rec: StreamRecord) -> dict[tuple[str, int], tuple[float, float]]:
    """Each final word, by its segment and place in it: its end in the stream and when it was first shown final."""
    out: dict[tuple[str, int], tuple[float, float]] = {}
    for r in rec.transcriptions:
        for i, w in enumerate(r.data.get("words") or []):
            if (r.data["is_final"] or w["final"]) and (r.data["segment_id"], i) not in out:
                out[(r.data["segment_id"], i)] = (w["end"], r.t)
    return out


async def test_stuck_subscriber_delays_nobody_and_is_cut_off(peers_server, audio_dir):
    audio = load_pcm16k(audio_dir / STUCK_SPEECH)

    tid = await create_transcript(peers_server.url, "without a stuck peer")
    alone, _ = await _publish_and_listen(peers_server, audio, tid)
    base = _latencies(alone)
    assert alone.completed and base

    tid = await create_transcript(peers_server.url, "with a stuck peer")
    rss_before = server_rss_mb(peers_server)
    stuck = stuck_peer(peers_server.url, tid)
    # it asks for a lot and reads none of it: its queue and socket fill while the stream runs
    stuck.sendall(b"".join(_frame(b'{"action":"get_status"}') for _ in range(3000)))
    t_stuck = time.monotonic()
    rec, watcher = await _publish_and_listen(peers_server, audio, tid)
    with_stuck = _latencies(rec)
    assert rec.completed and with_stuck
    errors, words = wer_counts(alone.final_text, rec.final_text)  # live timing moves a word or two, no more
    assert errors / words < 0.15, (alone.final_text, rec.final_text)
    # the normal subscriber heard every final, as the publisher did
    heard = {m.data["segment_id"] for m in watcher if m.type == "transcription" and m.data["is_final"]}
    assert heard == {f["segment_id"] for f in rec.finals}
    # a generous bound: the stuck peer costs the others nothing measurable
    assert max(with_stuck) <= max(base) * 2 + 1.5, (base, with_stuck)

    # it was cut off (its socket fills up, or it answers no WebSocket ping), well before the stream ended
    assert closed_by_server(stuck, within=max(1.0, IDLE_TIMEOUT + SEND_TIMEOUT + 10 - (time.monotonic() - t_stuck)))
    stuck.close()
    assert server_rss_mb(peers_server) - rss_before < 200
    async with httpx.AsyncClient(verify=TLS, timeout=10) as client:
        health = (await client.get(peers_server.url + "/health?verbose=1")).json()
    assert health["status"] == "ok"


async def test_silent_half_open_websocket_is_closed(peers_server):
    """Sends nothing, reads nothing, answers no ping: closed within about VOXLANE_IDLE_TIMEOUT."""
    tid = await create_transcript(peers_server.url, "half open")
    sock = stuck_peer(peers_server.url, tid, rcvbuf=1 << 16)
    started = time.monotonic()
    assert closed_by_server(sock, within=IDLE_TIMEOUT * 2 + 5), "a silent peer was held open"
    assert time.monotonic() - started >= IDLE_TIMEOUT / 2 - 0.5  # not before a ping went unanswered
    sock.close()


async def test_quiet_listener_that_answers_pings_stays(peers_server):
    """A dashboard sends nothing but its client answers pings: it is not idle."""
    tid = await create_transcript(peers_server.url, "listener")
    async with websockets.connect(ws_url(peers_server.url, tid)) as ws:
        end = time.monotonic() + IDLE_TIMEOUT * 1.5
        while time.monotonic() < end:
            msg = json.loads(await asyncio.wait_for(ws.recv(), IDLE_TIMEOUT))
            assert msg["type"] in ("status", "ping")


async def test_publisher_that_goes_silent_is_finished(peers_server, audio_dir):
    """Audio stops without a 'stop' and the socket stays open: the stream is finished, its finals stored."""
    audio = load_pcm16k(audio_dir / SPEECH)[: 8 * 16000]
    tid = await create_transcript(peers_server.url, "silent publisher")
    async with websockets.connect(ws_url(peers_server.url, tid), max_size=None) as ws:
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}}))
        for i in range(0, len(audio), 3200):
            await ws.send(float_to_s16(audio[i:i + 3200]))
            await asyncio.sleep(0.05)
        went_quiet = time.monotonic()
        messages = []
        deadline = went_quiet + PUBLISHER_IDLE + 30
        while not (messages and messages[-1]["type"] == "status"
                   and messages[-1]["data"].get("message") == "transcript complete"):
            assert time.monotonic() < deadline, "a publisher that went silent was never finished"
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic())))
        assert time.monotonic() - went_quiet >= PUBLISHER_IDLE - 0.5
    finals = [m["data"] for m in messages if m["type"] == "transcription" and m["data"]["is_final"]]
    assert finals
    assert abs(peers_server.recorded_frames(tid) - len(audio)) < 160  # every sample it sent, up to when it went quiet
    async with httpx.AsyncClient(verify=TLS, timeout=10) as client:
        body = (await client.get(f"{peers_server.url}/v1/transcripts/{tid}")).json()
    assert body["status"] == "completed"
    assert [s["id"] for s in body["segments"]] == [f["segment_id"] for f in finals]


def _raw_http(server: RunningServer) -> socket.socket:
    url = urlparse(server.url)
    return socket.create_connection((url.hostname, url.port))


def test_slowloris_headers_are_cut_off(peers_server):
    """A request head sent a byte at a time never completes: the connection is closed at the header deadline."""
    sock = _raw_http(peers_server)
    started = time.monotonic()
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    closed = False
    for b in head:
        try:
            sock.send(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        sock.settimeout(0.5)
        try:
            if sock.recv(4096) == b"":
                closed = True
                break
        except TimeoutError:
            pass
        if time.monotonic() - started > HEADER_TIMEOUT + 10:
            break
    assert closed, "a trickled request head held its connection open"
    assert HEADER_TIMEOUT - 0.5 <= time.monotonic() - started <= HEADER_TIMEOUT + 5
    sock.close()


def test_stalled_body_is_cut_off_and_a_connect_that_sends_nothing_too(peers_server):
    sock = _raw_http(peers_server)
    sock.sendall(b"POST /v1/transcripts/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"name\": ")
    assert closed_by_server(sock, within=HEADER_TIMEOUT + 5), "a stalled request body held its connection"
    sock.close()
    idle = _raw_http(peers_server)
    assert closed_by_server(idle, within=HEADER_TIMEOUT + 5), "a connection that sent nothing was held open"
    idle.close()
    # and a normal request still works
    assert httpx.get(peers_server.url + "/health", timeout=10).status_code == 200
