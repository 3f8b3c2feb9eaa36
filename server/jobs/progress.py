"""How far a recorded file's transcription got, for the job routes.

The node running a job knows its progress to the block (:class:`Progress`, kept by its job runner); every
other node reads the chunk row, which the job updates every ``PROGRESS_WRITE_SECONDS``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BLOCK_SECONDS = 10.0
"""A recorded file is decoded and fed in blocks of this much audio: its progress counts them."""
PROGRESS_WRITE_SECONDS = 2.0


@dataclass
class Progress:
    """What a job is doing right now."""

    status: str = "processing"
    message: str = "queued"
    done: float = 0.0
    total: float = 0.0
    updated_at: float = field(default_factory=time.time)
    written_at: float = 0.0

    @classmethod
    def of_row(cls, item: dict[str, Any], updated_at: float) -> Progress:
        """What another node can tell from the chunk row alone."""
        total = float(item.get("duration") or 0.0)
        done = total * float(item.get("progress") or 0.0) / 100.0
        return cls(message="transcribing" if item["status"] == "processing" else "queued", done=done, total=total,
                   updated_at=updated_at)

    @property
    def percent(self) -> float:
        if self.status == "completed":
            return 100.0
        return round(min(99.0, 100.0 * self.done / self.total), 1) if self.total > 0 else 0.0

    def chunk_info(self) -> dict[str, Any]:
        """The file is fed in blocks of ``BLOCK_SECONDS``; which one is being transcribed."""
        total = max(1, int(np.ceil(self.total / BLOCK_SECONDS))) if self.total > 0 else 0
        if self.status == "completed":
            return {"current_chunk": total, "total_chunks": total, "chunk_progress": 100.0}
        current = min(total, int(self.done // BLOCK_SECONDS) + 1) if total else 0
        part = (self.done % BLOCK_SECONDS) / BLOCK_SECONDS * 100 if total else 0.0
        return {"current_chunk": current, "total_chunks": total, "chunk_progress": round(part, 1)}
