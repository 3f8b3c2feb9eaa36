"""Jobs across nodes, with real processes killed by SIGKILL: an API node that loads no model and two ``voxlane
worker`` nodes on one PostgreSQL, one Redis and one S3-compatible store, each with a data directory of its own; and
an API node and a worker on a PostgreSQL of this file's own, stopped and started. The queue is the subject, not the
words: the workers run the synthetic backend, paced (``VOXLANE_SYNTHETIC_RTF``) so that a job takes seconds, as a
model's would, and is still running when its node is killed, without a model's CPU.

Nothing acknowledged is lost: a worker killed mid-job leaves it to another (one set of segments, one webhook per
event id), an API node killed right after its 202 leaves a job that still completes, two workers killed at once
find their jobs again when they are back, a restarting node touches no other node's running job, a node on an audio
store of its own refuses to start, a database that goes away answers 503 meanwhile and loses nothing it
acknowledged, and neither does one that fails over to its promoted standby.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from asr.backends.synthetic import WORDS
from bench.metrics import normalize
from server.settings import Settings
from tests.cluster_support import Cluster, Node, PrivatePostgres, until
from tests.conftest import AUDIO
from tests.db_support import PgDatabases, fetch_rows
from tests.fault_invariants import assert_invariants
from tests.fault_proxy import FaultProxy
from tests.http_support import TLS
from tests.redis_support import RedisProcess
from tests.s3_support import MotoServer
from tests.webhook_support import SECRET, Receiver

pytest_plugins = ("tests.db_support", "tests.s3_support", "tests.redis_support")

LEASE_S = 4.0
SONNET = "single/librivox_shakespeare_sonnet_002.wav"  # 53 s: long enough to be killed in the middle of
JFK = "single/jfk_inaugural_1961_excerpt.wav"  # 11 s
LONG = "single/ljspeech_LJ001-0001_0016.wav"  # 113 s of continuous reading: a worker is stopped well inside it
FAILOVER_S = 6.0
MIN_WORDS = 100  # of the 194 the synthetic backend writes for the speech of the sonnet and JFK's excerpt
PACE = 0.3  # a worker's decode: 16 s for the sonnet, 34 s for the long reading (the model's pace on a slow CPU)
P = "/api/participant"


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory, pg_databases: PgDatabases, s3_server: MotoServer
                  ) -> AsyncIterator[Cluster]:
    redis = RedisProcess(tmp_path_factory.mktemp("redis-jobs"))
    redis.start()
    c = Cluster(tmp_path_factory.mktemp("nodes-jobs"), await pg_databases.create(), redis.url, s3_server,
                s3_server.make_bucket())
    common = {"VOXLANE_JOB_LEASE_SECONDS": str(LEASE_S), "VOXLANE_DIARIZATION": "off", "VOXLANE_REST_WORKERS": "1",
              "VOXLANE_ASR_BACKEND": "synthetic", "VOXLANE_SYNTHETIC_RTF": str(PACE)}
    api = c.node("api", **common, VOXLANE_JOBS="off", VOXLANE_LIVE="off")
    w1 = c.node("w1", "worker", **common)
    c.node("w2", "worker", start=False, **common)
    for n in (api, w1):
        n.wait_ready()
    yield c
    c.close()
    redis.kill()


def running(n: Node) -> bool:
    return n.process is not None and n.process.poll() is None


async def chunk_rows(url: str, transcript_id: str) -> list[tuple]:
    return await fetch_rows(url, "SELECT idx, status, attempts FROM chunks WHERE transcript_id = :t ORDER BY idx",
                            t=transcript_id)


async def segments(url: str, transcript_id: str) -> list[tuple]:
    return await fetch_rows(url, 'SELECT id, start, "end", text FROM segments WHERE transcript_id = :t'
                                 " ORDER BY start", t=transcript_id)


def no_doubles(rows: list[tuple]) -> None:
    assert len({r[0] for r in rows}) == len(rows), "segment ids are unique"
    assert len({(round(r[1], 2), r[3]) for r in rows}) == len(rows), "no segment was stored twice"


async def processing(url: str, transcript_id: str) -> bool:
    return any(r[1] == "processing" for r in await chunk_rows(url, transcript_id))


async def kiosk_conversation(base: str, project: str, files: list[str]) -> str:
    """A conversation whose chunks a kiosk PUT straight to the bucket (presigned URLs), confirmed and finished."""
    async with httpx.AsyncClient(verify=TLS, timeout=60) as c:
        cid = (await c.post(base + P + "/conversations/initiate", json={"project_id": project})).json()["id"]
        for f in files:
            url = (await c.post(f"{base}{P}/conversations/{cid}/get-upload-url",
                                json={"content_type": "audio/wav"})).json()
            assert "X-Amz-Signature=" in url["url"], "the bytes go to the store, not through the API"
            put = await c.put(url["url"], content=(AUDIO / f).read_bytes(), headers=url["headers"])
            assert put.status_code == 200, put.text
            r = await c.post(f"{base}{P}/conversations/{cid}/confirm-upload", json={"key": url["key"]})
            assert r.status_code == 202, r.text
        assert (await c.post(f"{base}{P}/conversations/{cid}/finish")).status_code == 200
    return cid


async def conversation(base: str, project: str, cid: str) -> dict:
    async with httpx.AsyncClient(verify=TLS, timeout=30) as c:
        return (await c.get(f"{base}{P}/projects/{project}/conversations/{cid}")).json()


@pytest.mark.faults
async def test_a_worker_killed_mid_chunk_leaves_it_to_another_with_one_result_and_one_webhook(
        cluster: Cluster, tmp_path: Path):
    api, w1, w2 = cluster.named("api"), cluster.named("w1"), cluster.named("w2")
    receiver = Receiver(fail_first=0)
    try:
        async with httpx.AsyncClient(verify=TLS, base_url=api.url, timeout=30) as c:
            pid = (await c.post("/api/projects", json={"title": "kiosk"})).json()["id"]
            r = await c.post(f"/api/projects/{pid}/webhooks", json={"url": receiver.url + "/", "secret": SECRET})
            assert r.status_code == 201, r.text
        cid = await kiosk_conversation(api.url, pid, [SONNET, JFK])
        await until(lambda: processing(cluster.database_url, cid), 60, "a worker transcribes the first chunk")
        await asyncio.sleep(2.0)
        w1.kill()  # mid-chunk
        w2.start()
        w2.wait_ready()
        assert "calibration:" not in w2.log(), "a worker takes no live audio: it is not calibrated for it"
        await until(lambda: _completed(api.url, pid, cid), 150, "the other worker finishes the conversation")
        rows = await chunk_rows(cluster.database_url, cid)
        assert [(i, s) for i, s, _ in rows] == [(0, "transcribed"), (1, "transcribed")]
        assert rows[0][2] == 2, "the killed attempt counted, and one more ran"
        stored = await segments(cluster.database_url, cid)
        no_doubles(stored)
        await until(lambda: _delivered(receiver, 2), 60, "both webhooks arrive")
        events = Counter(h.event["type"] for h in receiver.accepted())
        assert events == {"conversation.transcribed": 1, "conversation.summarized": 1}, events
        assert all(n == 1 for n in Counter(h.event_id for h in receiver.hits).values()), "one webhook per event id"
        assert all(h.signed for h in receiver.hits)
        merged = (await conversation(api.url, pid, cid))["text"]
        await assert_invariants(cluster.database_url, [cid])
    finally:
        receiver.close()
    # the same chunks on one node (the embedded default): the same transcript, a word for each 0.3 s of speech
    assert merged == await _single_node_text(tmp_path, [SONNET, JFK])
    assert set(normalize(merged)) <= set(WORDS) and len(normalize(merged)) > MIN_WORDS, merged


async def _completed(base: str, pid: str, cid: str) -> bool:
    return (await conversation(base, pid, cid)).get("status") == "completed"


async def _delivered(receiver: Receiver, n: int) -> bool:
    return len(receiver.accepted()) >= n


async def _single_node_text(tmp_path: Path, files: list[str]) -> str:
    from tests.rest_fixtures import ROOMY_LIMITS, running_app

    settings = Settings(data_dir=str(tmp_path / "single"), asr_backend="synthetic", diarization="off",
                        status_interval=0, ping_interval=0, **ROOMY_LIMITS)
    async with running_app(settings, private=False) as single:
        c = single.client
        pid = (await c.post("/api/projects", json={"title": "single"})).json()["id"]
        cid = (await c.post(P + "/conversations/initiate", json={"project_id": pid})).json()["id"]
        for f in files:
            url = (await c.post(f"{P}/conversations/{cid}/get-upload-url", json={})).json()
            path = url["url"].split("://", 1)[1].split("/", 1)[1]
            assert (await c.put("/" + path, content=(AUDIO / f).read_bytes())).status_code == 200
            confirmed = await c.post(f"{P}/conversations/{cid}/confirm-upload", json={"key": url["key"]})
            assert confirmed.status_code == 202
        await c.post(f"{P}/conversations/{cid}/finish")
        for _ in range(600):
            state = (await c.get(f"{P}/projects/{pid}/conversations/{cid}")).json()
            if state["status"] == "completed":
                return state["text"]
            await asyncio.sleep(0.2)
    raise AssertionError("the single node did not complete the conversation")


async def job(base: str, name: str) -> str:
    async with httpx.AsyncClient(verify=TLS, base_url=base, timeout=60) as c:
        r = await c.post("/api/transcribe/", files={"file": (name.split("/")[-1], (AUDIO / name).read_bytes())},
                         data={"diarize": "false"})
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


async def job_done(base: str, job_id: str) -> bool:
    async with httpx.AsyncClient(verify=TLS, base_url=base, timeout=30) as c:
        status = (await c.get(f"/api/transcribe/status/{job_id}")).json()
    assert status["status"] != "failed", status
    return status["status"] == "completed"


@pytest.mark.faults
async def test_the_api_node_killed_right_after_its_202_leaves_a_job_that_completes(cluster: Cluster):
    api = cluster.named("api")
    for w in ("w1", "w2"):
        if not running(cluster.named(w)):
            cluster.named(w).restart()
    job_id = await job(api.url, JFK)
    api.kill()  # the job row, its file in the bucket and its queued job were committed before the 202
    api.restart()
    await until(lambda: job_done(api.url, job_id), 90, "the job completes")
    no_doubles(await segments(cluster.database_url, job_id))
    await assert_invariants(cluster.database_url, [job_id])


@pytest.mark.faults
async def test_both_workers_killed_then_restarted_complete_everything(cluster: Cluster):
    api, w1, w2 = cluster.named("api"), cluster.named("w1"), cluster.named("w2")
    for w in (w1, w2):
        if not running(w):
            w.restart()
    jobs = [await job(api.url, SONNET), await job(api.url, SONNET)]

    async def both_running() -> bool:
        return all([await processing(cluster.database_url, j) for j in jobs])

    await until(both_running, 60, "each worker transcribes one")
    await asyncio.sleep(1.0)
    w1.kill()
    w2.kill()
    w1.restart()
    w2.restart()
    for j in jobs:
        await until(lambda j=j: job_done(api.url, j), 180, "every job completes")
        [(_, status, attempts)] = await chunk_rows(cluster.database_url, j)
        assert status == "transcribed" and attempts == 2
        no_doubles(await segments(cluster.database_url, j))
    await assert_invariants(cluster.database_url, jobs)


async def job_on_w1(cluster: Cluster, name: str) -> str:
    """A job of ``name``, once worker w1 (the only one running) transcribes it; its id."""
    cluster.named("w2").kill()
    w1 = cluster.named("w1")
    if not running(w1):
        w1.restart()
    job_id = await job(cluster.named("api").url, name)
    await until(lambda: processing(cluster.database_url, job_id), 60, "w1 transcribes it")
    return job_id


@pytest.mark.faults
async def test_a_restarting_node_leaves_another_nodes_running_job_alone(cluster: Cluster):
    api, w2 = cluster.named("api"), cluster.named("w2")
    job_id = await job_on_w1(cluster, SONNET)
    w2.restart()  # a node that starts (this is what reset every node's running work)
    api.restart()
    await until(lambda: job_done(api.url, job_id), 120, "w1 completes it")
    [(_, status, attempts)] = await chunk_rows(cluster.database_url, job_id)
    assert (status, attempts) == ("transcribed", 1), "untouched: one attempt, never taken back"
    no_doubles(await segments(cluster.database_url, job_id))
    await assert_invariants(cluster.database_url, [job_id])


@pytest.mark.faults
async def test_a_worker_stopped_past_two_leases_is_refused_when_it_wakes_and_the_job_is_done_once(
        cluster: Cluster):
    """w1 is stopped (SIGSTOP) mid-job for longer than two job leases: its job runs again on w2 and completes.
    When w1 wakes up, its attempt's next write is refused (the newer attempt holds the transcript's fence) and it
    stops: the transcript keeps w2's segments, the chunk w2's outcome."""
    api, w1, w2 = cluster.named("api"), cluster.named("w1"), cluster.named("w2")
    job_id = await job_on_w1(cluster, LONG)
    await asyncio.sleep(1.0)
    assert w1.process is not None
    w1.process.send_signal(signal.SIGSTOP)
    try:
        w2.restart()
        await until(lambda: job_done(api.url, job_id), 180, "w2 runs the job again and completes it")
        done = await segments(cluster.database_url, job_id)
        [(_, status, attempts)] = await chunk_rows(cluster.database_url, job_id)
        assert (status, attempts) == ("transcribed", 2)
    finally:
        w1.process.send_signal(signal.SIGCONT)
    await until(lambda: _logged(w1, "attempt 1 stops, its writes refused"), 120, "w1's attempt is refused")
    await until(lambda: _logged(w1, "a newer attempt ended the job"), 30, "procrastinate's end of it, told")
    assert "never retrieved" not in w1.log(), "an end procrastinate could not record is no error"
    assert await segments(cluster.database_url, job_id) == done, "w1 wrote nothing after it woke"
    assert await chunk_rows(cluster.database_url, job_id) == [(0, "transcribed", 2)]
    no_doubles(done)
    await assert_invariants(cluster.database_url, [job_id])
    assert running(w1), "and w1 goes on serving"


async def _logged(n: Node, line: str) -> bool:
    return line in n.log()


async def test_a_node_on_a_store_of_its_own_refuses_to_start(cluster: Cluster):
    """The new operator's case: a second API node and a worker on the cluster's database, each with its default
    local audio directory. Each would accept chunks the others cannot read (a chunk then failed as "not in the
    audio store" with its file on the first node's disk); each stops at start instead, naming its store."""
    for name, command in (("stray-api", "serve"), ("stray-worker", "worker")):
        local = {k: "" for k in cluster.env() if k.startswith("VOXLANE_S3_")}  # the default: its data dir
        stray = cluster.node(name, command, **local, VOXLANE_LIVE="off", VOXLANE_DIARIZATION="off",
                             VOXLANE_JOBS="off" if command == "serve" else "on")
        assert stray.process is not None
        code = await asyncio.to_thread(stray.process.wait, 120)
        assert code != 0
        log = stray.log()
        assert "is not the one the other nodes on this database use" in log, log[-3000:]
        assert str(stray.data_dir / "audio") in log and "VOXLANE_S3_BUCKET" in log
        assert "voxlane audio-store adopt" in log
    api = cluster.named("api")  # the nodes on the shared bucket go on
    async with httpx.AsyncClient(verify=TLS, timeout=10) as client:
        assert running(api) and (await client.get(api.url + "/health")).status_code == 200


def api_and_worker(c: Cluster) -> tuple[Node, Node]:
    """An API node taking no jobs and a worker, both on the synthetic backend (the queue is the subject), ready."""
    common = {"VOXLANE_JOB_LEASE_SECONDS": str(LEASE_S), "VOXLANE_DIARIZATION": "off",
              "VOXLANE_ASR_BACKEND": "synthetic"}
    api = c.node("api", **common, VOXLANE_JOBS="off", VOXLANE_LIVE="off")
    worker = c.node("worker", "worker", **common)
    for n in (api, worker):
        n.wait_ready()
    return api, worker


@pytest.mark.faults
async def test_a_database_that_goes_away_gets_503s_and_loses_nothing_acknowledged(
        tmp_path: Path, s3_server: MotoServer):
    pg = PrivatePostgres()
    pg.init()
    pg.start()
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    c = Cluster(tmp_path / "nodes", pg.url, redis.url, s3_server, s3_server.make_bucket())
    try:
        api, worker = api_and_worker(c)
        jobs = [await job(api.url, name) for name in (SONNET, JFK, SONNET, JFK, SONNET, JFK)]
        pg.stop()
        async with httpx.AsyncClient(verify=TLS, base_url=api.url, timeout=30) as client:
            listing = await client.get("/v1/transcripts/")
            refused = await client.post("/api/transcribe/", files={"file": ("j.wav", (AUDIO / JFK).read_bytes())})
        for r in (listing, refused):
            assert r.status_code == 503 and r.json()["error"]["code"] == "DATABASE_UNAVAILABLE", r.text
            assert int(r.headers["Retry-After"]) >= 1
        await asyncio.sleep(3)
        pg.start()
        for j in jobs:
            await until(lambda j=j: job_done(api.url, j), 120, "every acknowledged job completes")
            no_doubles(await segments(pg.url, j))
        await assert_invariants(pg.url, jobs)
        assert running(worker), "the worker rode out the outage"
    finally:
        c.close()
        redis.kill()
        pg.remove()


@pytest.mark.faults
async def test_a_database_failover_to_its_promoted_standby_loses_nothing_acknowledged(
        tmp_path: Path, s3_server: MotoServer):
    """The primary dies with jobs queued and running; a synchronous standby is promoted and the database's address
    moves to it (a proxy stands for the failover manager's address). The nodes ride it out on their own: every
    acknowledged job completes once, and whatever the worker's lanes went through (an attempt stopped with the
    database away, a lane started again) leaves nothing for the reconciler to find minutes later."""
    primary = PrivatePostgres()
    primary.init()
    primary.start()
    standby = primary.standby()
    address = FaultProxy("127.0.0.1", primary.port).start()
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    c = Cluster(tmp_path / "nodes", f"postgresql://postgres@127.0.0.1:{address.port}/postgres", redis.url,
                s3_server, s3_server.make_bucket())
    try:
        api, worker = api_and_worker(c)
        jobs = [await job(api.url, name) for name in (LONG, SONNET, JFK, SONNET, JFK)]
        await until(lambda: processing(primary.url, jobs[0]), 120, "the long job runs when the primary dies")
        primary.stop()  # immediate: the primary dies
        await asyncio.sleep(FAILOVER_S)  # a failover manager's detection: longer than a worker's poll for jobs
        standby.promote()
        address.retarget("127.0.0.1", standby.port)
        for j in jobs:
            await until(lambda j=j: job_done(api.url, j), 120, "every acknowledged job completes")
            no_doubles(await segments(standby.url, j))
        await assert_invariants(standby.url, jobs)
        assert "with no job behind it" not in worker.log(), "every interrupted job was queued again at once"
        assert running(worker) and running(api), "both nodes rode out the failover"
    finally:
        c.close()
        redis.kill()
        address.close()
        standby.remove()
        primary.remove()
