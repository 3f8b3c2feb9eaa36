"""``voxlane bench --faults``: the fault matrix, each fault scenario of the test suite run ``--fault-runs`` times.

The scenarios are the tests marked ``faults`` (``pytest -m faults``): real ``voxlane`` processes on a real
PostgreSQL, Redis and S3-compatible server, one of them killed (SIGKILL), stopped past its lease (SIGSTOP), cut
off from Redis or the store by a proxy, or the shared service itself restarted or taken away. Each test asserts
the invariants after its fault (every acknowledged chunk transcribed once, every final stored once and heard in
order, no transcript completed under a publisher that streams, a stale writer refused, nothing left ``live`` or
``processing``); a failed run is a violation. The README's test command runs each scenario once; this runs the
matrix. It needs a checkout (the tests), the services ``.ci/run`` starts, and a quiet machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--faults", action="store_true",
                   help="instead: the fault matrix, every test marked 'faults' (real processes killed, stopped, cut"
                        " off) run --fault-runs times; one row per scenario, its outcome in each run")
    p.add_argument("--fault-runs", type=int, default=3, help="faults: runs of the whole matrix")


def run_faults(args: argparse.Namespace) -> dict[str, Any]:
    if not (REPO / "tests" / "conftest.py").is_file():
        raise SystemExit("voxlane bench --faults runs the fault tests of a voxlane checkout: none next to this bench")
    runs = []
    for n in range(args.fault_runs):
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "faults.xml"
            started = time.monotonic()
            subprocess.run([sys.executable, "-m", "pytest", "-m", "faults", "-n0", "-q", "-p", "no:cacheprovider",
                            f"--junitxml={report}"], cwd=REPO, check=False)
            runs.append({"run": n + 1, "seconds": round(time.monotonic() - started, 1),
                         "scenarios": _outcomes(report)})
    names = sorted({name for run in runs for name in run["scenarios"]})
    matrix = {name: [run["scenarios"].get(name, {"outcome": "missing"}) for run in runs] for name in names}
    violations = sum(1 for cells in matrix.values() for cell in cells if cell["outcome"] != "passed")
    return {"runs": runs, "matrix": matrix, "violations": violations}


def _outcomes(report: Path) -> dict[str, dict[str, Any]]:
    """Each test case of a JUnit report: passed, failed (an invariant broke) or error (its setup did)."""
    if not report.is_file():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
            elif child.tag == "skipped":
                outcome = "skipped"
        out[name] = {"outcome": outcome, "seconds": round(float(case.get("time") or 0), 1)}
    return out


def fault_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    runs = len(result["runs"])
    cols = ["scenario", *(f"run {i + 1}" for i in range(runs)), "violations"]
    rows = []
    for name, cells in result["matrix"].items():
        rows.append([name, *(f"{c['outcome']} {c.get('seconds', 0):.0f}s" for c in cells),
                     str(sum(c["outcome"] != "passed" for c in cells))])
    rows.append(["total", *(f"{r['seconds']:.0f}s" for r in result["runs"]), str(result["violations"])])
    return cols, rows
