"""Where the inference loop's time goes: lane-seconds by kind of decode, and the encoder's share as the backend
reports it (``voxlane bench --capacity`` reads both from /metrics)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from asr.backends.base import DecodeRequest, DecodeResult
from asr.inference import InferenceLoop, Priority


class TimedBackend:
    """Each request takes 20 ms, of which its encoder 15 ms."""

    name = "timed"
    max_batch = 1
    lanes = 1

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        time.sleep(0.02 * len(requests))
        return [DecodeResult(compute_seconds=0.02, encode_seconds=0.015) for _ in requests]

    def warm(self) -> None: ...

    def close(self) -> None: ...


def test_the_loop_counts_its_time_by_kind_of_decode_and_the_encoders_share() -> None:
    loop = InferenceLoop(TimedBackend())  # type: ignore[arg-type]
    loop.start()
    audio = np.zeros(16000, dtype=np.float32)

    async def decode() -> None:
        for i, kind in enumerate([Priority.PARTIAL] * 3 + [Priority.ENDPOINT, Priority.FINAL]):
            await loop.schedule(f"k{i}", kind, lambda: (DecodeRequest(audio), None))

    try:
        asyncio.run(decode())
    finally:
        loop.stop()
    by_kind = loop.stats.seconds_by_kind
    assert set(by_kind) == {"partial", "endpoint", "final"}
    assert by_kind["partial"] > 2 * by_kind["final"] > 0
    total = sum(by_kind.values())
    assert 0.7 < loop.stats.encode_seconds / total < 0.8  # 15 of every 20 ms
