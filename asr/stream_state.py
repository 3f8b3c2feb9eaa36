"""What the parts of one stream's session share: its segments and the state they are read and written under.

A :class:`~asr.session.StreamSession` is three parts over one :class:`StreamState`: the book
(:mod:`asr.segment_book`: the rules that open, close and finalise segments), the planner
(:mod:`asr.window_planner`: which window to read next) and the reader (:mod:`asr.result_reader`: how a reading's
words enter the segments). Each used to be a base class of the next and read fields that only the last one's
constructor set; here the state is one object, built whole in one place, that each part is handed. Everything
in it but the asyncio events is read and written under ``lock``: feeding runs on an ingest thread, builds on an
inference thread, reading on the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from asr.audio_buffer import AudioBuffer
from asr.inference import InferenceLoop
from asr.policy import Hypotheses, TimedWord
from asr.stream_config import StreamConfig
from asr.vad import SpeechTracker, VadStream


@dataclass
class Segment:
    id: str
    start: float  # stream time
    window_start: float
    end: float | None = None  # set when the segment closes
    hyp: Hypotheses = field(default_factory=Hypotheses)
    decoded_to: float = 0.0  # end of the audio of the latest decode
    endpoint_for: float | None = None  # speech_end that a pause-commit already covered
    speech_end: float | None = None  # where the VAD heard the last speech, once the segment closed
    pending_pause: float | None = None  # speech end of a pause not yet covered by a commit decode
    # speech ends followed by a pause of pause_commit_s, with the longest silence heard after each so far
    pauses: dict[float, float] = field(default_factory=dict)
    emitted: tuple[str, int] | None = None  # (text, n_final) of the last partial sent
    read: tuple[float, float, str] | None = None  # (window start, end, prompt) of the latest decode applied
    context_lent: bool = False  # its window was given the last segment's closing words (or had none to take)
    tail_read: bool = False  # its final read the speech its first final reading stopped short of
    final_told: int = 0  # words already sent as final (their commit latency was measured)

    @property
    def words(self) -> list[TimedWord]:
        return self.hyp.committed + self.hyp.tentative

    def pauses_after(self, t: float) -> dict[float, float]:
        """The pauses heard after ``t``: what the segment opening there inherits."""
        return {k: v for k, v in self.pauses.items() if k > t}

    def pause_after(self, speech_end: float | None, default: float) -> float:
        """The longest silence heard so far after the speech that ended at ``speech_end`` (``default``: none)."""
        return self.pauses.get(speech_end, default) if speech_end is not None else default


@dataclass(eq=False)
class StreamState:
    """One stream's state, shared by its session's book, planner and reader."""

    config: StreamConfig
    engine: InferenceLoop
    vad: VadStream
    new_id: Callable[[], str]
    """A new segment's id (a recorded file's job derives them from its chunk, so a rerun replaces its own)."""
    key: str
    offset: float = 0.0
    """Transcript time of this stream's t=0 (a participant's file holds only its own audio: set later)."""
    speaker: str | None = None
    participant_id: str | int | None = None
    tracker: SpeechTracker = field(init=False)
    buffer: AudioBuffer = field(default_factory=AudioBuffer)
    lock: threading.Lock = field(default_factory=threading.Lock)
    open: Segment | None = None
    closing: deque[Segment] = field(default_factory=deque)
    """Segments closed and waiting for their final, oldest first."""
    last_closed_end: float = 0.0
    history: str = ""
    """Recent final text: the prompt of the next segment."""
    last_words: list[TimedWord] = field(default_factory=list)
    """The words of the latest final, stream time: the context a segment opening soon is lent."""
    paused: bool = False
    finishing: bool = False
    decoded_to: float = 0.0
    last_cut: tuple[Segment, float] | None = None
    """The segment and end of the latest window cut."""
    cut_time: float = 0.0
    """The latest client cut: no later window reads audio before it."""
    arrivals: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=4096))
    """(stream time, loop clock) as audio arrives: how long after its audio came a word became final."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by every frame fed and every change that may make a decode due."""
    progressed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by every segment event: producers faster than real time wait on it."""

    def __post_init__(self) -> None:
        self.tracker = SpeechTracker(self.config.vad)
        self.history = self.config.initial_prompt.strip()
