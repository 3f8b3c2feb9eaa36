"""A small client for the live WebSocket protocol: streams a file at real-time pace and records
every message with its arrival time. ``voxlane bench`` and the test suite both drive the server
through it, so what is measured is exactly what a user's client sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

from media import decode_file, float_to_s16


@dataclass
class Received:
    t: float  # monotonic arrival time
    msg: dict[str, Any]

    @property
    def type(self) -> str:
        return self.msg["type"]

    @property
    def data(self) -> dict[str, Any]:
        return self.msg["data"]


@dataclass
class StreamRecord:
    transcript_id: str
    audio_seconds: float = 0.0
    started: float = 0.0  # monotonic time the first audio frame was sent
    sent: list[tuple[float, float]] = field(default_factory=list)  # (audio end time, monotonic send time)
    received: list[Received] = field(default_factory=list)
    stopped: float | None = None
    completed: float | None = None
    asked: float | None = None  # monotonic time of the first ``start`` (a client that waits out refusals)
    admitted: float | None = None  # ...and of the ``receiving audio`` that admitted it
    refusals: int = 0

    def sent_at(self, audio_t: float) -> float:
        """When the audio at ``audio_t`` (seconds into the stream) had been sent."""
        for end, t in self.sent:
            if end >= audio_t - 1e-6:
                return t
        return self.sent[-1][1] if self.sent else self.started

    def of_type(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.type == kind]

    @property
    def transcriptions(self) -> list[Received]:
        return self.of_type("transcription")

    @property
    def finals(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for r in self.transcriptions:
            if r.data["is_final"]:
                seen.setdefault(r.data["segment_id"], r.data)
        return sorted(seen.values(), key=lambda d: d["start"])

    @property
    def final_text(self) -> str:
        return " ".join(d["text"] for d in self.finals)


def ws_url(base: str, transcript_id: str, token: str | None = None) -> str:
    url = base.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
    url += f"/v1/transcripts_websocket/{transcript_id}"
    return url + (f"?token={token}" if token else "")


async def create_transcript(base: str, name: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        r = await client.post("/v1/transcripts/", json={"name": name})
        r.raise_for_status()
        return r.json()["id"]


def load_pcm16k(path: str | Path) -> np.ndarray:
    audio = decode_file(path)
    assert isinstance(audio, np.ndarray)
    return audio


async def stream_audio(base: str, audio: np.ndarray, *, transcript_id: str | None = None, name: str = "stream",
                       chunk_ms: int = 100, speed: float = 1.0, token: str | None = None,
                       start_params: dict[str, Any] | None = None, settle_s: float = 60.0,
                       stop: bool = True) -> StreamRecord:
    """Send ``audio`` (16 kHz mono float32) as pcm_s16le at ``speed`` x real time, then ``stop``.

    Returns once the server confirms ``completed`` for the stream (or after ``settle_s``).
    """
    tid = transcript_id or await create_transcript(base, name, token)
    rec = StreamRecord(tid, audio_seconds=len(audio) / 16000)
    step = int(16000 * chunk_ms / 1000)
    async with websockets.connect(ws_url(base, tid, token), max_size=None) as ws:
        done = asyncio.Event()

        async def reader() -> None:
            async for raw in ws:
                r = Received(time.monotonic(), json.loads(raw))
                rec.received.append(r)
                if (r.type == "status" and r.data["status"] == "completed" and rec.stopped is not None
                        and r.data.get("participant_id") == (start_params or {}).get("participant", {}).get("id")):
                    rec.completed = r.t
                    done.set()

        task = asyncio.create_task(reader())
        params = {"format": "pcm_s16le", "sample_rate": 16000, "channels": 1, **(start_params or {})}
        await ws.send(json.dumps({"action": "start", "params": params}))
        await send_paced(ws, rec, audio, step, speed)
        if stop:
            await stop_and_settle(ws, rec, done, settle_s)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return rec


async def send_paced(ws, rec: StreamRecord, audio: np.ndarray, step: int, speed: float = 1.0) -> None:
    """``audio`` as 16-bit PCM frames of ``step`` samples at ``speed`` x real time, recording when each went."""
    rec.started = time.monotonic()
    for i in range(0, len(audio), step):
        chunk = audio[i:i + step]
        delay = rec.started + (i / 16000) / speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await ws.send(float_to_s16(chunk))
        rec.sent.append(((i + len(chunk)) / 16000, time.monotonic()))


async def stop_and_settle(ws, rec: StreamRecord, done: asyncio.Event, settle_s: float) -> None:
    """Send ``stop`` and wait (at most ``settle_s``) until the reader saw the stream completed."""
    rec.stopped = time.monotonic()
    await ws.send(json.dumps({"action": "stop", "params": {}}))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), settle_s)


async def subscribe(base: str, transcript_id: str, until: asyncio.Event, token: str | None = None) -> list[Received]:
    """Listen to a transcript until ``until`` is set (a dashboard's view)."""
    out: list[Received] = []
    async with websockets.connect(ws_url(base, transcript_id, token), max_size=None) as ws:
        async def read() -> None:
            async for raw in ws:
                out.append(Received(time.monotonic(), json.loads(raw)))

        task = asyncio.create_task(read())
        await until.wait()
        await asyncio.sleep(0.3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return out


async def admitted_stream(base: str, audio: np.ndarray, *, name: str = "stream", chunk_ms: int = 100,
                          token: str | None = None, start_params: dict[str, Any] | None = None,
                          max_wait_s: float = 300.0, settle_s: float = 120.0) -> StreamRecord:
    """A client as the protocol asks one to behave: ``start``, and while the server refuses it for load
    (``OVERLOADED``, ``RATE_LIMITED``) wait ``retry_after_s`` and ask again, up to ``max_wait_s``; once it answers
    ``receiving audio``, ``audio`` at real time, then ``stop``. ``asked``/``admitted`` tell how long admission
    took; a client never admitted sends nothing (its record has no ``admitted``)."""
    tid = await create_transcript(base, name, token)
    rec = StreamRecord(tid, audio_seconds=len(audio) / 16000)
    params = json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000, "channels": 1,
                                                       **(start_params or {})}})
    async with websockets.connect(ws_url(base, tid, token), max_size=None) as ws:
        rec.asked = time.monotonic()
        await ws.send(params)
        while rec.admitted is None:
            raw = await asyncio.wait_for(ws.recv(), max_wait_s)
            r = Received(time.monotonic(), json.loads(raw))
            rec.received.append(r)
            if r.type == "status" and r.data.get("message") == "receiving audio":
                rec.admitted = r.t
            elif r.type == "error" and r.data.get("code") in ("OVERLOADED", "RATE_LIMITED"):
                rec.refusals += 1
                wait = float((r.data.get("details") or {}).get("retry_after_s") or 3)
                if r.t + wait - rec.asked > max_wait_s:
                    return rec
                await asyncio.sleep(wait)
                await ws.send(params)
            elif r.type == "error" and not r.data.get("recoverable", True):
                return rec
        done = asyncio.Event()

        async def reader() -> None:
            async for raw in ws:
                r = Received(time.monotonic(), json.loads(raw))
                rec.received.append(r)
                if r.type == "status" and r.data["status"] == "completed" and rec.stopped is not None:
                    rec.completed = r.t
                    done.set()

        task = asyncio.create_task(reader())
        await send_paced(ws, rec, audio, int(16000 * chunk_ms / 1000))
        await stop_and_settle(ws, rec, done, settle_s)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return rec
