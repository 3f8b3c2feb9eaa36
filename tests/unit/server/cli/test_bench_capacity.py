"""``voxlane bench --capacity``: which step is past what the server sustains, and why; how long each stream
waited to be admitted, read from what its client received."""

from __future__ import annotations

from typing import Any

from server.cli.bench.capacity import breaks, capacity_rows
from server.cli.bench.metrics import admission_figures
from server.cli.live_client import Received, StreamRecord


def step(**over: Any) -> dict[str, Any]:
    base = {"n": 4, "commit_latency_p50": 0.8, "commit_latency_p95": 1.2, "segment_final_latency_p95": 1.5,
            "wer": 0.05, "lag_growth_s_per_s": 0.0, "admission_wait_max_s": 0.1, "refused": 0,
            "cpu_avg_percent": 170.0, "rss_per_stream_mb": 3.2, "requests_per_batch": 1.0, "hurried_share": 0.4,
            "model_seconds": 90.0, "model_share": {"partial": 0.7, "endpoint": 0.2, "final": 0.1, "bulk": 0.0},
            "encoder_share": 0.55}
    return {**base, **over}


def test_each_limit_breaks_a_step_and_a_sustained_one_breaks_none() -> None:
    first = step(n=1, wer=0.04)
    assert breaks(step(), first, 2.5) is None
    assert "commit p95" in breaks(step(commit_latency_p95=2.6), first, 2.5)
    assert "commit p95" in breaks(step(commit_latency_p95=None), first, 2.5)  # nothing committed at all
    assert "lag grows" in breaks(step(lag_growth_s_per_s=0.2), first, 2.5)
    assert "WER" in breaks(step(wer=0.061), first, 2.5)
    assert breaks(step(wer=0.059), first, 2.5) is None  # within two points of N=1
    assert "refused" in breaks(step(refused=2), first, 2.5)
    assert "admitted" in breaks(step(admission_wait_max_s=2.4), first, 2.5)


def test_admission_waits_and_refusals_come_from_the_messages_each_stream_got() -> None:
    def record(started: float, *msgs: tuple[float, dict]) -> StreamRecord:
        rec = StreamRecord("t", started=started)
        rec.received = [Received(t, m) for t, m in msgs]
        return rec

    ok = record(10.0, (10.2, {"type": "status", "data": {"status": "processing", "message": "receiving audio"}}))
    refused = record(10.0, (10.1, {"type": "error", "data": {"code": "OVERLOADED", "details": {}}}),
                     (13.5, {"type": "status", "data": {"status": "processing", "message": "receiving audio"}}))
    assert admission_figures([ok, refused]) == {"admission_wait_max_s": 3.5, "refused": 1}


def test_the_table_says_why_a_step_is_not_sustained() -> None:
    result = {"steps": [dict(step(n=1), breaks=None), dict(step(n=8, commit_latency_p95=3.1),
                                                            breaks="commit p95 3.10 s > 2.5 s")]}
    cols, rows = capacity_rows(result)
    assert len(rows) == 2 and all(len(r) == len(cols) for r in rows)
    assert rows[0][-1] == "yes" and rows[1][-1].startswith("no: commit p95")
    assert rows[0][cols.index("refresh/pause/final")] == "70/20/10"


def test_memory_per_stream_is_read_over_the_second_step(monkeypatch) -> None:
    import argparse
    import asyncio

    from server.cli.bench import capacity

    async def counters(url: str, token: str | None) -> dict[str, float]:
        return dict.fromkeys(("batches", "requests", "hurried", "encoder_seconds", *capacity.KINDS), 0.0)

    rss = {1: 700.0, 4: 790.0, 8: 810.0}  # the lone stream's step leaves a lane idle: its memory is not a stream's

    async def run_level(args, n, chosen, refs, audio, pid) -> dict[str, Any]:
        return dict(step(n=n), rss_p90_mb=rss[n])

    async def silent(args, n, pid) -> dict[str, Any]:
        return {"n": n}

    monkeypatch.setattr(capacity, "_loop_counters", counters)
    monkeypatch.setattr(capacity, "silent_step", silent)
    args = argparse.Namespace(url="http://x", token=None, label="", capacity_p95=2.5)
    result = asyncio.run(capacity.run_capacity(args, run_level, [1, 4, 8], ["a"], {}, {}, None))
    assert [s["rss_per_stream_mb"] for s in result["steps"]] == [None, None, 5.0]
