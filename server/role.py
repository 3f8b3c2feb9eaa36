"""What a node does: serve the API, take live audio, run jobs.

The composition roots decide it from the settings (``voxlane serve``, ``voxlane worker``); the live pipeline reads
it to refuse a stream on a node that takes none. It lives apart from the roots so the pipeline can name it without
importing them.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.settings import Settings


@dataclass(frozen=True)
class Role:
    """What a node does: serve the API, take live audio, run jobs."""

    api: bool = True
    live: bool = True
    jobs: bool = True

    @property
    def transcribes(self) -> bool:
        return self.live or self.jobs

    @classmethod
    def serve(cls, settings: Settings) -> Role:
        return cls(api=True, live=settings.live == "on", jobs=settings.jobs == "on")

    @classmethod
    def worker(cls) -> Role:
        return cls(api=False, live=False, jobs=True)
