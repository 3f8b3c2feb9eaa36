"""What the pipeline takes from the node that runs it, declared here as ports.

The pipeline never imports the composition root (:mod:`server.services`): a stream, a file job or a test hands
it any object with these parts. ``Services`` has them all; a test builds only what the code under test reads.
Each port is the least its consumers read, and grows by inheritance as a consumer needs more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from server.pipeline.lifecycle import Completing

if TYPE_CHECKING:
    from asr.transcriber import Transcriber
    from asr.vad import SileroModel
    from server.pipeline.admission import Admission
    from server.pipeline.convert import Correction
    from server.pipeline.ingest import IngestPool
    from server.pipeline.load import LoadMonitor
    from server.pipeline.ownership import Leases
    from server.pipeline.speaker_worker import SpeakerWorker
    from server.role import Role
    from server.settings import Settings
    from server.storage.audio import AudioStore


class StreamParts(Completing, Protocol):
    """What transcribing a stream of audio takes, live or from a file: the model and VAD, the ingest threads,
    the speaker worker, the correction pass over its finals, the audio store its recording goes to, and the rows
    and subscribers its transcript is written to and told through."""

    settings: Settings
    audio: AudioStore
    ingest: IngestPool | None
    speaker_worker: SpeakerWorker

    @property
    def model(self) -> tuple[Transcriber, SileroModel]: ...

    def correction(self, key_terms: Sequence[str], names: Sequence[str] = ()) -> Correction:
        """The pass a stream's finals go through: its key terms, then PII redaction that never takes a key term
        and always takes ``names`` (its participants) for names."""
        ...

    @property
    def keeps_originals(self) -> bool:
        """Whether a final the pass changed is also kept as read (``VOXLANE_KEEP_UNREDACTED``)."""
        ...


class LiveParts(StreamParts, Protocol):
    """What a live stream adds: what the node does, who may stream (admission and its load monitor), and which
    node holds each transcript (leases)."""

    role: Role
    admission: Admission | None
    load: LoadMonitor | None
    leases: Leases
