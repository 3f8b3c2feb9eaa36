"""``voxlane bench --overload``: more live streams than the server can serve, started one after another.

Each stream is real speech sent at real-time pace. A stream the server admits is streamed to its end and its
commit latency measured as in the plain bench; a stream it refuses records what it was told (code, reason,
``retry_after_s``). Admission control works when the admitted streams' commit p95 stays near the latency
target however many more are refused, instead of every stream degrading together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from bench.metrics import percentile
from server.cli.live_client import Received, StreamRecord, create_transcript, send_paced, stop_and_settle, ws_url

ADMIT_WAIT_S = 20.0


async def stream_or_refused(base: str, audio: np.ndarray, *, name: str, token: str | None = None,
                            chunk_ms: int = 100, settle_s: float = 120.0) -> tuple[StreamRecord, dict | None]:
    """Send ``start``; refused: the ``error`` it got. Admitted: the whole file at real time, then ``stop``."""
    tid = await create_transcript(base, name, token)
    rec = StreamRecord(tid, audio_seconds=len(audio) / 16000)
    step = int(16000 * chunk_ms / 1000)
    async with websockets.connect(ws_url(base, tid, token), max_size=None) as ws:
        admitted, done = asyncio.Event(), asyncio.Event()
        refusal: dict | None = None

        async def reader() -> None:
            nonlocal refusal
            async for raw in ws:
                r = Received(time.monotonic(), json.loads(raw))
                rec.received.append(r)
                d = r.data
                if r.type == "error" and not admitted.is_set():
                    refusal = d
                    done.set()
                elif r.type == "status" and d.get("message") == "receiving audio":
                    admitted.set()
                elif (r.type == "status" and d["status"] == "completed" and rec.stopped is not None
                      and d.get("participant_id") is None):
                    rec.completed = r.t
                    done.set()

        task = asyncio.create_task(reader())
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}}))
        waiters = {asyncio.create_task(admitted.wait()), asyncio.create_task(done.wait())}
        await asyncio.wait(waiters, timeout=ADMIT_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
        if not admitted.is_set():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return rec, refusal or {"code": "NO_ANSWER", "message": "no answer to 'start'", "details": {}}
        await send_paced(ws, rec, audio, step)
        await stop_and_settle(ws, rec, done, settle_s)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return rec, None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overload", type=int, default=0, metavar="STREAMS",
                   help="instead: start this many live streams (more than the server's capacity), --stagger-s apart;"
                        " admitted ones' commit latency against --latency-target, refused ones' answers")
    p.add_argument("--stagger-s", type=float, default=2.0, help="overload: seconds between stream starts")
    p.add_argument("--latency-target", type=float, default=2.0,
                   help="overload: the server's VOXLANE_LATENCY_TARGET_S, to compare the admitted streams with")


async def run_overload(args: argparse.Namespace, files: list[str], refs: dict[str, Any],
                       audio: dict[str, Any]) -> dict[str, Any]:
    from bench.metrics import level_figures

    n = args.overload
    chosen = [files[i % len(files)] for i in range(n)]

    async def one(i: int, f: str) -> tuple[StreamRecord, dict | None, float]:
        await asyncio.sleep(i * args.stagger_s)  # one after another: the server decides with what it measured
        rec, refusal = await stream_or_refused(args.url, audio[f], name=f"overload {i} {Path(f).stem}",
                                               token=args.token, chunk_ms=args.chunk_ms)
        return rec, refusal, i * args.stagger_s

    outcomes = await asyncio.gather(*(one(i, f) for i, f in enumerate(chosen)))
    admitted = [(f, rec) for f, (rec, refusal, _) in zip(chosen, outcomes, strict=True) if refusal is None]
    refused = [{"file": f, "started_at_s": at, "code": refusal.get("code"),
                "reason": (refusal.get("details") or {}).get("reason"),
                "retry_after_s": (refusal.get("details") or {}).get("retry_after_s"), "message": refusal.get("message")}
               for f, (_, refusal, at) in zip(chosen, outcomes, strict=True) if refusal is not None]
    figures = level_figures(len(admitted), [f for f, _ in admitted], [r for _, r in admitted], refs,
                            args.max_seconds) if admitted else {}
    p95 = figures.get("commit_latency_p95")
    return {"mode": "overload", "url": args.url, "label": args.label, "started": time.time(), "streams": n,
            "stagger_s": args.stagger_s, "latency_target_s": args.latency_target, "admitted": len(admitted),
            "refused": refused, "commit_latency_p50": figures.get("commit_latency_p50"),
            "commit_latency_p95": p95, "within_target": None if p95 is None else p95 <= args.latency_target,
            "retry_after_s_p50": percentile([r["retry_after_s"] for r in refused if r["retry_after_s"]], 50),
            "admitted_figures": figures}


def overload_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    from bench.metrics import fmt

    codes: dict[str, int] = {}
    for r in result["refused"]:
        key = f"{r['code']}/{r['reason']}"
        codes[key] = codes.get(key, 0) + 1
    cols = ["streams", "admitted", "refused", "refused as", "retry after s", "commit p50", "commit p95",
            "target s", "within"]
    row = [str(result["streams"]), str(result["admitted"]), str(len(result["refused"])),
           ", ".join(f"{k} x{v}" for k, v in codes.items()) or "-", fmt(result["retry_after_s_p50"], 0),
           fmt(result["commit_latency_p50"]), fmt(result["commit_latency_p95"]), fmt(result["latency_target_s"]),
           {True: "yes", False: "NO", None: "-"}[result["within_target"]]]
    return cols, [row]
