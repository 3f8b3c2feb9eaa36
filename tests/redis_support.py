"""A private Redis for tests (``pytest_plugins = ("tests.redis_support",)``).

``redis_url``: a ``redis-server`` of this test session's own (``--save "" --appendonly no``, on a free port),
started once per session (per xdist worker), emptied (FLUSHALL) before each test that takes it and killed at the
end. ``private_redis``: a :class:`RedisProcess` of one test's own, for tests that kill and restart it. Never the
Redis that ``.ci/run`` starts on 6379: another process's keys, or a kill, would cross. A ``redis-server`` that is
missing or does not answer fails the test; it does not skip it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_WITHIN_S = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(port: int, *words: str, timeout: float = 1.0) -> bytes:
    """One command over a raw socket (no client library, no event loop: the fixtures are synchronous)."""
    parts = b"".join(b"$%d\r\n%s\r\n" % (len(w.encode()), w.encode()) for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"*%d\r\n" % len(words) + parts)
        return s.recv(4096)


class RedisProcess:
    """One ``redis-server`` on a fixed port that a test may kill and start again (same port, nothing kept:
    like a Redis restarted without persistence)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.workdir = workdir
        self.log = workdir / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (the Redis fan-out tests need one; .ci/run installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(self.log), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_WITHIN_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if _command(self.port, "PING").startswith(b"+PONG"):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        log = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        pytest.fail(f"redis-server did not start on port {self.port}:\n{log[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: what it held is gone, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def flush(self) -> None:
        assert _command(self.port, "FLUSHALL").startswith(b"+OK")


@contextlib.contextmanager
def running_redis(data: Path) -> Iterator[RedisProcess]:
    """A Redis of the caller's own (one a test may kill and start again), killed at the end."""
    server = RedisProcess(data)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()  # a test took it down: the next one gets it back
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A Redis for one module's cluster, which its tests restart, kill or cut off."""
    with running_redis(tmp_path_factory.mktemp("redis-module")) as server:
        yield server
