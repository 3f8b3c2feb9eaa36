"""Ending the real processes tests start (servers, moto, Chromium, cluster nodes)."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds: a test never hangs on a process that
    ignores its shutdown."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
