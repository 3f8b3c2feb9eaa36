"""When a stream's speech starts and stops, as voice agents want to hear it (barge-in, end of turn).

The events come from the VAD's hysteresis (:class:`asr.vad.SpeechTracker`) as the audio arrives, never from
decodes: a partial or a final can come seconds after the speech it reads. Every session kind (Whisper's
:class:`asr.session.StreamSession`, Riva's :class:`asr.recognizer_session.RecognizerSession`) tells them through
one :class:`SpeechTeller`, so they mean the same on every backend.
"""

from __future__ import annotations

from typing import Literal

from asr.events import SpeechEvent
from asr.vad import SpeechTracker

Told = tuple[Literal["started", "stopped"], float]
"""A speech event as the teller finds it: its kind and stream time."""


def speech_event(told: Told, offset: float, participant_id: str | int | None) -> SpeechEvent:
    """The event a session tells: transcript time (its ``offset`` added), rounded as sent."""
    kind, t = told
    return SpeechEvent(kind, round(offset + t, 3), participant_id)


class SpeechTeller:
    """``started`` at a speech run's onset, once ``onset_s`` of it was heard; ``stopped`` at the end of its last
    clearly voiced chunk once the silence after it reached ``min_silence_s`` (a shorter pause keeps the speech
    going, as it keeps a segment open), or when the stream pauses, stops or is cut. It gives ``(kind, stream
    time)``; :func:`speech_event` makes the event the session tells (in transcript time, which a session learns
    only when its stream is placed).

    Both ends are told sooner than the segments move: a segment opens once ``min_speech_s`` (0.2 s) confirm a
    run and closes once the silence after the VAD's quieter tail reaches the window, which is right for cutting
    audio but late for barge-in (speech_started 0.30 s after the onset at p50) and for end of turn (the tail
    held speech_stopped 0.1-0.3 s past the window). A blip that starts speech here and never becomes a segment
    is told stopped after the silence window like any speech."""

    def __init__(self, min_silence_s: float, onset_s: float = 0.1) -> None:
        self.min_silence_s = min_silence_s
        self.onset_s = onset_s
        self.speaking = False  # ``started`` was told and its ``stopped`` not yet
        self.cut_in_speech: float | None = None  # a cut in speech: ``started`` there if the speech goes on

    def heard(self, tracker: SpeechTracker, events: list[tuple[str, float]]) -> list[Told]:
        """What the audio the tracker just took (its ``update`` gave ``events``) tells."""
        told: list[Told] = []
        at, self.cut_in_speech = self.cut_in_speech, None
        if not self.speaking:
            onset = next((t for kind, t in events if kind == "speech_start"), None)
            pending = tracker.pending_onset
            if onset is None and pending is not None and tracker.t - pending >= self.onset_s - 1e-9:
                onset = pending
            if onset is None and at is not None and tracker.in_speech:
                onset = at
            if onset is not None:
                self.speaking = True
                told.append(("started", onset))
        quiet_since = tracker.voiced_end if tracker.voiced_end is not None else tracker.t
        if (self.speaking and not tracker.in_speech and tracker.pending_onset is None
                and tracker.t - quiet_since >= self.min_silence_s - 1e-9):
            told.extend(self.stopped(tracker))
        return told

    def stopped(self, tracker: SpeechTracker) -> list[Told]:
        """``stopped`` for the speech being told (the stream pauses or ends), at the end of its last voiced chunk."""
        if not self.speaking:
            return []
        self.speaking = False
        end = tracker.voiced_end if tracker.voiced_end is not None else tracker.t
        return [("stopped", end)]

    def cut(self, tracker: SpeechTracker, t: float) -> list[Told]:
        """A client's cut at ``t``: the speech before it is told stopped (at ``t`` when it goes on through the cut,
        and started there again once the audio after the cut is heard as speech)."""
        told = self.stopped(tracker)
        if told and tracker.in_speech:
            self.cut_in_speech = t
            return [("stopped", t)]
        return told
