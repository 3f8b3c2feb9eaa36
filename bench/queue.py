"""``voxlane bench --queue``: the job queue of several nodes, measured with real ``voxlane worker`` processes.

No server needs to run: the bench makes a throwaway database on the PostgreSQL that ``--database-url`` names,
queues ``--jobs`` recorded-file jobs there exactly as the upload route does (a transcript, its chunk and its job
in one transaction), and starts 1, 2, 4 (``--workers``) ``voxlane worker`` processes on it, with Redis
(``--redis-url``) for their fan-out. With ``--kill N`` it SIGKILLs a random worker N times during the run, and
starts it again at once.

* **Jobs**: each job is one short clip of real speech (``--clip-seconds``, a file all jobs share), transcribed by
  the ``synthetic`` backend (``VOXLANE_ASR_BACKEND``) so that the queue, not the model, is measured. Reported:
  throughput, queue latency p50/p95 (from the job's commit to its chunk being taken, seen by polling every
  ``POLL_S``: that is the resolution; with the whole backlog queued at once it is mostly the backlog's length over
  the throughput), database transactions and Redis commands per job (``pg_stat_database`` and ``INFO stats`` over
  the run, less the bench's own), and every job done exactly once (each chunk transcribed, each transcript
  completed, none with more segments than its twins, and how many jobs had to run again because a kill
  interrupted them). Then, with the workers idle, ``--idle-jobs`` jobs queued one at a time give the idle pick-up
  latency: how soon a job a node accepted starts somewhere.
* **Kiosk chunks** (``--kiosk N``): N chunks of real speech (``--chunk-seconds`` each, cut from ../shared/audio)
  in conversations of ten, confirmed and finished, through workers running the real model: audio seconds
  transcribed and merged per wall second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from sqlalchemy import make_url, text

from bench.metrics import fmt, percentile
from media import WavAppender
from server.cli.live_client import load_pcm16k
from server.jobs.merge import settle_job
from server.jobs.recorded import transcribe_job
from server.pipeline.recordings import chunk_key, upload_key
from server.storage import SqlStore, new_id, utcnow
from server.storage.audio.local import LocalAudioStore

POLL_S = 0.1
IDLE_POLL_S = 0.002
MIN_KILL_GAP_S = 1.0
CLIP_KEY = upload_key("bench", "wav")
REPO = Path(__file__).resolve().parents[1]
SPEECH = "single/jfk_inaugural_1961_excerpt.wav"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queue", action="store_true",
                   help="instead: the job queue with --jobs jobs through 1, 2, 4 (--workers) voxlane worker processes"
                        " on a throwaway database of --database-url (PostgreSQL) and --redis-url")
    p.add_argument("--database-url", default=os.environ.get("VOXLANE_DATABASE_URL"),
                   help="queue: a PostgreSQL server (a user that may CREATE DATABASE)")
    p.add_argument("--redis-url", default=os.environ.get("VOXLANE_REDIS_URL"), help="queue: the workers' Redis")
    p.add_argument("--jobs", type=int, default=10000, help="queue: jobs per worker count")
    p.add_argument("--workers", default="1,2,4", help="queue: worker process counts")
    p.add_argument("--kill", type=int, default=0, help="queue: SIGKILL a random worker this many times per run")
    p.add_argument("--idle-jobs", type=int, default=50,
                   help="queue: jobs queued one at a time after the run, for the idle pick-up latency")
    p.add_argument("--clip-seconds", type=float, default=2.0, help="queue: the speech each job transcribes")
    p.add_argument("--kiosk", type=int, default=0, metavar="CHUNKS",
                   help="queue: instead of jobs, this many kiosk chunks of real speech through the real model")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="queue: the length of each kiosk chunk")


def run_queue(args: argparse.Namespace, audio_dir: Path) -> dict[str, Any]:
    if not args.database_url:
        raise SystemExit("voxlane bench --queue needs --database-url (PostgreSQL)")
    counts = [int(x) for x in str(args.workers).split(",") if x.strip()]
    result: dict[str, Any] = {"mode": "kiosk" if args.kiosk else "jobs", "jobs": args.kiosk or args.jobs,
                              "kills": args.kill, "cpu_count": os.cpu_count(), "label": args.label, "runs": []}
    for n in counts:
        run = asyncio.run(_run(args, audio_dir, n))
        result["runs"].append(run)
        print(f"{n} worker(s): {fmt(run.get('jobs_per_s'), 1)} jobs/s, {fmt(run.get('audio_x_realtime'), 1)}x audio,"
              f" latency p50/p95 {fmt(run.get('latency_p50_s'))}/{fmt(run.get('latency_p95_s'))} s",
              file=sys.stderr)
    return result


def queue_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols = ["workers", "jobs", "kills", "wall s", "jobs/s", "audio s/s", "latency p50", "latency p95", "idle p50",
            "idle p95", "db txns/job",
            "redis cmds/job", "done", "ran again", "duplicated", "lost"]
    rows = [[str(r["workers"]), str(r["jobs"]), str(r["kills"]), fmt(r["wall_s"], 1), fmt(r.get("jobs_per_s"), 1),
             fmt(r.get("audio_x_realtime"), 1), fmt(r.get("latency_p50_s")), fmt(r.get("latency_p95_s")),
             fmt(r.get("idle_pickup_p50_s"), 3), fmt(r.get("idle_pickup_p95_s"), 3),
             fmt(r.get("db_transactions_per_job"), 2), fmt(r.get("redis_commands_per_job"), 2), str(r["done"]),
             str(r["ran_again"]), "-" if r.get("duplicated") is None else str(r["duplicated"]), str(r["lost"])]
            for r in result["runs"]]
    return cols, rows


# ---------------------------------------------------------------- one run


async def _run(args: argparse.Namespace, audio_dir: Path, workers: int) -> dict[str, Any]:
    server = make_url(args.database_url.replace("postgresql+asyncpg", "postgresql"))
    name = f"voxlane_bench_{secrets.token_hex(4)}"
    admin = server.set(database=server.database or "postgres").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = server.set(database=name).render_as_string(hide_password=False)
    data = Path(tempfile.mkdtemp(prefix="voxlane-bench-queue-"))
    store = SqlStore(url)
    await store.open()
    procs: list[_Worker] = []
    try:
        if args.kiosk:
            ids, seconds = await _queue_kiosk(store, data, audio_dir, args.kiosk, args.chunk_seconds)
        else:
            ids, seconds = await _queue_jobs(store, data, audio_dir, args.jobs, args.clip_seconds)
        before_db, before_redis = await _counters(url, args.redis_url)
        started = time.monotonic()
        env = {"VOXLANE_DATABASE_URL": url, "VOXLANE_DATA_DIR": str(data), "VOXLANE_DIARIZATION": "off",
               "VOXLANE_LOG_LEVEL": "warning", "VOXLANE_REST_WORKERS": "2" if args.kiosk else "4",
               **({"VOXLANE_REDIS_URL": args.redis_url} if args.redis_url else {}),
               **({} if args.kiosk else {"VOXLANE_ASR_BACKEND": "synthetic"})}
        procs = [_Worker(env, i) for i in range(workers)]
        taken, done, polls, kills = await _watch(store, ids, procs, args.kill, bool(args.kiosk))
        wall = time.monotonic() - started
        after_db, after_redis = await _counters(url, args.redis_url)
        return {"workers": workers, "jobs": len(ids), "kills": kills, "wall_s": round(wall, 2),
                "jobs_per_s": round(len(done) / wall, 2) if wall else None,
                "audio_seconds": round(seconds, 1), "audio_x_realtime": round(seconds / wall, 2) if wall else None,
                **_latencies(taken),
                "db_transactions_per_job": round((after_db - before_db - 2 * polls) / len(ids), 2),
                "redis_commands_per_job": None if args.redis_url is None else round(
                    (after_redis - before_redis - 1) / len(ids), 2),
                **await _exactly_once(store, ids, done, bool(args.kiosk)),
                **({} if args.kiosk else await _idle_pickup(store, data, args.idle_jobs))}
    finally:
        for p in procs:
            p.stop()
        await store.close()
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def _queue_jobs(store: SqlStore, data: Path, audio_dir: Path, n: int, clip_s: float
                      ) -> tuple[dict[str, float], float]:
    """``n`` job files, queued as ``POST /api/transcribe/`` queues them, sharing one clip of speech on disk."""
    queue = _queue(store, data)
    clip = load_pcm16k(audio_dir / SPEECH)[: int(clip_s * 16000)]
    _write_wav(LocalAudioStore(data).path(CLIP_KEY), clip)
    queued: dict[str, float] = {}
    for start in range(0, n, 500):
        batch = []
        async with store.transaction():
            for _ in range(min(500, n - start)):
                batch.append(await _job_rows(store, len(clip)))
            await queue.stage([transcribe_job(cid) for cid in batch])
        now = time.time()  # committed: its jobs are queued from now
        queued.update((cid, now) for cid in batch)
    return queued, n * len(clip) / 16000


async def _job_rows(store: SqlStore, samples: int) -> str:
    """A job's transcript and chunk (the clip at ``CLIP_KEY``); the chunk's id."""
    tid, cid = new_id(), new_id()
    await store.create_transcript(transcript_id=tid, name="bench job", status="processing")
    await store.create_chunk(transcript_id=tid, kind="job", status="uploaded", path=CLIP_KEY, format="wav",
                             size=44 + 2 * samples, duration=samples / 16000, options={}, chunk_id=cid)
    return cid


async def _idle_pickup(store: SqlStore, data: Path, n: int) -> dict[str, Any]:
    """With the backlog gone and the workers idle: ``n`` jobs queued one at a time, each timed from its commit to
    its chunk being taken (polled every ``IDLE_POLL_S``): how soon an idle cluster starts a job a node accepted.
    The backlog's own latency is mostly its length over the throughput."""
    queue = _queue(store, data)
    samples = (LocalAudioStore(data).path(CLIP_KEY).stat().st_size - 44) // 2
    waits: list[float] = []
    for _ in range(n):
        async with store.transaction():
            cid = await _job_rows(store, samples)
            await queue.stage([transcribe_job(cid)])
        committed = time.monotonic()
        seen = False
        while time.monotonic() - committed < 60:
            row = await store.get_chunk(cid)
            status = row["status"] if row is not None else "gone"
            if status != "uploaded" and not seen:
                seen = True
                waits.append(time.monotonic() - committed)
            if status in ("transcribed", "failed", "gone"):
                break  # the next job finds the workers idle again
            await asyncio.sleep(IDLE_POLL_S)
    waits.sort()
    return {"idle_jobs": len(waits), "idle_pickup_p50_s": round(percentile(waits, 50), 4) if waits else None,
            "idle_pickup_p95_s": round(percentile(waits, 95), 4) if waits else None}


def _queue(store: SqlStore, data: Path) -> Any:
    from server.services import open_job_queue  # the queue the nodes use, on the bench's database
    from server.settings import Settings

    return open_job_queue(Settings(data_dir=str(data), database_url=store.url), store)


async def _queue_kiosk(store: SqlStore, data: Path, audio_dir: Path, n: int, chunk_s: float
                       ) -> tuple[dict[str, float], float]:
    """``n`` kiosk chunks of real speech in finished conversations of ten, confirmed as a kiosk confirms them."""
    queue = _queue(store, data)
    speech = np.concatenate([load_pcm16k(p) for p in sorted((audio_dir / "single").glob("*.wav"))])
    step = int(chunk_s * 16000)
    audio = LocalAudioStore(data)
    project = await store.create_project(title="bench", language=None, portal={}, owner=None)
    queued: dict[str, float] = {}
    seconds = 0.0
    for conv_start in range(0, n, 10):
        t = await store.create_transcript(name="bench conversation", status="processing")
        await store.create_conversation(transcript_id=t["id"], project_id=project["id"], name=None, email=None,
                                        tags=[], source="bench")
        batch = []
        async with store.transaction():
            jobs = []
            for index in range(min(10, n - conv_start)):
                at = ((conv_start + index) * step) % max(1, len(speech) - step)
                clip = speech[at: at + step]
                key = chunk_key(t["id"], index, secrets.token_hex(6), "wav")
                _write_wav(audio.path(key), clip)
                cid = new_id()
                await store.create_chunk(transcript_id=t["id"], kind="chunk", status="uploaded", index=index,
                                         path=key, format="wav", size=44 + 2 * len(clip), chunk_id=cid)
                jobs.append(transcribe_job(cid))
                batch.append(cid)
                seconds += len(clip) / 16000
            await store.update_conversation(t["id"], finished_at=utcnow())
            jobs.append(settle_job(t["id"]))
            await queue.stage(jobs)
        now = time.time()
        queued.update((cid, now) for cid in batch)
    return queued, seconds


def _write_wav(path: Path, samples: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wav = WavAppender(path)
    wav.append(samples)
    wav.sync()
    wav.close()


class _Worker:
    """One ``voxlane worker`` process; :meth:`kill` is a SIGKILL and a new start."""

    def __init__(self, env: dict[str, str], n: int) -> None:
        self.env = env
        self.n = n
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.process = subprocess.Popen([sys.executable, "-m", "server.cli", "worker"], cwd=REPO,
                                        env={**os.environ, **self.env, "VOXLANE_PORT": str(port),
                                             "VOXLANE_HOST": "127.0.0.1"},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(30)
            if self.process.poll() is None:
                self.process.kill()


async def _watch(store: SqlStore, queued: dict[str, float], procs: list[_Worker], kills: int, kiosk: bool
                 ) -> tuple[dict[str, float], set[str], int, int]:
    """Poll the chunks until every one is done (and, for kiosk chunks, every conversation merged); SIGKILL a
    random worker now and then meanwhile. Returns when each chunk was first seen taken, those done, the polls
    made and the kills."""
    taken: dict[str, float] = {}
    done: set[str] = set()
    polls = made = 0
    rng = random.Random(7)
    last_kill = 0.0
    while True:
        async with store.connection() as conn:
            rows = (await conn.execute(text("SELECT id, status FROM chunks WHERE status <> 'uploaded'"))).all()
            merged = (await conn.execute(text(
                "SELECT count(*) FROM transcripts t JOIN conversations c ON c.id = t.id"
                " WHERE t.status <> 'completed'"))).scalar() if kiosk else 0
        polls += 1
        now = time.time()
        for cid, status in rows:
            taken.setdefault(cid, now)
            if status in ("transcribed", "failed"):
                done.add(cid)
        if len(done) >= len(queued) and not merged:
            return {c: taken[c] - queued[c] for c in taken}, done, polls, made
        # the kills are spread over the run by progress (one each 1/(kills+1) of the jobs done), at least
        # MIN_KILL_GAP_S apart so that a started worker gets to take jobs before it may be killed again
        if kills and made < kills and len(done) >= (made + 1) * len(queued) / (kills + 1) \
                and time.monotonic() - last_kill >= MIN_KILL_GAP_S:
            rng.choice(procs).kill()
            made += 1
            last_kill = time.monotonic()
        await asyncio.sleep(POLL_S)


def _latencies(taken: dict[str, float]) -> dict[str, Any]:
    values = sorted(taken.values())
    return {"latency_p50_s": round(percentile(values, 50), 3) if values else None,
            "latency_p95_s": round(percentile(values, 95), 3) if values else None}


async def _counters(url: str, redis_url: str | None) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        txns = await conn.fetchval("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                                   " WHERE datname = current_database()")
    finally:
        await conn.close()
    commands = 0
    if redis_url:
        from redis.asyncio import Redis

        client = Redis.from_url(redis_url)
        try:
            commands = int((await client.info("stats"))["total_commands_processed"])
        finally:
            await client.aclose()
    return int(txns), commands


async def _exactly_once(store: SqlStore, ids: dict[str, float], done: set[str], kiosk: bool) -> dict[str, Any]:
    async with store.connection() as conn:
        attempts = dict((await conn.execute(text("SELECT id, attempts FROM chunks"))).all())
        completed = (await conn.execute(text("SELECT count(*) FROM transcripts WHERE status = 'completed'"))).scalar()
        # every job transcribes the same clip (every kiosk conversation its own ten): a job whose output was
        # written twice shows as a transcript with more segments than its twins
        per = [n for (n,) in (await conn.execute(text(
            "SELECT count(s.id) FROM transcripts t LEFT JOIN segments s ON s.transcript_id = t.id"
            " GROUP BY t.id"))).all()]
    usual = max(set(per), key=per.count) if per else 0
    return {"done": len(done), "lost": len(set(ids) - done), "ran_again": sum(1 for a in attempts.values() if a > 1),
            "transcripts_completed": completed,
            "duplicated": None if kiosk else sum(1 for n in per if n > usual),
            "attempts_max": max(attempts.values(), default=0), "kiosk": kiosk}
