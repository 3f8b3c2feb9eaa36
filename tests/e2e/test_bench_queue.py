"""``voxlane bench --queue`` end to end, small: real ``voxlane worker`` processes on a throwaway PostgreSQL
database and a private Redis, one of them SIGKILLed mid-run, and every job still done exactly once. The bench's
verdict (done, lost, duplicated) is what the closing figures rely on, so it is checked here on a run that
exercises it; throughput is not (figures live in docs/benchmarks.md). Real processes killed: the e2e tier."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.db_support import PG_ADMIN_URL

pytest_plugins = ("tests.redis_support",)


def test_every_job_done_once_through_a_kill(tmp_path: Path, redis_url: str):
    out = tmp_path / "queue.json"
    run = subprocess.run(
        [sys.executable, "-m", "server.cli", "bench", "--queue", "--database-url", PG_ADMIN_URL, "--redis-url",
         redis_url, "--jobs", "120", "--workers", "2", "--kill", "1", "--clip-seconds", "1", "--idle-jobs", "5",
         "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    (result,) = json.loads(out.read_text())["runs"]
    assert result["workers"] == 2 and result["kills"] == 1
    assert result["done"] == result["jobs"] == result["transcripts_completed"] == 120
    assert result["lost"] == 0 and result["duplicated"] == 0
    assert result["latency_p50_s"] is not None and result["redis_commands_per_job"] is not None
    assert result["idle_jobs"] == 5 and 0 < result["idle_pickup_p50_s"] <= result["idle_pickup_p95_s"] < 30
    assert "duplicated" in run.stdout and "jobs/s" in run.stdout
