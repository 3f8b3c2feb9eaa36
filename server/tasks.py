"""Every task a node that takes jobs runs: each feature declares its own (with its lane and attempts), and this
composition piece only gathers them for the runner and the queue."""

from __future__ import annotations

from server.features import webhooks
from server.features.meetings import recordings as meeting_recordings
from server.features.reports import jobs as reports
from server.features.summaries import background as summaries
from server.jobs import merge, recorded
from server.jobs.queue import Lane
from server.jobs.runner import EVENTS_LANE, Task, task_lanes
from server.settings import Settings

_FEATURES = (recorded, merge, meeting_recordings, summaries, webhooks, reports)


def all_tasks(settings: Settings) -> list[Task]:
    return [task for feature in _FEATURES for task in feature.job_tasks(settings.job_max_attempts)]


_LANES = {t.name: t.lane for feature in _FEATURES for t in feature.job_tasks(1)}
"""Each task's lane, read once: the queue asks for it on every job it stages (attempts do not change a lane)."""


def lane_of(task: str) -> str:
    """The lane (the queue, on PostgreSQL) a task's jobs wait in."""
    return _LANES.get(task, EVENTS_LANE)


def lanes(settings: Settings) -> list[Lane]:
    return task_lanes(all_tasks(settings), audio_workers=settings.rest_workers, event_workers=settings.event_workers)
