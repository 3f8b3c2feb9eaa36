"""The ingest threads: each stream's work in the order asked, many streams in one pass, one hand-off to the event
loop per pass, a piece's failure told to its own caller only."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from asr.handoff import call_soon, gathered
from asr.vad import SileroModel, VadStream
from server.pipeline.ingest import IngestPool


class Recorder:
    """A session that records what it is told, with the real VAD's steps."""

    def __init__(self, model: SileroModel, log: list) -> None:
        self.vad = VadStream(model)
        self.log = log
        self.loop = asyncio.get_running_loop()

    def scoring(self, samples: np.ndarray):
        return self.vad.steps(samples)

    def take(self, samples: np.ndarray, probs: np.ndarray | None) -> None:
        self.log.append(("take", len(samples), None if probs is None else len(probs)))
        call_soon(self.loop, self.log.append, ("told", len(samples)))  # reaches the loop with the piece's answer


@pytest.fixture(scope="module")
def model() -> SileroModel:
    return SileroModel()


async def test_a_stream_s_calls_and_audio_keep_their_order(model: SileroModel):
    pool = IngestPool(model)
    try:
        log: list = []
        session, queue = Recorder(model, log), pool.queue()
        piece = np.zeros(1600, dtype=np.float32)
        asked = [queue.feed(lambda: (1600, piece), session), queue.run(log.append, "pause"),
                 queue.feed(lambda: (1600, piece), session), queue.feed(lambda: (1600, piece), session),
                 queue.run(log.append, "cut")]
        await asyncio.gather(*asked)
        takes = [e for e in log if e[0] != "told"]
        assert takes == [("take", 1600, 3), "pause", ("take", 3200, 6), "cut"]
        assert log.count(("told", 1600)) == 1 and log.count(("told", 3200)) == 1
        assert log.index(("told", 1600)) < log.index(("told", 3200)), "what a session tells the loop keeps its order"
    finally:
        pool.close()


async def test_a_failing_piece_is_its_caller_s_alone(model: SileroModel):
    pool = IngestPool(model)
    try:
        log: list = []
        a, b = Recorder(model, log), Recorder(model, log)
        qa, qb = pool.queue(), pool.queue()

        def broken() -> tuple[int, np.ndarray]:
            raise ValueError("not audio")

        bad = qa.feed(broken, a)
        good = qb.feed(lambda: (512, np.zeros(512, dtype=np.float32)), b)
        after = qa.feed(lambda: (512, np.zeros(512, dtype=np.float32)), a)
        with pytest.raises(ValueError, match="not audio"):
            await bad
        assert await good == 512 and await after == 512
        assert log.count(("take", 512, 1)) == 2
    finally:
        pool.close()


async def test_many_streams_take_one_pass_and_one_hand_off(model: SileroModel):
    """Streams asked for while the thread is busy are taken together: their pieces in one pass, answered in one
    callback on the loop."""
    pool = IngestPool(model)
    try:
        release = threading.Event()
        hold = pool.queue()
        busy = hold.run(release.wait)
        await asyncio.sleep(0.05)  # the thread holds the first pass
        log: list = []
        queues = [(pool.queue(), Recorder(model, log)) for _ in range(16)]
        asked = [q.feed(lambda: (1600, np.zeros(1600, dtype=np.float32)), s) for q, s in queues]
        passes = pool.passes
        loop = asyncio.get_running_loop()
        handed = []
        original = loop.call_soon_threadsafe

        def counted(fn, *args, **kwargs):
            # the pool's hand-offs only: the session's event loop also runs other tests' apps, whose executor
            # threads hand their own results back meanwhile
            if getattr(fn, "__module__", None) in ("asr.handoff", "server.pipeline.ingest"):
                handed.append(fn)
            return original(fn, *args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        try:
            release.set()
            await asyncio.gather(busy, *asked)
        finally:
            loop.call_soon_threadsafe = original  # type: ignore[method-assign]
        assert pool.passes - passes == 2, "the held pass, then every stream's piece in one"
        assert len(handed) == 2, "one hand-off to the loop per pass"
        assert log.count(("take", 1600, 3)) == 16
    finally:
        pool.close()


async def test_calls_gathered_on_a_thread_run_in_order_in_one_callback():
    loop = asyncio.get_running_loop()
    seen: list[int] = []

    def on_thread() -> None:
        with gathered():
            for i in range(5):
                call_soon(loop, seen.append, i)
            assert seen == [], "nothing runs before the block ends"

    await asyncio.to_thread(on_thread)
    await asyncio.sleep(0.01)
    assert seen == [0, 1, 2, 3, 4]
