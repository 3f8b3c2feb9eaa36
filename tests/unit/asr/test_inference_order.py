"""The order in which the inference loop serves waiting sessions, on a simulated clock (the backend is never
called: the loop's choice is what is tested)."""

from __future__ import annotations

import asyncio

from asr.backends.synthetic import SyntheticBackend
from asr.inference import InferenceLoop, Priority


def test_an_aged_refresh_goes_after_pause_commits_and_before_other_refreshes() -> None:
    """Under load most refreshes wait past ``partial_max_wait``: an aged one still goes before fresher refreshes
    (a speaker who never pauses is not starved), but a pause's reading is not put behind it (at sixteen streams
    on 2 cores that took commit p95 from 1.4 to 2.9-3.6 s)."""
    now = [0.0]
    backend = SyntheticBackend()
    backend.max_batch = 1
    loop = InferenceLoop(backend, partial_max_wait=1.5, clock=lambda: now[0])  # type: ignore[arg-type]

    async def take_in_turn() -> list[str]:
        loop.schedule("aged", Priority.PARTIAL, lambda: None)
        now[0] = 1.9
        loop.schedule("fresh", Priority.PARTIAL, lambda: None)
        now[0] = 2.0
        loop.schedule("pause", Priority.ENDPOINT, lambda: None)
        # the aged refresh's stream was served longest ago of the two urgent-ranked ones, and "fresh" longest of all
        loop._last_served.update({"fresh": 0.0, "aged": 0.5, "pause": 1.0})
        order = []
        for _ in range(3):
            batch, _ = loop._take_batch()
            order += [e.key for e in batch]
            loop._served(batch)
        return order

    assert asyncio.run(take_in_turn()) == ["pause", "aged", "fresh"]
