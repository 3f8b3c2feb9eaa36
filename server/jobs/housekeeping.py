"""Housekeeping on a node that takes jobs: what no single request or job is there to clean up.

Every ``INTERVAL`` seconds: summary requests past their day are forgotten, and a pending webhook delivery long
past due without a job (one staged by an older version) gets one. Every one of these is safe on several nodes at
once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from server.features.summaries.background import forget_old_requests
from server.features.webhooks import requeue_overdue

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("voxlane.jobs")
INTERVAL = 60.0


async def keep_house(services: Services) -> None:
    while True:
        try:
            await forget_old_requests(services)
            if await requeue_overdue(services):
                log.info("queued overdue webhook deliveries again")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("housekeeping failed; trying again in %.0f s", INTERVAL)
        await asyncio.sleep(INTERVAL)
