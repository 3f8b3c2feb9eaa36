"""What the routes take from their node (``app.state.services``), declared here as a port.

The routes never import the composition root: each route hands the pipeline, the jobs, the features and the
transports the parts they declare, and this port is the union of those plus what the routes read themselves (the
job runner's progress, the engine a request is transcribed with).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from server.features.meetings.lifecycle import MeetingParts
from server.features.meetings.recordings import RecordingParts
from server.features.summaries.background import SummaryParts
from server.features.webhooks import WebhookParts
from server.jobs.recorded import RecordedParts
from server.pipeline.parts import LiveParts
from server.transports.parts import SessionParts

if TYPE_CHECKING:
    from asr.inference import InferenceLoop
    from asr.transcriber import Transcriber
    from asr.vad import SileroModel
    from server.jobs.runner import JobRunner


class NodeParts(LiveParts, SessionParts, RecordedParts, SummaryParts, MeetingParts, RecordingParts, WebhookParts,
                Protocol):
    """Every part a route hands on, and the few it reads: the runner (a job's progress, cancelling a deleted
    transcript's jobs) and the engine and VAD (a request transcribed while its caller waits)."""

    runner: JobRunner | None
    engine: Transcriber | None
    vad_model: SileroModel | None

    @property
    def loop(self) -> InferenceLoop | None: ...
