"""Every task a node that takes jobs runs, and the lanes they share.

Transcriptions (``transcribe``) take seconds to minutes each and get ``VOXLANE_REST_WORKERS`` runs at once; the
short tasks (merges, summaries, webhook deliveries) get a lane of their own (``VOXLANE_EVENT_WORKERS``), so a
webhook is never stuck behind an hour of uploads. Project reports fan out into up to a few hundred summaries at
once: they get a third lane (a quarter of the event workers, at least one), so a report never holds up a
webhook or a conversation's own summary either.
"""

from __future__ import annotations

from server.features import reports, summaries
from server.features.meetings import recordings as meeting_recordings
from server.features.webhooks import DELIVER, deliver
from server.jobs import merge, recorded
from server.jobs.queue import Lane
from server.jobs.runner import Task
from server.settings import Settings

AUDIO_LANE = "audio"
EVENTS_LANE = "events"
REPORTS_LANE = "reports"


def all_tasks(settings: Settings) -> list[Task]:
    attempts = settings.job_max_attempts
    return [
        Task(recorded.TASK, recorded.transcribe, max_attempts=attempts, give_up=recorded.give_up),
        Task(merge.TASK, merge.settle, max_attempts=attempts + 2, give_up=merge.give_up),
        Task(meeting_recordings.TASK, meeting_recordings.ingest_recording,
             max_attempts=attempts + meeting_recordings.EXTRA_ATTEMPTS, give_up=meeting_recordings.give_up),
        Task(summaries.SUMMARIZE, summaries.summarize, max_attempts=attempts),
        Task(summaries.SUMMARY_REQUEST, summaries.run_summary_request, max_attempts=attempts,
             give_up=summaries.give_up_summary_request),
        # a delivery counts its own attempts (VOXLANE_WEBHOOK_MAX_ATTEMPTS); the job's cover nodes that die mid-send
        Task(DELIVER, deliver, max_attempts=attempts + 2),
        Task(reports.REPORT_SUMMARIZE, reports.summarize_conversation, max_attempts=attempts,
             give_up=reports.give_up_conversation),
        Task(reports.REPORT_GENERATE, reports.generate_report, max_attempts=attempts, give_up=reports.give_up_report),
    ]


def lane_of(task: str) -> str:
    """The lane (the queue, on PostgreSQL) a task's jobs wait in."""
    if task == recorded.TASK:
        return AUDIO_LANE
    return REPORTS_LANE if task in reports.TASKS else EVENTS_LANE


def lanes(settings: Settings) -> list[Lane]:
    names = [t.name for t in all_tasks(settings)]
    return [Lane(AUDIO_LANE, frozenset(n for n in names if lane_of(n) == AUDIO_LANE), settings.rest_workers),
            Lane(EVENTS_LANE, frozenset(n for n in names if lane_of(n) == EVENTS_LANE), settings.event_workers),
            Lane(REPORTS_LANE, frozenset(n for n in names if lane_of(n) == REPORTS_LANE),
                 max(1, settings.event_workers // 4))]
