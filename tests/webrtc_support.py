"""Helpers shared by the WebRTC tests: a loopback-only server, and checks on the audio it recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
from conftest import RunningServer, start_server

from media import decode_file
from tests.http_support import TLS

LOOPBACK = "127.0.0.1"


def start_loopback_server(tmp: Path, **env: str) -> RunningServer:
    """A real ``voxlane serve`` that gathers and accepts ICE candidates on 127.0.0.1 only."""
    return start_server(tmp, VOXLANE_ICE_HOSTS=LOOPBACK, VOXLANE_ICE_SERVERS="", **env)


def recording(server: RunningServer, transcript_id: str) -> np.ndarray:
    path = server.data_dir / "audio" / transcript_id / "recording.wav"
    assert path.exists(), f"no recording at {path}"
    audio = decode_file(path)
    assert isinstance(audio, np.ndarray)
    return audio


def start_offset(received: np.ndarray, original: np.ndarray, rate: int = 16000) -> tuple[float, float]:
    """Where the original's first second sits in the received audio: (seconds, correlation).

    A negative offset means the received audio starts after the original did (its start was lost).
    """
    probe = original[:rate].astype(np.float64)
    window = received[: 2 * rate].astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(window) + len(probe))))
    c = np.fft.irfft(np.fft.rfft(window, n) * np.conj(np.fft.rfft(probe, n)), n)
    lags = np.concatenate([np.arange(0, rate), np.arange(-rate // 2, 0)])  # +1.0 s of lead-in .. -0.5 s lost
    best = int(lags[np.argmax(c[lags])])
    a = window[max(best, 0):]
    b = probe[max(-best, 0):]
    m = min(len(a), len(b))
    return best / rate, float(np.corrcoef(a[:m], b[:m])[0, 1])


async def wait_transcript(server: RunningServer, transcript_id: str, status: str, within: float = 60) -> dict:
    row: dict = {}
    async with httpx.AsyncClient(verify=TLS, timeout=10) as http:
        for _ in range(int(within / 0.2)):
            row = (await http.get(f"{server.url}/v1/transcripts/{transcript_id}")).json()
            if row.get("status") == status:
                return row
            await asyncio.sleep(0.2)
    raise AssertionError(f"transcript {transcript_id} never reached {status!r}: {row}")


async def health(server: RunningServer) -> dict:
    async with httpx.AsyncClient(verify=TLS, timeout=10) as http:
        return (await http.get(f"{server.url}/health?verbose=1")).json()


async def settled(server: RunningServer, within: float = 20, pause: float = 0.5) -> dict:
    """Server counters once every WebRTC session has closed (or ``within`` seconds passed)."""
    for _ in range(int(within / 0.2)):
        if (await health(server))["webrtc_sessions"] == 0:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(pause)  # let the last closings' tasks end
    return await health(server)
