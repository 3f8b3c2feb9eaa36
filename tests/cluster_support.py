"""Several real voxlane processes sharing PostgreSQL, Redis and an S3-compatible store, for the multi-node tests.

Every node is a real ``voxlane serve`` or ``voxlane worker`` process on loopback with a data directory of its
own (nodes share nothing on disk); tests kill them with SIGKILL and start them again. The shared services are a
throwaway database on the session's PostgreSQL (or a private cluster a test can stop: :class:`PrivatePostgres`),
a private ``redis-server`` (tests.redis_support) and moto's S3 server (tests.s3_support).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import REPO, free_port
from tests.http_support import TLS
from tests.process_support import KNOWN_CALIBRATION_S, stop_process
from tests.s3_support import ACCESS_KEY, REGION, SECRET_KEY, MotoServer

START_WITHIN_S = 120.0


@dataclass
class Node:
    """One voxlane process; ``env`` is what it was started with, so :meth:`restart` starts the same node."""

    name: str
    command: str
    url: str
    data_dir: Path
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process writes to it until it ends
        self.process = subprocess.Popen([sys.executable, "-m", "server.cli", self.command], cwd=REPO,
                                        env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_ready(self, within: float = START_WITHIN_S) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log()[-4000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1, verify=TLS).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, 30)

    def restart(self) -> None:
        self.kill()
        self.start()
        self.wait_ready()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Cluster:
    """The shared services' settings, and the nodes started on them."""

    tmp: Path
    database_url: str
    redis_url: str
    s3: MotoServer
    bucket: str
    nodes: list[Node] = field(default_factory=list)

    def env(self, **more: str) -> dict[str, str]:
        """Redaction off, as on the suite's other servers (tests/conftest.py): what the nodes do with jobs and
        streams is the subject here, and each node loading the analyzer (spaCy, and torch through it: 3-5 s of
        CPU a start) held up the nodes the test waits for."""
        return {"VOXLANE_DISABLE_REDACTION": "on", "VOXLANE_DATABASE_URL": self.database_url,
                "VOXLANE_REDIS_URL": self.redis_url,
                "VOXLANE_S3_BUCKET": self.bucket, "VOXLANE_S3_ENDPOINT_URL": self.s3.endpoint,
                "VOXLANE_S3_REGION": REGION, "VOXLANE_S3_ACCESS_KEY_ID": ACCESS_KEY,
                "VOXLANE_S3_SECRET_ACCESS_KEY": SECRET_KEY, "VOXLANE_HOST": "127.0.0.1",
                "VOXLANE_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1", "VOXLANE_CPU_THREADS": "2",
                "VOXLANE_OUTBOUND_ALLOWLIST": "127.0.0.1/32",
                "VOXLANE_CALIBRATION_SECONDS": str(KNOWN_CALIBRATION_S), **more}

    def live_node(self, name: str, lease_s: float, grace_s: float, **env: str) -> Node:
        """A node taking live streams on the synthetic backend (what the cluster does with a stream is the subject,
        not what is said), with a short lease and grace so that a node's death shows within seconds."""
        return self.node(name, VOXLANE_LIVE_LEASE_SECONDS=str(lease_s), VOXLANE_LIVE_GRACE_SECONDS=str(grace_s),
                         VOXLANE_STATUS_INTERVAL="1", VOXLANE_DIARIZATION="off",
                         VOXLANE_MAX_AUDIO_LEAD_SECONDS="10", VOXLANE_JOBS="off", VOXLANE_ASR_BACKEND="synthetic",
                         **env)

    def node(self, name: str, command: str = "serve", *, start: bool = True, **env: str) -> Node:
        port = free_port()
        data = self.tmp / name
        data.mkdir(parents=True, exist_ok=True)
        node = Node(name, command, f"http://127.0.0.1:{port}", data,
                    self.env(VOXLANE_PORT=str(port), VOXLANE_DATA_DIR=str(data), **env), self.tmp / f"{name}.log")
        self.nodes.append(node)
        if start:
            node.start()
        return node

    def named(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def close(self) -> None:
        for node in self.nodes:
            node.kill()


async def new_transcript(base: str, name: str) -> str:
    """A transcript made through a node's REST API; its id."""
    async with httpx.AsyncClient(verify=TLS, base_url=base, timeout=30) as c:
        r = await c.post("/v1/transcripts/", json={"name": name})
        assert r.status_code == 201, r.text
        return r.json()["id"]


def ws_url(base: str, path: str) -> str:
    return base.replace("http", "ws", 1) + path


class Listener:
    """A WebSocket subscriber of one transcript on one node, recording every message but pings, in order."""

    def __init__(self, base: str, transcript_id: str) -> None:
        self.url = ws_url(base, f"/v1/transcripts_websocket/{transcript_id}")
        self.messages: list[dict[str, Any]] = []
        self.closed: int | None = None
        self._task: asyncio.Task | None = None
        self._joined = asyncio.Event()

    async def start(self) -> Listener:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._joined.wait(), 30)
        return self

    async def _run(self) -> None:
        async with websockets.connect(self.url, max_size=None) as ws:
            self._joined.set()
            try:
                async for raw in ws:
                    msg = json.loads(raw)
                    if msg["type"] != "ping":
                        self.messages.append(msg)
            except websockets.ConnectionClosed:
                pass
            self.closed = ws.close_code

    def finals(self) -> list[dict[str, Any]]:
        return [m["data"] for m in self.messages if m["type"] == "transcription" and m["data"]["is_final"]]

    def statuses(self) -> list[str]:
        return [m["data"]["status"] for m in self.messages
                if m["type"] == "status" and m["data"].get("participant_id") is None]

    async def until(self, check: Callable[[Listener], bool], within: float, what: str) -> float:
        """Seconds it took until ``check`` held (fails after ``within``)."""
        started = time.monotonic()
        while not check(self):
            assert time.monotonic() - started < within, f"{what}: not within {within} s; got {self.statuses()}"
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.2)


class PrivatePostgres:
    """A PostgreSQL cluster of one test's own (initdb, trust authentication, a free port), which the test may stop
    and start again; run as the ``postgres`` user, since PostgreSQL refuses to run as root."""

    def __init__(self) -> None:
        self.port = free_port()
        # not under pytest's tmp dir: the postgres user may not enter root's private directories
        self.workdir = Path(tempfile.mkdtemp(prefix="voxlane-test-pg-"))
        self.data = self.workdir / "pgdata"
        self.log = self.workdir / "postgres.log"
        self.bin = _pg_bin()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        done = self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        if done.returncode != 0:
            pytest.fail(f"initdb failed: {done.stderr[-2000:]}")

    def start(self) -> None:
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o",
                         f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir}", "start")
        if done.returncode != 0:
            pytest.fail(f"PostgreSQL did not start: {done.stderr[-2000:]}\n{self._log()}")

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def standby(self, name: str = "standby") -> PrivatePostgres:
        """A streaming replica of this running cluster, started, which this one waits for at every commit
        (synchronous replication, as a failover setup that loses no acknowledged write is configured)."""
        replica = PrivatePostgres()
        if os.geteuid() == 0:
            shutil.chown(replica.workdir, "postgres", "postgres")
        conninfo = f"host=127.0.0.1 port={self.port} user=postgres application_name={name}"
        done = replica._run("pg_basebackup", "-d", conninfo, "-D", str(replica.data), "-X", "stream", "-R")
        if done.returncode != 0:
            pytest.fail(f"pg_basebackup failed: {done.stderr[-2000:]}")
        with open(replica.data / "postgresql.auto.conf", "a") as conf:  # -R names no application
            conf.write(f"primary_conninfo = '{conninfo}'\n")
        replica.start()
        self.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{name}'", "SELECT pg_reload_conf()")
        deadline = time.monotonic() + 60
        while self.sql("SELECT sync_state FROM pg_stat_replication").stdout.strip() != "sync":
            assert time.monotonic() < deadline, f"the standby never streamed in sync: {replica._log()}"
            time.sleep(0.2)
        return replica

    def promote(self) -> None:
        """This standby becomes a primary (what a failover manager does once the old primary is gone)."""
        done = self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")
        if done.returncode != 0:
            pytest.fail(f"the standby was not promoted: {done.stderr[-2000:]}\n{self._log()}")

    def sql(self, *statements: str) -> subprocess.CompletedProcess:
        args = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-At", "-v", "ON_ERROR_STOP=1"]
        for statement in statements:
            args += ["-c", statement]
        done = self._run(*args)
        if done.returncode != 0:
            pytest.fail(f"psql failed: {done.stderr[-2000:]}")
        return done

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _log(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not versions:
        pytest.fail("PostgreSQL's initdb is not installed (the database fault test needs it; .ci/run installs it)")
    return versions[-1].parent


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
