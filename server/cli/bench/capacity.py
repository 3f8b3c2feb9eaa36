"""``voxlane bench --capacity``: how many live streams a running server sustains, found by ramping N.

Each step streams N files at once at real time (``--max-seconds`` of each), as the live mode does, and the ramp
stops at the first N that breaks a limit: commit p95 over ``--capacity-p95`` (2.5 s), lag that grows (over
0.05 s per second), WER more than two points above N=1's, a stream refused, or a stream admitted more than 2 s
after its ``start``. The largest N before it is the answer. Each step also reports what the server did for it:
its CPU, its RSS per stream more (see :func:`run_capacity`), and the batches the inference loop formed (from
``/metrics``: requests per batch, and the share decoded hurried) and where the model's time went (refreshes,
pause commits and finals; the encoder's share of it). A last step holds N connected streams that
send only silence, for what an idle listener costs beyond the idle server.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import numpy as np
import psutil

from server.cli.bench.metrics import fmt
from server.cli.bench.process import ProcessSampler
from server.cli.live_client import stream_audio

KINDS = ("final", "endpoint", "partial", "bulk")
LAG_GROWTH_LIMIT = 0.05
ADMISSION_LIMIT_S = 2.0
WER_POINTS = 0.02
SILENT_S = 30.0
SILENT_SETTLE_S = 5.0  # from the silent streams' start: their admission and first frames are done
IDLE_S = 10.0  # the idle server's own CPU (job polling, lease renewal, the heap trimmer), read before them


async def _loop_counters(url: str, token: str | None) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10, headers=headers) as http:
        text = (await http.get(url.rstrip("/") + "/metrics")).text
    out = {}
    for name in ("batches", "requests", "hurried", "encoder_seconds"):
        m = re.search(rf"^voxlane_inference_{name}_total (\S+)$", text, re.M)
        out[name] = float(m[1]) if m else 0.0
    for kind in KINDS:
        m = re.search(rf'^voxlane_inference_busy_seconds_total{{kind="{kind}"}} (\S+)$', text, re.M)
        out[kind] = float(m[1]) if m else 0.0
    return out


RunLevel = Callable[..., Awaitable[dict[str, Any]]]
"""The live mode's one level (``server.cli.bench.command.run_level``): N streams of the given files at once."""


async def run_step(args: argparse.Namespace, run_level: RunLevel, n: int, files: list[str], refs: dict[str, Any],
                   audio: dict[str, Any], pid: int | None, base: tuple[int, float] | None) -> dict[str, Any]:
    """One step of N streams; ``base``: the (N, RSS p90) of the step from which the memory of one stream more is
    read (see :func:`run_capacity`)."""
    # every file at least once, and N streams at once: a slot that ends its file takes the next one
    chosen = [files[i % len(files)] for i in range(max(n, len(files)))]
    before = await _loop_counters(args.url, args.token)
    level = await run_level(args, n, chosen, refs, audio, pid)
    after = await _loop_counters(args.url, args.token)
    batches = after["batches"] - before["batches"]
    requests = after["requests"] - before["requests"]
    rss = level.get("rss_p90_mb")
    busy = {k: after[k] - before[k] for k in KINDS}
    total = sum(busy.values())
    level.update(
        model_seconds=round(total, 2),  # where the model's time went in this step
        model_share={k: round(v / total, 3) for k, v in busy.items()} if total else None,
        encoder_share=round((after["encoder_seconds"] - before["encoder_seconds"]) / total, 3) if total else None,
        requests_per_batch=round(requests / batches, 2) if batches else None,
        hurried_share=round((after["hurried"] - before["hurried"]) / requests, 3) if requests else None,
        rss_per_stream_mb=round((rss - base[1]) / (n - base[0]), 1)
        if rss is not None and base is not None and n > base[0] else None)
    return level


async def silent_step(args: argparse.Namespace, n: int, pid: int | None) -> dict[str, Any]:
    """N streams that are connected and send silence only: what a listener who says nothing costs. The cost per
    stream is what the server's CPU while all N stream (from ``SILENT_SETTLE_S`` after the start to the last
    second of audio) adds to its CPU with no stream at all, read for ``IDLE_S`` just before: not counting their
    starts and their ends, which the whole step's average also holds, nor what the server spends on its own."""
    silence = np.zeros(int(16000 * SILENT_S), dtype=np.float32)
    idle = await idle_cpu(pid, IDLE_S)
    with ProcessSampler(pid) as sampler:
        started = time.monotonic()
        await asyncio.gather(*(stream_audio(args.url, silence, name=f"bench silent {i}", chunk_ms=args.chunk_ms,
                                            token=args.token, settle_s=30) for i in range(n)))
    s = sampler.summary()
    steady = [cpu for t, cpu, _ in sampler.samples if started + SILENT_SETTLE_S <= t <= started + SILENT_S - 1]
    cpu = sum(steady) / len(steady) if steady else None
    return {"n": n, "seconds": SILENT_S, **s, "cpu_idle_percent": None if idle is None else round(idle, 2),
            "cpu_steady_percent": None if cpu is None else round(cpu, 1),
            "cpu_per_stream_percent": round(max(0.0, cpu - (idle or 0.0)) / n, 2) if cpu is not None else None}


async def idle_cpu(pid: int | None, seconds: float) -> float | None:
    """The process's CPU over ``seconds`` (% of one core), from its own CPU times rather than sampled."""
    if not pid:
        return None
    proc = psutil.Process(pid)
    t0, w0 = proc.cpu_times(), time.monotonic()
    await asyncio.sleep(seconds)
    t1, w1 = proc.cpu_times(), time.monotonic()
    return 100 * ((t1.user - t0.user) + (t1.system - t0.system)) / (w1 - w0)


def breaks(step: dict[str, Any], first: dict[str, Any], limit_p95: float) -> str | None:
    """Why this step is past what the server sustains (None: it sustains it)."""
    p95 = step.get("commit_latency_p95")
    if p95 is None or p95 > limit_p95:
        return f"commit p95 {fmt(p95)} s > {limit_p95:g} s"
    if (step.get("lag_growth_s_per_s") or 0.0) > LAG_GROWTH_LIMIT:
        return f"lag grows {step['lag_growth_s_per_s']:.3f} s/s"
    if step.get("wer") is not None and first.get("wer") is not None and step["wer"] > first["wer"] + WER_POINTS:
        return f"WER {step['wer']:.4f} > N=1's {first['wer']:.4f} + {WER_POINTS:.2f}"
    if step["refused"]:
        return f"{step['refused']} stream(s) refused"
    wait = step.get("admission_wait_max_s")
    if wait is None or wait > ADMISSION_LIMIT_S:
        return f"a stream admitted {fmt(wait)} s after its start"
    return None


async def run_capacity(args: argparse.Namespace, run_level: RunLevel, levels: list[int], files: list[str],
                       refs: dict[str, Any], audio: dict[str, Any], pid: int | None) -> dict[str, Any]:
    """The ramp. The memory of one stream more is the growth of the server's RSS (the 90th percentile of a
    step's samples: a step at full load most of its time, one brief peak left out) over the second step's, per
    stream: the first step's lone stream leaves all but one decode lane idle, and each lane's working memory
    (tiny.en, a 30 s window read in full: 54 MB of attention scores) is the model's, whatever the streams."""
    result: dict[str, Any] = {"url": args.url, "label": args.label, "started": time.time(), "server_pid": pid,
                              "limit_commit_p95_s": args.capacity_p95, "steps": []}
    sustained = None
    base: tuple[int, float] | None = None
    base_step = 1 if len(levels) > 1 else 0
    for i, n in enumerate(levels):
        step = await run_step(args, run_level, n, files, refs, audio, pid, base)
        if base is None and i >= base_step and step.get("rss_p90_mb") is not None:
            base = (n, step["rss_p90_mb"])
        first = result["steps"][0] if result["steps"] else step
        step["breaks"] = breaks(step, first, args.capacity_p95)
        result["steps"].append(step)
        if step["breaks"]:
            break
        sustained = n
    result["largest_sustained_n"] = sustained
    result["silent"] = await silent_step(args, max(1, min(levels[-1], 8)), pid)
    return result


def capacity_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols = ["N", "commit p50", "commit p95", "seg final p95", "WER", "lag growth s/s", "admitted within s",
            "refused", "CPU avg %", "RSS/stream MB", "requests/batch", "hurried", "model s", "refresh/pause/final",
            "encoder", "sustained"]
    rows = [[str(s["n"]), fmt(s["commit_latency_p50"]), fmt(s["commit_latency_p95"]),
             fmt(s.get("segment_final_latency_p95")), fmt(s["wer"], 4), fmt(s["lag_growth_s_per_s"], 3),
             fmt(s["admission_wait_max_s"]), str(s["refused"]), fmt(s["cpu_avg_percent"], 0),
             fmt(s["rss_per_stream_mb"], 1), fmt(s["requests_per_batch"], 2), fmt(s["hurried_share"], 3),
             fmt(s.get("model_seconds"), 1), _shares(s.get("model_share")), fmt(s.get("encoder_share"), 2),
             "yes" if not s["breaks"] else f"no: {s['breaks']}"] for s in result["steps"]]
    return cols, rows


def _shares(share: dict[str, float] | None) -> str:
    """The model's time on refreshes, pause commits and finals, as percentages."""
    if not share:
        return "-"
    return "/".join(f"{100 * share.get(k, 0.0):.0f}" for k in ("partial", "endpoint", "final"))
