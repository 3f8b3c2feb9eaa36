"""The speaker worker embeds the windows several streams ask for meanwhile in one batch, and each gets its own."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from server.pipeline.speaker_worker import SpeakerWorker


async def test_windows_asked_while_a_batch_runs_go_in_the_next_one_and_come_back_to_their_streams() -> None:
    worker = SpeakerWorker()
    calls: list[int] = []
    release = threading.Event()

    def embed(windows: list[np.ndarray]) -> np.ndarray:  # each window's embedding is its first sample
        calls.append(len(windows))
        if len(calls) == 1:
            release.wait(5)
        return np.array([[w[0]] * 256 for w in windows], dtype=np.float32)

    worker.embed = embed  # type: ignore[method-assign]
    try:
        def ask(*firsts: float) -> asyncio.Task:
            return asyncio.create_task(worker.embed_batched([np.full(10, f, np.float32) for f in firsts]))

        first = ask(1.0)
        await asyncio.sleep(0.05)  # the first batch runs now
        second, third = ask(2.0, 3.0), ask(4.0)
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, second, third)
        assert calls == [1, 3]
        assert [r[:, 0].tolist() for r in results] == [[1.0], [2.0, 3.0], [4.0]]
        assert (await worker.embed_batched([])).shape == (0, 256)
    finally:
        release.set()
        worker.close()


async def test_a_batch_holds_at_most_its_limit_of_windows_and_keeps_a_stream_s_windows_together() -> None:
    worker = SpeakerWorker()
    calls: list[list[float]] = []
    release = threading.Event()

    def embed(windows: list[np.ndarray]) -> np.ndarray:
        calls.append([float(w[0]) for w in windows])
        if len(calls) == 1:
            release.wait(5)
        return np.array([[w[0]] * 256 for w in windows], dtype=np.float32)

    worker.embed = embed  # type: ignore[method-assign]
    try:
        def ask(first: float, n: int) -> asyncio.Task:
            return asyncio.create_task(worker.embed_batched([np.full(10, first + i, np.float32) for i in range(n)]))

        blocker = ask(0.0, 1)
        await asyncio.sleep(0.05)  # the first batch runs now: what follows queues
        asked = [ask(100.0 * k, n) for k, n in ((1, 10), (2, 5), (3, 4), (4, 20), (5, 1))]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(blocker, *asked)
        # 10 + 5 fit in 16; 4 more would not; 20 alone is over the limit but is never split
        assert [len(c) for c in calls] == [1, 15, 4, 20, 1]
        assert [r[:, 0].tolist() for r in results[1:]] == [
            [100.0 * k + i for i in range(n)] for k, n in ((1, 10), (2, 5), (3, 4), (4, 20), (5, 1))]
    finally:
        release.set()
        worker.close()
