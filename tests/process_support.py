"""Ending the real processes tests start (servers, moto, Chromium, cluster nodes), and what the suite's servers
are told of the machine beforehand."""

from __future__ import annotations

import subprocess

KNOWN_CALIBRATION_S = 0.2
"""VOXLANE_CALIBRATION_SECONDS of the suite's live servers: what a batch of live refreshes costs a 2-core box
(0.16-0.24 s), so that no server spends 4 of its 8 CPU-seconds of start timing rounds that the suite's own load
makes read anything. What admission does with a measured calibration is tested on servers that measure it
(tests/e2e/test_admission.py)."""


def stop_process(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds: a test never hangs on a process that
    ignores its shutdown."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
