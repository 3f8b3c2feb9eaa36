"""Housekeeping on a node that takes jobs: what no single request or job is there to clean up.

Every ``INTERVAL`` seconds each chore runs once (the features name theirs: summary requests past their day are
forgotten, a pending webhook delivery long past due without a job gets one). Every chore must be safe on several
nodes at once; one that fails is logged and tried again next time, and never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger("voxlane.jobs")
INTERVAL = 60.0

Chore = Callable[[], Awaitable[object]]


async def keep_house(chores: Sequence[Chore], interval: float = INTERVAL) -> None:
    while True:
        for chore in chores:
            try:
                await chore()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping failed; trying again in %.0f s", interval)
        await asyncio.sleep(interval)
