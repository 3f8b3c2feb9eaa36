"""An S3-compatible store for tests: moto's server mode, a real HTTP server in a process of its own.

``pytest_plugins = ("tests.s3_support",)`` gives ``s3_server`` (one per test session, on a free port, stopped at
the end) and ``s3_bucket`` (a fresh, empty bucket per test, removed after it). Moto answers the S3 API as AWS
does but does not verify signatures, so tests check expiry and tampering on voxlane's side of a flow.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from server.settings import Settings
from tests.http_support import TLS
from tests.process_support import stop_process

ACCESS_KEY = SECRET_KEY = "testing"
REGION = "us-east-1"


@dataclass
class MotoServer:
    endpoint: str
    process: subprocess.Popen
    log_path: Path

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY)

    def make_bucket(self) -> str:
        name = f"voxlane-test-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def drop_bucket(self, name: str) -> None:
        client = self.client()
        for key in self.objects(name):
            client.delete_object(Bucket=name, Key=key)
        client.delete_bucket(Bucket=name)

    def objects(self, bucket: str) -> dict[str, int]:
        """Every object of ``bucket``: key -> size."""
        out: dict[str, int] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            out.update({item["Key"]: item["Size"] for item in page.get("Contents") or []})
        return out

    def settings(self, bucket: str, data_dir: Path, **more: Any) -> Settings:
        """Settings of a voxlane whose audio goes to ``bucket``."""
        return Settings(data_dir=str(data_dir), s3_bucket=bucket, s3_endpoint_url=self.endpoint, s3_region=REGION,
                        s3_access_key_id=ACCESS_KEY, s3_secret_access_key=SECRET_KEY, **more)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    port = _free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT)
    server = MotoServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited at start (is moto[server] installed?):\n{log_path.read_text()}")
        try:
            httpx.get(server.endpoint, timeout=1, verify=TLS)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not answer in 30 s:\n{log_path.read_text()}") from None
            time.sleep(0.1)
    yield server
    stop_process(process)


@pytest.fixture
def s3_bucket(s3_server: MotoServer) -> Iterator[str]:
    name = s3_server.make_bucket()
    yield name
    s3_server.drop_bucket(name)
