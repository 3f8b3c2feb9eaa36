"""What one decoded batch cost: the inference loop reports it to whoever listens (the capacity estimate, the
live pace, /metrics), and none of them needs the loop to read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchReport:
    """What one decoded batch cost, handed to each of ``InferenceLoop.observers`` (metrics, capacity): they
    learn of every batch without the loop knowing who listens."""

    size: int  # requests decoded together
    seconds: float  # wall time of the backend call
    live: bool  # any live request (not only uploads at BULK priority)
    urgent: bool  # a pause commit or a segment's final among them
    hurried: int  # requests decoded the cheaper way (see InferenceLoop._take_batch)
    waited: float  # longest a request of the batch waited between being ready and being decoded (loop clock)
    lanes_busy: int  # batches running at once, this one included


Observer = Callable[[BatchReport], None]
