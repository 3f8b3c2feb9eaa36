"""The process's speaker-embedding thread: one model, and the windows of every diarized stream embedded in batches."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from media.audio import faint_noise

if TYPE_CHECKING:
    from asr.diarization.encoder import SpeakerEncoder


MAX_BATCH_WINDOWS = 16
"""Most windows embedded in one batch. A window costs no less in a bigger batch than in one of 16 (above), and
the encoder's working memory grows with the batch and stays allocated: sixteen diarized streams on 2 cores let
batches grow while one ran, and the server's RSS grew by 2 MB a stream more than with diarization off."""


def take_batch(asked: list[tuple[list[np.ndarray], Any]], limit: int) -> tuple[list, list]:
    """The first requests whose windows fit in ``limit`` (always one, however many it has), and the rest: a
    stream's windows stay in one batch, and requests are embedded in the order they came."""
    total = 0
    for i, (windows, _) in enumerate(asked):
        total += len(windows)
        if i and total > limit:
            return asked[:i], asked[i:]
    return asked, []


class SpeakerWorker:
    """The process's one speaker-embedding thread and model (loaded on first use).

    Windows are embedded for all streams together: what the streams ask for while a batch runs goes in the next
    one. The encoder's LSTM costs 7.3 ms for one window alone and 3.2 ms a window in a batch of 16 on one core
    of a 2-core Xeon, and sixteen diarized streams asked for two or three windows each every second."""

    def __init__(self, threads: int = 1, device: str = "cpu") -> None:
        self._threads = threads
        self._device = device
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speakers")
        self._encoder: SpeakerEncoder | None = None
        self._lock = threading.Lock()
        self._asked: list[tuple[list[np.ndarray], asyncio.Future[np.ndarray]]] = []  # for the next batch
        self._batching: asyncio.Task | None = None
        self.window_stride = 1  # shed under overload (server.pipeline.load): every n-th window embedded live

    def _model(self):
        with self._lock:
            if self._encoder is None:
                from asr.diarization.encoder import SpeakerEncoder

                self._encoder = SpeakerEncoder(threads=self._threads, device=self._device)
            return self._encoder

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        return self._model().embed_windows(windows)

    async def embed_batched(self, windows: list[np.ndarray]) -> np.ndarray:
        """``windows`` embedded on the worker thread, in one batch with what other streams ask meanwhile."""
        if not windows:
            return np.zeros((0, 256), dtype=np.float32)
        done: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._asked.append((windows, done))
        if self._batching is None or self._batching.done():
            self._batching = asyncio.get_running_loop().create_task(self._embed_asked())
        return await done

    async def _embed_asked(self) -> None:
        while self._asked:
            batch, self._asked = take_batch(self._asked, MAX_BATCH_WINDOWS)
            try:
                emb = await self.run(self.embed, [w for windows, _ in batch for w in windows])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            except BaseException:  # the worker is shutting down: nobody waits for a batch that never comes
                for _, done in batch + self._asked:
                    done.cancel()
                raise
            at = 0
            for windows, done in batch:
                if not done.done():  # its caller may have been cancelled
                    done.set_result(emb[at:at + len(windows)])
                at += len(windows)

    def warm(self) -> None:
        """Load the encoder and embed one window of faint noise: a first embedding on a GPU loads its kernels, and
        a live final waits for its stream's embeddings."""
        self._model().embed_windows([faint_noise()])

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
