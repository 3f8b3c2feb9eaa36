"""Fixtures for the REST tests (``pytest_plugins = ("tests.rest_fixtures",)``): one in-process app per mode.

The apps run in the test event loop (httpx over ASGI) with the real model; model loading costs seconds, so
each mode's app is shared by every REST test. Both modes' models read through one record of their readings
(:class:`tests.read_once.ReadOnce`): a test run in both modes sends the same recording through the model twice,
and the second mode's readings are the first's. A WebSocket test starts a real uvicorn server on the same app
instance on demand (:meth:`Api.serve`).

The two apps also stand on the two databases: the public one on the embedded SQLite file, the private one on
a throwaway PostgreSQL database. Every test that takes ``api`` runs in both modes, so on both databases.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from server.app import create_app
from server.settings import Settings
from tests.db_support import PgDatabases
from tests.process_support import KNOWN_CALIBRATION_S
from tests.read_once import read_once
from tests.rest_support import JWT_AUDIENCE, JWT_SECRET, LOOPBACK_RECEIVERS, Api, rsa_keys

# The shared apps serve every REST test from one address, in one project after another: the abuse limits
# of the participant API are raised here (tests/api/test_http_limits.py checks them on an app of its own).
pytest_plugins = ("tests.db_support",)

ROOMY_LIMITS = {"rate_per_address": 1000000, "rate_per_project": 1000000, "max_open_conversations": 10000000,
               "max_audio_lead_seconds": 0, "disable_redaction": "on", "latency_target_s": 30.0,
               "calibration_seconds": KNOWN_CALIBRATION_S}
"""Also: their WebSocket tests send recordings faster than real time (the pacer is tested on servers of its own),
and their transcripts keep the names the corpus says (redaction, on by default, is tested on its own). Audio sent
faster than real time is a backlog to the load monitor, not a live load: a target no backlog reaches keeps it
from refusing their streams or shedding (hurrying the readings their words are compared on); admission and
shedding are tested on servers of their own (tests/e2e/test_admission.py). Nor do they time their calibration
(tests/process_support.py)."""


@contextlib.asynccontextmanager
async def running_app(settings: Settings, private: bool, rsa_private_pem: bytes | None = None
                      ) -> AsyncIterator[Api]:
    """The app ``settings`` describe, serving in this loop; its Whisper model (if any) reads through the
    process's record of readings (:func:`tests.read_once.read_once`)."""
    app = create_app(settings, backend=await read_once(settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:
            api = Api(app=app, client=client, settings=settings, private=private, rsa_private_pem=rsa_private_pem)
            try:
                yield api
            finally:
                await api.close_server()


@pytest.fixture(scope="session")
async def public_api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    tmp = tmp_path_factory.mktemp("rest-public")
    settings = Settings(data_dir=str(tmp / "data"), cpu_threads=2, auth_mode="public", jwt_secret=JWT_SECRET,
                        status_interval=0, ping_interval=0, max_upload_mb=500, **ROOMY_LIMITS)
    async with running_app(settings, private=False) as api:
        yield api


@pytest.fixture(scope="session")
async def private_api(tmp_path_factory: pytest.TempPathFactory, pg_databases: PgDatabases) -> AsyncIterator[Api]:
    tmp = tmp_path_factory.mktemp("rest-private")
    private_pem, jwks = rsa_keys(tmp)
    settings = Settings(data_dir=str(tmp / "data"), database_url=await pg_databases.create(), cpu_threads=2,
                        auth_mode="private", jwt_secret=JWT_SECRET,
                        jwt_public_key=str(jwks), jwt_audience=JWT_AUDIENCE, status_interval=0, ping_interval=0,
                        max_upload_mb=500, outbound_allowlist=LOOPBACK_RECEIVERS, **ROOMY_LIMITS)
    async with running_app(settings, private=True, rsa_private_pem=private_pem) as api:
        api.extra["public_pem"] = (tmp / "public.pem").read_text()
        yield api


@pytest.fixture(params=["public", "private"])
def api(request: pytest.FixtureRequest) -> Api:
    """Each test that takes ``api`` runs in both access modes."""
    return request.getfixturevalue(f"{request.param}_api")


