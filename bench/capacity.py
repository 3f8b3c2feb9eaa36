"""``voxlane bench --capacity``: what a running server serves, measured as an outside client sees it.

Each level is a burst of N clients, ``STAGGER_S`` apart, each streaming one whole file of continuous read speech
(the LJSpeech files of the corpus by default, round-robin: long sentences, short pauses, the hardest everyday
load) in 100 ms frames at real time. A client behaves as the protocol asks: refused for load, it waits the
``retry_after_s`` it was given and asks again; it sends audio only once admitted. Per level:

* admitted: how many at once (within 2 s of their start), how many after waiting (the longest wait), and how many
  never (within ``--max-wait``);
* commit p50/p95: for every reference utterance but a file's last (its end is the end of the stream, flushed by
  ``stop``), from the moment the frame holding its end was sent to the message in which the word aligned to its
  last reference word is first final, committed words aligned to the reference text (the server's timestamps are
  not trusted); and the worst stream's own p95, so that a stream admitted and then served late shows;
* WER of the committed text of the admitted streams;
* lag: the growth of each stream's commit latency, the median of its last third of utterances less that of its
  first (seconds; "grows" beyond ``GROWTH_LIMIT_S``), and the slope of the lag the server reports;
* the server: its CPU (% of one core, averaged), RSS per stream, threads (the most seen), the event loop's delay
  (its p99, the worst 30 s seen), the batches the inference loop formed, and whether it shed work.

A level keeps up when every stream was admitted at once, commit p95 is within ``--capacity-p95``, the lag is flat,
and WER is within two points of N=1's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import time
from typing import Any

import httpx
import numpy as np

from bench.metrics import fmt, lag_growth, lag_series, percentile, utterance_commits, wer_counts
from bench.process import ProcessSampler
from server.cli.live_client import StreamRecord, admitted_stream

DEFAULT_FILES = ("single/ljspeech_LJ001-0001_0016.wav", "single/ljspeech_LJ001-0017_0032.wav")
STAGGER_S = 0.25
ADMITTED_AT_ONCE_S = 2.0
GROWTH_LIMIT_S = 1.0
WER_POINTS = 0.02
WATCH_S = 5.0
KINDS = ("final", "endpoint", "partial", "bulk")


async def _scrape(http: httpx.AsyncClient) -> dict[str, float]:
    """The server's counters and gauges this bench reads (an absent one is 0)."""
    text = (await http.get("/metrics")).text
    out: dict[str, float] = {}
    for name in ("batches", "requests", "hurried"):
        m = re.search(rf"^voxlane_inference_{name}_total (\S+)$", text, re.M)
        out[name] = float(m[1]) if m else 0.0
    for kind in KINDS:
        m = re.search(rf'^voxlane_inference_busy_seconds_total{{kind="{kind}"}} (\S+)$', text, re.M)
        out[kind] = float(m[1]) if m else 0.0
    m = re.search(r'^voxlane_event_loop_delay_seconds{quantile="0.99"} (\S+)$', text, re.M)
    out["loop_p99"] = float(m[1]) if m else 0.0
    out["shedding"] = sum(float(v) for v in re.findall(r"^voxlane_shedding{[^}]*} (\S+)$", text, re.M))
    return out


class _ServerWatch:
    """Polls the server while a level runs: its threads (``/health?verbose=1``), event-loop delay and shedding."""

    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=10)
        self.threads: list[int] = []
        self.loop_p99: list[float] = []
        self.shed_seen = 0.0
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> _ServerWatch:
        self.first = await _scrape(self.http)
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._sample()
        await self.http.aclose()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(WATCH_S)
            with contextlib.suppress(httpx.HTTPError):
                await self._sample()

    async def _sample(self) -> None:
        health = (await self.http.get("/health", params={"verbose": "1"})).json()
        if "threads" in health:
            self.threads.append(int(health["threads"]))
        self.last = await _scrape(self.http)
        self.loop_p99.append(self.last["loop_p99"])
        self.shed_seen = max(self.shed_seen, self.last["shedding"])


def _mid(refs: dict[str, Any], f: str, rec: StreamRecord) -> list[dict[str, Any]]:
    """The file's reference utterances but its last."""
    segs = [s for s in (refs.get(f, {}).get("segments") or []) if s["end"] <= rec.audio_seconds + 0.05]
    return segs[:-1]


def _growth(latencies: list[tuple[float, float]], seconds: float) -> float | None:
    """Median commit latency of the utterances ending in the stream's last third less that of its first third."""
    first = [lat for end, lat in latencies if end <= seconds / 3]
    last = [lat for end, lat in latencies if end >= 2 * seconds / 3]
    if not first or not last:
        return None
    return statistics.median(last) - statistics.median(first)


async def run_burst(args: argparse.Namespace, n: int, files: list[str], refs: dict[str, Any],
                    audio: dict[str, np.ndarray], pid: int | None) -> dict[str, Any]:
    """One level: N clients at once (see the module's note)."""
    chosen = [files[i % len(files)] for i in range(n)]

    async def client(i: int, f: str) -> StreamRecord:
        await asyncio.sleep(i * STAGGER_S)
        return await admitted_stream(args.url, audio[f], name=f"capacity N={n} #{i}", chunk_ms=args.chunk_ms,
                                     token=args.token, max_wait_s=args.max_wait)

    with ProcessSampler(pid) as sampler:
        async with _ServerWatch(args.url, args.token) as watch:
            records = await asyncio.gather(*(client(i, f) for i, f in enumerate(chosen)))
    waits = [r.admitted - r.asked for r in records if r.admitted is not None and r.asked is not None]
    served = [(f, r) for f, r in zip(chosen, records, strict=True) if r.admitted is not None]
    commits: list[float] = []
    worst: list[float] = []
    growth: list[float] = []
    lag_slopes: list[float] = []
    errors = words = 0
    for f, rec in served:
        measured = utterance_commits(rec, _mid(refs, f, rec))
        lat = [x for _, x in measured]
        commits += lat
        if lat:
            worst.append(float(np.percentile(lat, 95)))
        g = _growth([(seg["end"], x) for seg, x in measured], rec.audio_seconds)
        if g is not None:
            growth.append(g)
        slope = lag_growth(lag_series(rec))
        if slope is not None:
            lag_slopes.append(slope)
        e, w = wer_counts(refs.get(f, {}).get("text", ""), rec.final_text)
        errors, words = errors + e, words + w
    first, last = watch.first, watch.last
    requests = last.get("requests", 0) - first.get("requests", 0)
    batches = last.get("batches", 0) - first.get("batches", 0)
    busy = {k: last.get(k, 0) - first.get(k, 0) for k in KINDS}
    total = sum(busy.values())
    return {
        "n": n, "files": chosen,
        "admitted_at_once": sum(w <= ADMITTED_AT_ONCE_S for w in waits),
        "admitted_later": sum(w > ADMITTED_AT_ONCE_S for w in waits),
        "admission_wait_max_s": round(max(waits), 2) if waits else None,
        "never_admitted": len(records) - len(waits),
        "refusals": sum(r.refusals for r in records),
        "commit_latency_p50": percentile(commits, 50), "commit_latency_p95": percentile(commits, 95),
        "commit_latency_count": len(commits),
        "worst_stream_p95": max(worst) if worst else None,
        "wer": round(errors / words, 4) if words else None,
        "commit_growth_s": max(growth) if growth else None,
        "lag_growth_s_per_s": max(lag_slopes) if lag_slopes else None,
        "loop_delay_p99_s": max(watch.loop_p99) if watch.loop_p99 else None,
        "threads_max": max(watch.threads) if watch.threads else None,
        "shed": bool(watch.shed_seen),
        "requests_per_batch": round(requests / batches, 2) if batches else None,
        "hurried_share": round((last.get("hurried", 0) - first.get("hurried", 0)) / requests, 3) if requests else None,
        "model_share": {k: round(v / total, 3) for k, v in busy.items()} if total else None,
        **sampler.summary(),
        "per_stream": [{"file": f, "transcript_id": r.transcript_id, "refusals": r.refusals,
                        "admission_wait_s": round(r.admitted - r.asked, 2) if r.admitted and r.asked else None,
                        "text": r.final_text} for f, r in zip(chosen, records, strict=True)],
    }


def keeps_up(level: dict[str, Any], first: dict[str, Any] | None, limit_p95: float) -> str | None:
    """Why the level is past what the server serves (None: it keeps up)."""
    p95 = level.get("commit_latency_p95")
    if level["never_admitted"] or level["admitted_later"]:
        return f"{level['admitted_later'] + level['never_admitted']} stream(s) not admitted at once"
    if p95 is None or p95 > limit_p95:
        return f"commit p95 {fmt(p95)} s > {limit_p95:g} s"
    if (level.get("commit_growth_s") or 0.0) > GROWTH_LIMIT_S:
        return f"lag grows ({level['commit_growth_s']:.2f} s)"
    if (first is not None and level.get("wer") is not None and first.get("wer") is not None
            and level["wer"] > first["wer"] + WER_POINTS):
        return f"WER {level['wer']:.4f} > N=1's {first['wer']:.4f} + {WER_POINTS:.2f}"
    return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--capacity", action="store_true",
                   help="instead: for each of --capacity-levels, a burst of N clients streaming whole files of"
                        " continuous speech (default the LJSpeech files) at real time, waiting out refusals as"
                        " the protocol asks: admitted at once/later/never, commit p50/p95 of mid-file words"
                        " aligned to the reference, WER, lag growth, event-loop delay, threads, CPU")
    p.add_argument("--capacity-levels", default="1,8,16", help="capacity: burst sizes, one level each")
    p.add_argument("--capacity-p95", type=float, default=2.5, help="capacity: commit p95 limit in seconds")
    p.add_argument("--capacity-pause", type=float, default=5.0, help="capacity: seconds between levels")
    p.add_argument("--max-wait", type=float, default=300.0,
                   help="capacity: longest a client waits out refusals before it gives up")


async def run_capacity(args: argparse.Namespace, levels: list[int], files: list[str], refs: dict[str, Any],
                       audio: dict[str, np.ndarray], pid: int | None) -> dict[str, Any]:
    """Every level in turn (a pause between them: the server's measurements of one level are not the next's)."""
    result: dict[str, Any] = {"url": args.url, "label": args.label, "started": time.time(), "server_pid": pid,
                              "files": files, "limit_commit_p95_s": args.capacity_p95, "levels": []}
    first = None
    for i, n in enumerate(levels):
        if i:
            await asyncio.sleep(args.capacity_pause)
        level = await run_burst(args, n, files, refs, audio, pid)
        if n == 1 and first is None:
            first = level
        level["breaks"] = keeps_up(level, first, args.capacity_p95)
        result["levels"].append(level)
        print(f"N={n}: {capacity_rows({'levels': [level]})[1][0]}", flush=True)
    return result


def capacity_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols = ["N", "admitted", "commit p50", "commit p95", "worst p95", "WER", "lag", "loop p99 ms", "threads",
            "CPU %", "RSS MB", "req/batch", "hurried", "shed", "keeps up"]
    rows = []
    for lv in result["levels"]:
        admitted = f"{lv['admitted_at_once']} at once"
        if lv["admitted_later"]:
            admitted += f", {lv['admitted_later']} waited (<= {fmt(lv['admission_wait_max_s'], 0)} s)"
        if lv["never_admitted"]:
            admitted += f", {lv['never_admitted']} never"
        growth = lv.get("commit_growth_s")
        lag = "-" if growth is None else f"{'grows' if growth > GROWTH_LIMIT_S else 'flat'} ({growth:+.2f} s)"
        loop = lv.get("loop_delay_p99_s")
        rows.append([str(lv["n"]), admitted, fmt(lv["commit_latency_p50"]), fmt(lv["commit_latency_p95"]),
                     fmt(lv.get("worst_stream_p95")), fmt(lv["wer"], 3), lag,
                     fmt(loop * 1000 if loop is not None else None, 0), fmt(lv.get("threads_max")),
                     fmt(lv.get("cpu_avg_percent"), 0), fmt(lv.get("rss_max_mb"), 0),
                     fmt(lv.get("requests_per_batch")), fmt(lv.get("hurried_share"), 2), "yes" if lv["shed"] else "no",
                     "yes" if not lv.get("breaks") else f"no: {lv['breaks']}"])
    return cols, rows
