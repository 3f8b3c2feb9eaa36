"""The job queue contract, on the embedded queue (SQLite) and the PostgreSQL one alike, through the runner that
every node uses: staged in a transaction or not at all, locks, dedupe keys, scheduled retries with their
attempts, giving up, the watchdog, cancellation, and what a stopped process leaves behind."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from server.jobs.queue import Job, JobQueue, Lane
from server.jobs.runner import EVENTS_LANE, JobContext, JobRunner, RetryLater, Task
from server.services import open_job_queue
from server.settings import Settings
from server.storage import SqlStore

pytest_plugins = ("tests.db_support",)


@dataclass
class Node:
    """A store, its queue and a runner over recording handlers: what a node that takes jobs has."""

    store: SqlStore
    queue: JobQueue
    settings: Settings
    runs: list[tuple[str, Any, int]] = field(default_factory=list)  # (task, args["n"], attempt)
    given_up: list[tuple[Any, str]] = field(default_factory=list)
    runner: JobRunner | None = None
    handlers: dict[str, Callable[[JobContext], Awaitable[None]]] = field(default_factory=dict)

    def start(self, tasks: list[Task], *, stall: float = 60.0, concurrency: int = 4) -> JobRunner:
        lanes = [Lane(EVENTS_LANE, frozenset(t.name for t in tasks), concurrency)]  # where lane_of puts them
        services: Any = type("Svc", (), {"store": self.store, "jobs": self.queue, "settings": self.settings})()
        self.runner = JobRunner(services, self.queue, tasks, lanes, stall_seconds=stall)
        self.runner.start()
        return self.runner

    def task(self, name: str, run: Callable[[JobContext], Awaitable[None]] | None = None, **kw: Any) -> Task:
        async def record(ctx: JobContext) -> None:
            self.runs.append((name, ctx.args.get("n"), ctx.attempt))
            if run is not None:
                await run(ctx)

        async def give_up(ctx: JobContext, reason: str) -> None:
            self.given_up.append((ctx.args.get("n"), reason))

        return Task(name, record, give_up=give_up, **kw)


@contextlib.asynccontextmanager
async def node(database_url: str, tmp_path: Path) -> AsyncIterator[Node]:
    settings = Settings(data_dir=str(tmp_path / "data"), database_url=database_url)
    store = SqlStore(database_url)
    await store.open()
    queue = open_job_queue(settings, store)
    n = Node(store, queue, settings)
    try:
        yield n
    finally:
        if n.runner is not None:
            await n.runner.stop()
        await queue.close()
        await store.close()


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_job_exists_only_if_its_transaction_commits(database_url: str, tmp_path: Path) -> None:
    async with node(database_url, tmp_path) as n:
        n.start([n.task("t")])
        with contextlib.suppress(RuntimeError):
            async with n.store.transaction():
                await n.store.create_transcript(name="rolled back")
                await n.queue.stage([Job("t", {"n": 1})])
                raise RuntimeError("the request failed after staging")
        async with n.store.transaction():
            await n.store.create_transcript(name="kept")
            await n.queue.stage([Job("t", {"n": 2})])
        await until(lambda: len(n.runs) == 1)
        await asyncio.sleep(0.3)
        assert n.runs == [("t", 2, 1)]
        assert sum((await n.queue.counts()).values()) == 0


async def test_jobs_with_one_lock_run_one_at_a_time_in_order(database_url: str, tmp_path: Path) -> None:
    async with node(database_url, tmp_path) as n:
        active: list[int] = []
        overlap: list[tuple[int, list[int]]] = []

        async def slow(ctx: JobContext) -> None:
            if active:
                overlap.append((ctx.args["n"], list(active)))
            active.append(ctx.args["n"])
            await asyncio.sleep(0.05)
            active.remove(ctx.args["n"])

        await n.queue.stage([Job("t", {"n": i}, lock="conversation:a") for i in range(5)]
                            + [Job("t", {"n": 10 + i}, lock=f"other:{i}") for i in range(3)])
        n.start([n.task("t", slow)])
        await until(lambda: len(n.runs) == 8)
        assert [r[1] for r in n.runs if r[1] < 10] == [0, 1, 2, 3, 4]
        assert not [(n_, others) for n_, others in overlap if n_ < 10 and any(o < 10 for o in others)]
        assert overlap, "jobs without a shared lock ran at once"


async def test_a_dedupe_key_keeps_one_job_waiting_and_one_may_wait_behind_a_running_one(
        database_url: str, tmp_path: Path) -> None:
    """What a conversation's merges use: a lock (one at a time) and a dedupe key (one waiting at most)."""
    async with node(database_url, tmp_path) as n:
        release = asyncio.Event()

        async def held(ctx: JobContext) -> None:
            if ctx.args["n"] == 1:
                await release.wait()

        def merge(i: int) -> Job:
            return Job("t", {"n": i}, lock="l", dedupe="d")

        await n.queue.stage([merge(1), merge(2)])
        assert (await n.queue.counts()).get("t") == 1
        n.start([n.task("t", held)])
        await until(lambda: len(n.runs) == 1)
        await n.queue.stage([merge(3)])  # the first one runs: this one waits behind it
        await n.queue.stage([merge(4)])  # ... and covers this one
        release.set()
        await until(lambda: len(n.runs) == 2)
        await asyncio.sleep(0.3)
        assert [r[1] for r in n.runs] == [1, 3]


async def test_failed_attempts_are_retried_after_a_backoff_then_given_up(database_url: str, tmp_path: Path) -> None:
    async with node(database_url, tmp_path) as n:
        async def fails(ctx: JobContext) -> None:
            if ctx.args["n"] == 1:
                raise RetryLater("not yet", delay=0.3)
            raise ValueError("broken input")

        n.start([n.task("t", fails, max_attempts=3, backoff_s=0.1)])
        started = time.monotonic()
        await n.queue.stage([Job("t", {"n": 1}), Job("t", {"n": 2})])
        await until(lambda: len(n.given_up) == 2)
        attempts = [(r[1], r[2]) for r in n.runs]
        assert sorted(attempts) == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
        assert time.monotonic() - started >= 0.6, "RetryLater's delay was honoured"
        reasons = dict(n.given_up)
        assert "gave up after 3 attempts: not yet" in reasons[1] and "broken input" in reasons[2]
        await asyncio.sleep(0.3)
        assert len(n.runs) == 6 and sum((await n.queue.counts()).values()) == 0


async def test_a_job_scheduled_later_waits_for_its_time(database_url: str, tmp_path: Path) -> None:
    async with node(database_url, tmp_path) as n:
        n.start([n.task("t")])
        at = time.time() + 0.6
        await n.queue.stage([Job("t", {"n": 1}, run_at=at)])
        await until(lambda: len(n.runs) == 1)
        assert time.time() >= at - 0.01


async def test_the_watchdog_cancels_a_hung_attempt_and_retries_it(database_url: str, tmp_path: Path) -> None:
    async with node(database_url, tmp_path) as n:
        async def hangs_once(ctx: JobContext) -> None:
            if ctx.attempt == 1:
                await asyncio.Event().wait()

        n.start([n.task("t", hangs_once, backoff_s=0.05)], stall=0.3)
        await n.queue.stage([Job("t", {"n": 1})])
        await until(lambda: len(n.runs) == 2)
        assert [r[2] for r in n.runs] == [1, 2] and not n.given_up


async def test_deleting_a_transcript_cancels_its_job_on_this_node(database_url: str, tmp_path: Path) -> None:
    async with node(database_url, tmp_path) as n:
        async def forever(ctx: JobContext) -> None:
            await asyncio.Event().wait()

        runner = n.start([n.task("t", forever)])
        await n.queue.stage([Job("t", {"n": 1, "transcript_id": "tid"})])
        await until(lambda: bool(runner.running_for("tid")))
        await runner.cancel("tid")
        assert not runner.running_for("tid")
        await asyncio.sleep(0.3)
        assert len(n.runs) == 1 and not n.given_up and sum((await n.queue.counts()).values()) == 0


async def test_positions_and_counts(database_url: str, tmp_path: Path) -> None:
    async with node(database_url, tmp_path) as n:
        await n.queue.stage([Job("t", {"n": i}, dedupe=f"t:{i}") for i in range(3)] + [Job("u", {"n": 9})])
        assert await n.queue.counts() == {"t": 3, "u": 1}
        assert [await n.queue.position("t", f"t:{i}") for i in range(3)] == [1, 2, 3]
        assert await n.queue.position("t", "t:9") is None


async def test_held_names_the_keys_of_waiting_and_running_jobs(database_url: str, tmp_path: Path) -> None:
    async with node(database_url, tmp_path) as n:
        release = asyncio.Event()

        async def slow(ctx: JobContext) -> None:
            await release.wait()

        await n.queue.stage([Job("t", {"n": 1}, dedupe="t:1")])
        n.start([n.task("t", slow)])
        await until(lambda: len(n.runs) == 1)
        await n.queue.stage([Job("t", {"n": 2}, dedupe="t:2", run_at=time.time() + 3600)])
        assert await n.queue.held(["t:1", "t:2", "t:3"]) == {"t:1", "t:2"}, "one running, one waiting, one gone"
        release.set()
        await until(lambda: len(n.runs) == 1)
        for _ in range(200):
            if await n.queue.held(["t:1"]) == set():
                break
            await asyncio.sleep(0.02)
        assert await n.queue.held(["t:1", "t:2"]) == {"t:2"}, "a finished job holds nothing"
        assert await n.queue.held([]) == set()


async def running_a_slow_job(n: Node) -> Any:
    """A job of one attempt that would run for 30 s, staged on node ``n`` and begun: the runner it runs on."""
    async def slow(ctx: JobContext) -> None:
        await asyncio.sleep(30)

    runner = n.start([n.task("t", slow, max_attempts=1)])
    await n.queue.stage([Job("t", {"n": 1})])
    await until(lambda: len(n.runs) == 1)
    return runner


async def test_a_stopping_node_interrupts_its_attempt_without_using_it_up(database_url: str, tmp_path: Path) -> None:
    async with node(database_url, tmp_path) as n:
        runner = await running_a_slow_job(n)
        await runner.stop()
        n.runner = None
        n.start([n.task("t", max_attempts=1)])
        await until(lambda: len(n.runs) == 2)
        assert [r[2] for r in n.runs] == [1, 1] and not n.given_up


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_process_that_died_running_a_job_leaves_it_to_the_next_one(tmp_path: Path, backend: str) -> None:
    """The embedded queue: the process lock tells that the runner of a job marked running is gone."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with node(url, tmp_path) as n:
        await n.queue.stage([Job("t", {"n": 1})])
        async with n.store.connection() as conn:  # what a process killed mid-job leaves
            from sqlalchemy import update

            from server.storage.tables import jobs

            await conn.execute(update(jobs).values(status="running", attempts=1, lease_until=time.time() + 3600))
        n.start([n.task("t")])
        await until(lambda: len(n.runs) == 1)
        assert n.runs == [("t", 1, 2)]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_job_that_died_after_queueing_its_own_retry_gives_way_to_it(tmp_path: Path, backend: str) -> None:
    """The embedded queue: a handler that stages its own next run under its dedupe key (a webhook's retry) and
    whose process dies before its job is settled leaves one running and one queued job with the same key. The
    next process runs the queued one once instead of failing on the key (its job runner stopped for good, and
    every delivery waited)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with node(url, tmp_path) as n:
        await n.queue.stage([Job("t", {"n": 1}, dedupe="t:1")])
        async with n.store.connection() as conn:  # what a process killed between the two writes leaves
            from sqlalchemy import func, select, update

            from server.storage.tables import jobs

            await conn.execute(update(jobs).values(status="running", attempts=1, lease_until=time.time() + 3600))
        await n.queue.stage([Job("t", {"n": 2}, dedupe="t:1"), Job("t", {"n": 3}, dedupe="t:3")])
        async with n.store.connection() as conn:  # and a second pair: two running with one key, nothing queued
            await conn.execute(update(jobs).where(jobs.c.dedupe == "t:3")
                               .values(status="running", attempts=1, lease_until=time.time() + 3600))
        await n.queue.stage([Job("t", {"n": 4}, dedupe="t:3")])
        async with n.store.connection() as conn:
            await conn.execute(update(jobs).where(jobs.c.dedupe == "t:3", jobs.c.status == "queued")
                               .values(status="running", attempts=1, lease_until=time.time() + 3600))
        n.start([n.task("t")])
        await until(lambda: len(n.runs) == 2)
        await asyncio.sleep(0.3)
        assert sorted(r[1] for r in n.runs) == [2, 4], n.runs
        async with n.store.connection() as conn:
            assert (await conn.execute(select(func.count()).select_from(jobs))).scalar() == 0


async def test_a_queue_that_fails_is_served_again(database_url: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A node whose queue fails to serve (a write refused as it starts) serves it again after a pause instead of
    answering as if it ran jobs and running none."""
    from server.jobs import runner as runner_module

    monkeypatch.setattr(runner_module, "OUTAGE_RETRY_S", 0.05)
    async with node(database_url, tmp_path) as n:
        serve = n.queue.serve
        failures = []

        async def failing_once(lanes: Any, dispatch: Any) -> None:
            if not failures:
                failures.append(1)
                raise OSError("database is locked")
            await serve(lanes, dispatch)

        monkeypatch.setattr(n.queue, "serve", failing_once)
        n.start([n.task("t")])
        await n.queue.stage([Job("t", {"n": 1})])
        await until(lambda: len(n.runs) == 1)
        assert failures == [1] and n.runs == [("t", 1, 1)]


async def test_a_stop_that_cannot_put_its_job_back_leaves_the_attempt_unused(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded queue: when recording the interruption fails (the database was busy or went away as the
    process stopped), the next serve() in this process still gives the attempt back."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with node(url, tmp_path) as n:
        runner = await running_a_slow_job(n)
        settle = n.queue._settle  # type: ignore[attr-defined]

        async def failing(claimed: Any, outcome: Any, count: bool = True) -> None:
            if not count:
                raise OSError("disk I/O error")
            await settle(claimed, outcome, count)

        monkeypatch.setattr(n.queue, "_settle", failing)
        await runner.stop()
        monkeypatch.setattr(n.queue, "_settle", settle)
        n.runner = None
        n.start([n.task("t", max_attempts=1)])
        await until(lambda: len(n.runs) == 2)
        assert [r[2] for r in n.runs] == [1, 1] and not n.given_up


async def test_an_outcome_that_could_not_be_recorded_is_recorded_later(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded queue: a write of a job's outcome that fails (the file busy) is tried again until it holds,
    instead of leaving the job ``running`` (and its conversation waiting) until the process next starts."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with node(url, tmp_path) as n:
        settle = n.queue._settle  # type: ignore[attr-defined]
        failures: list[str] = []

        async def failing_twice(claimed: Any, outcome: Any, count: bool = True) -> None:
            if len(failures) < 2:
                failures.append(claimed.id)
                raise OSError("database is locked")
            await settle(claimed, outcome, count)

        monkeypatch.setattr(n.queue, "_settle", failing_twice)
        await n.queue.stage([Job("t", {"n": 1})])
        n.start([n.task("t")])
        await until(lambda: len(n.runs) == 1)
        for _ in range(250):
            if not await _rows(n):
                break
            await asyncio.sleep(0.02)
        assert not await _rows(n), "recorded (a job that is done leaves no row)"
        assert len(failures) == 2 and n.runs == [("t", 1, 1)]


async def _rows(n: Node) -> int:
    from sqlalchemy import func, select

    from server.storage.tables import jobs

    async with n.store.connection() as conn:
        return int((await conn.execute(select(func.count()).select_from(jobs))).scalar() or 0)


async def test_a_job_waiting_for_its_lock_does_not_make_the_workers_spin(tmp_path: Path) -> None:
    """The embedded queue: while a job holds a lock, the next job with it is not due; the workers sleep until
    the holder settles instead of claiming in a loop (a kiosk merge test spent most of its two minutes so)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with node(url, tmp_path) as n:
        claims = 0
        claim = n.queue._claim  # type: ignore[attr-defined]

        async def counted(lane: Lane) -> Any:
            nonlocal claims
            claims += 1
            return await claim(lane)

        n.queue._claim = counted  # type: ignore[attr-defined]

        async def slow(ctx: JobContext) -> None:
            await asyncio.sleep(1.0)

        await n.queue.stage([Job("t", {"n": i}, lock="conversation:a") for i in range(2)])
        n.start([n.task("t", slow)])
        await until(lambda: len(n.runs) == 2)
        assert claims < 40, f"{claims} claims while one job waited a second for its lock"
