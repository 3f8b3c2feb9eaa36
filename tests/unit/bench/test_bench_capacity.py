"""``voxlane bench --capacity``: which level is past what the server serves, and why; the lag read from the
commit latencies' growth over each stream; the table's columns."""

from __future__ import annotations

from typing import Any

from bench.capacity import _growth, capacity_rows, keeps_up


def level(**over: Any) -> dict[str, Any]:
    base = {"n": 8, "admitted_at_once": 8, "admitted_later": 0, "admission_wait_max_s": 0.1, "never_admitted": 0,
            "commit_latency_p50": 0.9, "commit_latency_p95": 1.6, "worst_stream_p95": 1.9, "wer": 0.09,
            "commit_growth_s": 0.1, "loop_delay_p99_s": 0.004, "threads_max": 23, "shed": False,
            "cpu_avg_percent": 180.0, "rss_max_mb": 950.0, "requests_per_batch": 1.0, "hurried_share": 0.8}
    return {**base, **over}


def test_each_limit_breaks_a_level_and_one_that_keeps_up_breaks_none() -> None:
    first = level(n=1, wer=0.08)
    assert keeps_up(level(), first, 2.5) is None
    assert "commit p95" in keeps_up(level(commit_latency_p95=2.6), first, 2.5)
    assert "commit p95" in keeps_up(level(commit_latency_p95=None), first, 2.5)  # nothing committed at all
    assert "lag grows" in keeps_up(level(commit_growth_s=1.4), first, 2.5)
    assert "WER" in keeps_up(level(wer=0.101), first, 2.5)
    assert keeps_up(level(wer=0.099), first, 2.5) is None  # within two points of N=1
    assert "not admitted at once" in keeps_up(level(admitted_at_once=6, admitted_later=2), first, 2.5)
    assert "not admitted at once" in keeps_up(level(admitted_at_once=7, never_admitted=1), first, 2.5)


def test_the_lag_is_the_growth_of_a_stream_s_commit_latency_from_its_first_third_to_its_last() -> None:
    steady = [(t, 1.0) for t in range(5, 120, 7)]
    assert _growth(steady, 120.0) == 0.0
    falling_behind = [(t, 0.5 + t / 30) for t in range(5, 120, 7)]
    assert _growth(falling_behind, 120.0) > 2.5
    assert _growth([(10.0, 1.0)], 120.0) is None  # nothing in the last third


def test_the_table_says_who_was_admitted_and_why_a_level_does_not_keep_up() -> None:
    result = {"levels": [dict(level(n=1, admitted_at_once=1), breaks=None),
                         dict(level(n=24, admitted_at_once=9, admitted_later=15, admission_wait_max_s=130.0,
                                    shed=True), breaks="15 stream(s) not admitted at once")]}
    cols, rows = capacity_rows(result)
    assert len(rows) == 2 and all(len(r) == len(cols) for r in rows)
    assert rows[0][-1] == "yes" and rows[1][-1].startswith("no: 15 stream(s)")
    assert rows[1][cols.index("admitted")] == "9 at once, 15 waited (<= 130 s)"
    assert rows[0][cols.index("lag")] == "flat (+0.10 s)" and rows[1][cols.index("shed")] == "yes"
