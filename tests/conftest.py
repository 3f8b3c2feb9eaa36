"""Shared fixtures: a real ``voxlane serve`` process, the real model, real speech from ../shared/audio."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server.native_threads import limit_blas_threads
from tests.hang_watch import pytest_runtest_call  # noqa: F401 - a hook: what a hung test waits on
from tests.http_support import TLS
from tests.process_support import KNOWN_CALIBRATION_S, stop_process

REPO = Path(__file__).resolve().parents[1]
AUDIO = REPO.parent / "shared" / "audio"


def pytest_configure(config: pytest.Config) -> None:
    """Each of the suite's processes runs BLAS on one thread, as a server does once its models are loaded
    (server/native_threads.py). Four workers share two cores, and a BLAS left a thread per core keeps its idle
    threads spinning for the next call while the test goes on: the files that call it in process spent a tenth to
    a fifth more CPU for it (the inference-loop file 167 CPU-s against 149, the speaker tests 41 against 33)."""
    import numpy  # noqa: F401 - loads the BLAS library that is limited

    limit_blas_threads()


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    assert (AUDIO / "references.json").exists(), f"real speech corpus missing at {AUDIO}"
    return AUDIO


@pytest.fixture(scope="session")
def references(audio_dir: Path) -> dict:
    return json.loads((audio_dir / "references.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    data_dir: Path
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def recorded_frames(self, transcript_id: str) -> int:
        """Samples in the transcript's live recording on this server's disk: what a stream kept of the audio sent."""
        with wave.open(str(self.data_dir / "audio" / transcript_id / "recording.wav")) as w:
            return w.getnframes()


def start_server(tmp: Path, **env: str) -> RunningServer:
    port = free_port()
    data = tmp / "data"
    log_path = tmp / "server.log"
    # the shared servers check streaming, not redaction (tests/e2e/test_redaction_live.py and the redaction tests
    # check that, on by default): names in the corpus stay as said, and no server loads the analyzer for nothing.
    # Nor do they check admission for load and shedding (tests/e2e/test_admission.py sets its own target): a
    # suite's servers share a busy machine, and its load must not refuse their streams or hurry their readings.
    # Nor speakers, unless a test asks for them (VOXLANE_DIARIZATION=on): the speaker model's load and its
    # embedding of every segment are CPU the suite's other servers wait for. Nor do they time their calibration
    # (tests/process_support.py). And each decode runs on one thread: the cores are the suite's, which keeps them
    # busy, and a decode split over two threads costs more CPU than on one (tests/e2e/test_live_ws.py with its
    # servers 103 CPU-s against 89), for a speed no test here measures (`voxlane bench` does; the soak, which
    # compares its lag early and late, keeps the default).
    environ = {**os.environ, "VOXLANE_DATA_DIR": str(data), "VOXLANE_PORT": str(port), "VOXLANE_HOST": "127.0.0.1",
               "VOXLANE_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1", "VOXLANE_DISABLE_REDACTION": "on",
               "VOXLANE_LATENCY_TARGET_S": "30", "VOXLANE_DIARIZATION": "off", "VOXLANE_CPU_THREADS": "1",
               "VOXLANE_CALIBRATION_SECONDS": str(KNOWN_CALIBRATION_S), **env}
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], cwd=REPO, env=environ,
                            stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=1, verify=TLS).status_code == 200:
                return RunningServer(url, data, proc, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log_path.read_text()}")


def stop_server(server: RunningServer) -> None:
    stop_process(server.process, 20)


@contextmanager
def served(tmp: Path, **env: str) -> Iterator[RunningServer]:
    """A server for the length of a ``with``: a fixture yields inside it, and a failing test still stops it."""
    srv = start_server(tmp, **env)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server for the live tests (model loading takes seconds; share it)."""
    # Its tests send recordings faster than real time to save minutes: the pacer (held to the wall clock by
    # default) is off here and tested on servers of its own (tests/e2e/test_live_hostile.py, tests/e2e/test_webrtc.py).
    # So the decode times and commit delays it measures are a backlog's, not a live load's: admission, which sizes
    # live load from them, is tested on servers of its own too (tests/e2e/test_admission.py) and is off here.
    # Its mixed streams are diarized: the speaker tests (test_diarization, test_live_turns, test_participants) use it.
    with served(tmp_path_factory.mktemp("voxlane"), VOXLANE_PING_INTERVAL="2", VOXLANE_STATUS_INTERVAL="1",
                VOXLANE_MAX_AUDIO_LEAD_SECONDS="0", VOXLANE_LATENCY_TARGET_S="30", VOXLANE_DIARIZATION="on") as srv:
        yield srv


_TIERS = ("unit", "api", "e2e")
LONGEST_FIRST = (
    "e2e/test_nodes_jobs.py", "e2e/test_nodes_live.py", "e2e/test_inference_loop.py", "e2e/test_live_ws.py",
    "e2e/test_faults.py", "e2e/test_admission.py", "e2e/test_live_turns.py", "e2e/test_webrtc.py",
    "e2e/test_long_session.py", "api/test_rest_jobs.py", "e2e/test_diarization.py", "e2e/test_live_peers.py",
    "api/test_schemathesis.py", "api/test_fanout_nodes.py", "api/test_realtime_api.py", "api/test_webhooks.py",
    "api/test_rest_kiosk.py")
"""The files that hold a worker longest (a minute or more in the suite on a 2-core AMD EPYC, four workers),
longest first: handed out before the rest. A figure gone stale costs the workers' balance, never a result."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks each test with its tier (the folder under tests/ it lives in): ``pytest -m unit`` runs the fast
    in-process tier alone, ``-m "not e2e"`` everything but the real processes.

    And hands out the longest files first (:data:`LONGEST_FIRST`), then the rest by tier, slowest first: xdist
    gives each worker a whole file in the order collected (``--no-loadscope-reorder``), so the files of a minute
    or three start early and the quick unit files fill in for whichever worker frees up last. In xdist's own
    order, the most tests first, the one-test files that take minutes came last (one worker ran the 88 s soak
    test while the others had finished); in tier order alone, a 51 s API file went out when the end-to-end files
    were done and ended its worker 32 s after the others.
    """
    root = Path(__file__).parent

    def tier(item: pytest.Item) -> str:
        parts = Path(str(item.path)).relative_to(root).parts if Path(str(item.path)).is_relative_to(root) else ()
        return parts[0] if parts and parts[0] in _TIERS else ""

    for item in items:
        if tier(item):
            item.add_marker(getattr(pytest.mark, tier(item)))
    order = {name: rank for rank, name in enumerate(reversed(_TIERS))}
    longest = {name: rank for rank, name in enumerate(LONGEST_FIRST)}

    def place(item: pytest.Item) -> tuple[int, int]:
        name = Path(str(item.path)).relative_to(root).as_posix() if tier(item) else ""
        return (longest.get(name, len(longest)), order.get(tier(item), len(order)))

    items.sort(key=place)  # stable: files and tests keep their order
