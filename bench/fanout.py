"""``voxlane bench --fanout``: what the hop to a second node costs a live transcript's subscribers.

Two servers on one Redis (``--url`` is node A, ``--url-b`` node B). A transcript is created on A, one WebSocket
subscriber joins on A and one on B, and real speech is streamed to A at real-time pace. For every segment final,
every word commit (the first message in which a word is final) and every message, the arrival on B is compared
with the arrival on A: the extra time of the B hop (p50/p95/max), beside each node's latency from the audio
being sent. The target is a B hop of at most 20 ms at p95. Both subscribers run in this process, on one clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import websockets

from bench.metrics import fmt, percentile, utterance_id
from server.cli.live_client import Received, StreamRecord, create_transcript, load_pcm16k, stream_audio, ws_url

DEFAULT_FILE = "single/librivox_shakespeare_sonnet_001.wav"


class Watcher:
    """One subscriber's WebSocket, every message with its arrival time."""

    def __init__(self, base: str, tid: str, token: str | None) -> None:
        self.url = ws_url(base, tid, token)
        self.received: list[Received] = []
        self.joined = asyncio.Event()
        self.completed = asyncio.Event()

    async def run(self) -> None:
        async with websockets.connect(self.url, max_size=None) as ws:
            async for raw in ws:
                r = Received(time.monotonic(), json.loads(raw))
                self.received.append(r)
                if r.type == "status":
                    self.joined.set()
                    if r.data["status"] == "completed" and r.data.get("participant_id") is None \
                            and len(self.received) > 1:
                        self.completed.set()


def published(received: list[Received]) -> list[Received]:
    """What the transcript's publisher sent: not the status a new subscriber is told first, nor the node's own
    pings to its connection."""
    return [r for r in received[1:] if r.type != "ping"]


def first_arrivals(received: list[Received]) -> dict[str, dict[Any, float]]:
    """When each final, each word commit and each message first arrived."""
    out: dict[str, dict[Any, float]] = {"final": {}, "commit": {}, "message": {}}
    for r in published(received):
        out["message"].setdefault(json.dumps(r.msg, sort_keys=True), r.t)
        if r.type != "transcription":
            continue
        d = r.data
        if d["is_final"]:
            out["final"].setdefault(d["segment_id"], r.t)
        for w in d["words"]:
            if w["final"]:
                out["commit"].setdefault((utterance_id(d["segment_id"]), round(w["start"], 2), w["text"]), r.t)
    return out


def audio_ends(received: list[Received]) -> dict[str, dict[Any, float]]:
    """Where in the audio each final and each word commit ends (seconds)."""
    ends: dict[str, dict[Any, float]] = {"final": {}, "commit": {}}
    for r in received:
        if r.type == "transcription":
            d = r.data
            if d["is_final"]:
                ends["final"].setdefault(d["segment_id"], d["end"])
            for w in d["words"]:
                if w["final"]:
                    ends["commit"].setdefault((utterance_id(d["segment_id"]), round(w["start"], 2), w["text"]),
                                              w["end"])
    return ends


def _summary(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values) if values else None}


def fanout_figures(rec: StreamRecord, on_a: list[Received], on_b: list[Received]) -> dict[str, Any]:
    a, b = first_arrivals(on_a), first_arrivals(on_b)
    ends = audio_ends(on_a)
    figures: dict[str, Any] = {}
    for kind in ("final", "commit", "message"):
        both = [k for k in a[kind] if k in b[kind]]
        row: dict[str, Any] = {"count_a": len(a[kind]), "count_b": len(b[kind]), "missing_on_b": len(a[kind])
                               - len(both), "hop": _summary([b[kind][k] - a[kind][k] for k in both])}
        if kind in ends:
            row["latency_a"] = _summary([a[kind][k] - rec.sent_at(ends[kind][k]) for k in both])
            row["latency_b"] = _summary([b[kind][k] - rec.sent_at(ends[kind][k]) for k in both])
        figures[kind] = row
    figures["same_order"] = [r.msg for r in published(on_a)] == [r.msg for r in published(on_b)]
    return figures


async def run_fanout(args: argparse.Namespace, audio_dir: Path) -> dict[str, Any]:
    if not args.url_b:
        raise SystemExit("voxlane bench --fanout needs --url-b (node B, on the same Redis as --url)")
    name = (args.files or [DEFAULT_FILE])[0]
    audio = load_pcm16k(audio_dir / name)
    if args.max_seconds:
        audio = audio[: int(args.max_seconds * 16000)]
    tid = await create_transcript(args.url, "bench fan-out", args.token)
    watchers = [Watcher(args.url, tid, args.token), Watcher(args.url_b, tid, args.token)]
    tasks = [asyncio.create_task(w.run()) for w in watchers]
    try:
        for w in watchers:
            await asyncio.wait_for(w.joined.wait(), 30)
        rec = await stream_audio(args.url, audio, transcript_id=tid, chunk_ms=args.chunk_ms, token=args.token,
                                 settle_s=120)
        for w in watchers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(w.completed.wait(), 30)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"mode": "fanout", "url": args.url, "url_b": args.url_b, "label": args.label, "started": time.time(),
            "cpu_count": os.cpu_count(), "file": name, "audio_seconds": round(len(audio) / 16000, 2),
            "transcript_id": tid, **fanout_figures(rec, *(w.received for w in watchers))}


def fanout_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols = ["event", "on A", "on B", "A p50 s", "A p95 s", "B p50 s", "B p95 s", "hop p50 ms", "hop p95 ms",
            "hop max ms"]
    rows = []
    for kind, label in (("final", "segment final"), ("commit", "word commit"), ("message", "every message")):
        f = result[kind]
        lat_a, lat_b = f.get("latency_a", {}), f.get("latency_b", {})
        hop = {k: None if v is None else v * 1000 for k, v in f["hop"].items()}
        rows.append([label, str(f["count_a"]), str(f["count_b"]), fmt(lat_a.get("p50")), fmt(lat_a.get("p95")),
                     fmt(lat_b.get("p50")), fmt(lat_b.get("p95")), fmt(hop["p50"], 1), fmt(hop["p95"], 1),
                     fmt(hop["max"], 1)])
    return cols, rows
