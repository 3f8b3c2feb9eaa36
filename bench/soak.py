"""``voxlane bench --soak MINUTES``: one long live stream of real speech between long silences, and how the server
holds up over it: RSS, asyncio task count and ``lag_seconds`` sampled over time, so a leak or a growing lag
shows as a trend rather than a number. The long-session test drives the same stream faster than real time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import websockets

from media import float_to_s16
from server.cli.live_client import create_transcript, load_pcm16k, ws_url

RATE = 16000
NOISE_RMS = 10 ** (-60 / 20)  # low room noise in the silences (about -60 dBFS), not digital zero


@dataclass
class Piece:
    """One stretch of the program: a speech clip (its file and reference text) or a silence."""

    start: float
    seconds: float
    file: str | None = None
    text: str = ""


def soak_program(refs: dict[str, Any], minutes: float, files: list[str] | None = None, silence_s: tuple[float, float]
                 = (60.0, 120.0), seed: int = 7) -> list[Piece]:
    """Speech clips (single-speaker files, in turn) each followed by a silence drawn from ``silence_s``, until the
    program lasts ``minutes``; it ends on a silence."""
    rng = np.random.default_rng(seed)
    files = files or sorted(k for k in refs if k.startswith("single/"))
    total = minutes * 60
    out: list[Piece] = []
    t = 0.0
    i = 0
    while True:
        f = files[i % len(files)]
        i += 1
        dur = float(refs[f]["duration_s"])
        gap = float(rng.uniform(*silence_s))
        if t + dur + 1 > total:
            break
        out.append(Piece(t, dur, f, refs[f].get("text", "")))
        t += dur
        gap = min(gap, total - t)
        out.append(Piece(t, gap))
        t += gap
    return out


def program_chunks(program: list[Piece], audio_dir: Path, chunk_ms: int = 100, seed: int = 7
                   ) -> Iterator[tuple[Piece, np.ndarray]]:
    """The program's audio, ``chunk_ms`` at a time with the piece it belongs to, made as it is sent (an hour is
    never held in memory)."""
    rng = np.random.default_rng(seed)
    step = RATE * chunk_ms // 1000
    cache: dict[str, np.ndarray] = {}
    for piece in program:
        if piece.file is not None:
            clip = cache.get(piece.file)
            if clip is None:
                clip = cache[piece.file] = load_pcm16k(audio_dir / piece.file)
            for i in range(0, len(clip), step):
                yield piece, clip[i:i + step]
        else:
            n = int(round(piece.seconds * RATE))
            for i in range(0, n, step):
                yield piece, (rng.standard_normal(min(step, n - i)) * NOISE_RMS).astype(np.float32)


@dataclass
class SoakRecord:
    transcript_id: str
    samples: list[dict[str, Any]] = field(default_factory=list)  # over time: audio_s, wall_s, rss_mb, tasks, lag
    finals: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    completed: bool = False
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0


async def soak_stream(url: str, program: list[Piece], audio_dir: Path, *, speed: float = 1.0,
                      silence_speed: float | None = None, sample_every_s: float = 30.0, pid: int | None = None,
                      token: str | None = None, chunk_ms: int = 100, settle_s: float = 300.0,
                      catch_up_s: float | None = None) -> SoakRecord:
    """Stream the program at ``speed`` x real time; at the first clip after every ``sample_every_s`` of audio,
    note the server's RSS (psutil on ``pid``, else /health), its asyncio task count (/health?verbose=1) and the
    latest lag.

    ``silence_speed`` sends the silences faster still, but a speech clip never starts before the server has
    caught up with the one before (a status with nothing pending), nor later than the silence would have ended
    at ``speed``: a silence's job in the program is to let the model catch up, and in stream seconds a final
    still pending when the next clip starts is late by the whole silence, however short it was on the wall.

    ``catch_up_s`` holds each silence up to that many wall seconds instead: on a machine shared with other work
    a silence compressed ``speed`` times can end before the model has read the clip, and the backlog then
    carried from clip to clip is the sender's doing, not the server's (a real-time silence lasts minutes)."""
    tid = await create_transcript(url, "soak", token)
    rec = SoakRecord(tid)
    proc = psutil.Process(pid) if pid else None
    lag = {"now": 0.0, "max": 0.0}
    done = asyncio.Event()
    caught_up = asyncio.Event()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # no keepalive timeout: a sender far ahead of real time is held back by the server, which stops reading its
    # socket, so the pong to a ping queued behind the unread audio comes late; 20 s of that on a loaded 2-core box
    # closed the stream as if the server were gone
    async with websockets.connect(ws_url(url, tid, token), max_size=None, ping_timeout=None) as ws, \
            httpx.AsyncClient(base_url=url, headers=headers, timeout=30,
                              # a connection idle for the server's 5 s keep-alive is closed there: one reused just
                              # then failed a sample with "Server disconnected" (httpx keeps them 5 s too)
                              limits=httpx.Limits(keepalive_expiry=2.0)) as http:
        async def reader() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                data = msg["data"]
                if msg["type"] == "transcription" and data["is_final"]:
                    rec.finals.append(data)
                elif msg["type"] == "error":
                    rec.errors.append(data)
                elif msg["type"] == "status":
                    if data.get("lag_seconds") is not None and data["status"] == "processing":
                        lag["now"] = data["lag_seconds"]
                        lag["max"] = max(lag["max"], data["lag_seconds"])
                        if data["lag_seconds"] == 0:
                            caught_up.set()
                    if data.get("message") == "transcript complete":
                        rec.completed = True
                        done.set()

        async def sample(audio_s: float) -> None:
            health = (await http.get("/health", params={"verbose": "1"})).json()
            rss = proc.memory_info().rss / 2**20 if proc is not None else health.get("rss_mb")
            rec.samples.append({"audio_s": round(audio_s, 1), "wall_s": round(time.monotonic() - t0, 1),
                                "rss_mb": round(rss, 1) if rss is not None else None, "tasks": health.get("tasks"),
                                "lag_s": lag["now"], "lag_max_s": lag["max"]})
            lag["max"] = lag["now"]

        task = asyncio.create_task(reader())
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": RATE}}))
        t0 = time.monotonic()
        sent = due = 0.0  # audio seconds sent; wall seconds after t0 at which the next chunk is due
        next_sample = 0.0
        current: Piece | None = None
        for piece, chunk in program_chunks(program, audio_dir, chunk_ms):
            if piece is not current:
                if piece.file is not None and current is not None and silence_speed is not None:
                    at_speed = t0 + due + current.seconds * (1 / speed - 1 / silence_speed)  # the silence's end
                    hold = catch_up_s if catch_up_s is not None else at_speed - time.monotonic()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(caught_up.wait(), max(0.0, hold))
                    due = max(due, time.monotonic() - t0)
                caught_up.clear()
                current = piece
                if piece.file is not None and sent >= next_sample:
                    # between clips, once the model has caught up: a sample taken mid-decode carries that
                    # decode's working set (about 90 MB), which says nothing about growth
                    await sample(sent)
                    next_sample = sent + sample_every_s
            delay = t0 + due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(float_to_s16(chunk))
            seconds = len(chunk) / RATE
            sent += seconds
            due += seconds / (speed if piece.file is not None or silence_speed is None else silence_speed)
        await sample(sent)
        await ws.send(json.dumps({"action": "stop"}))
        try:
            await asyncio.wait_for(done.wait(), settle_s)
        except TimeoutError:
            pass
        rec.audio_seconds = sent
        rec.wall_seconds = time.monotonic() - t0
        await sample(sent)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return rec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--soak", type=float, default=0, metavar="MINUTES",
                   help="instead: one stream this long, real speech between 60-120 s silences, at real time;"
                        " reports the server's RSS, asyncio tasks and lag over time (leaks, growing lag)")
    p.add_argument("--soak-speed", type=float, default=1.0, help="soak: x real time (1: real time)")
    p.add_argument("--soak-silence-speed", type=float, default=None,
                   help="soak: x real time for the silences, each clip still waiting for the server to catch up")
    p.add_argument("--soak-sample-s", type=float, default=60.0, help="soak: a sample every this many audio seconds")


def run_soak_command(args: argparse.Namespace, audio_dir: Path, refs: dict[str, Any]) -> dict[str, Any]:
    """``voxlane bench --soak MINUTES``: real time, one stream; the caller prints and writes the result."""
    from bench.process import find_server_pid

    program = soak_program(refs, args.soak, args.files or None)
    pid = args.server_pid or find_server_pid(args.url)
    rec = asyncio.run(soak_stream(args.url, program, audio_dir, speed=args.soak_speed,
                                  silence_speed=args.soak_silence_speed, pid=pid, token=args.token,
                                  sample_every_s=args.soak_sample_s, chunk_ms=args.chunk_ms))
    return {"mode": "soak", "url": args.url, "label": args.label, "started": time.time(), "server_pid": pid,
            "minutes": args.soak, "speed": args.soak_speed,
            "silence_speed": args.soak_silence_speed, "transcript_id": rec.transcript_id,
            "audio_seconds": round(rec.audio_seconds, 1), "wall_seconds": round(rec.wall_seconds, 1),
            "completed": rec.completed, "errors": rec.errors, "speech_clips": sum(p.file is not None for p in program),
            "finals": len(rec.finals), "samples": rec.samples, **soak_trend(rec.samples)}


def soak_trend(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """First against last: what grew over the run (after the first sample, which is before any audio)."""
    body = [s for s in samples[1:] if s["rss_mb"] is not None] or samples
    if not body:
        return {}
    first, last = body[0], body[-1]
    return {"rss_growth_mb": round(last["rss_mb"] - first["rss_mb"], 1) if first["rss_mb"] is not None else None,
            "task_growth": (last["tasks"] - first["tasks"]) if first["tasks"] is not None else None,
            "lag_max_s": max(s["lag_max_s"] for s in samples)}


def soak_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    from bench.metrics import fmt

    cols = ["audio min", "wall s", "RSS MB", "tasks", "lag s", "lag max s"]
    rows = [[fmt(s["audio_s"] / 60, 1), fmt(s["wall_s"], 0), fmt(s["rss_mb"], 0), fmt(s["tasks"]),
             fmt(s["lag_s"]), fmt(s["lag_max_s"])] for s in result["samples"]]
    return cols, rows
