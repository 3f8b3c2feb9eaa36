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
    """``started`` at a speech run's onset; ``stopped`` at the end of its last speech chunk once the silence after
    it reached ``min_silence_s`` (a shorter pause keeps the speech going, as it keeps a segment open), or when the
    stream pauses, stops or is cut. It gives ``(kind, stream time)``; :func:`speech_event` makes the event the
    session tells (in transcript time, which a session learns only when its stream is placed)."""

    def __init__(self, min_silence_s: float) -> None:
        self.min_silence_s = min_silence_s
        self.speaking = False  # ``started`` was told and its ``stopped`` not yet
        self.cut_in_speech: float | None = None  # a cut in speech: ``started`` there if the speech goes on

    def heard(self, tracker: SpeechTracker, events: list[tuple[str, float]]) -> list[Told]:
        """What the audio the tracker just took (its ``update`` gave ``events``) tells."""
        told: list[Told] = []
        for kind, t in events:
            if kind == "speech_start" and not self.speaking:
                self.speaking = True
                told.append(("started", t))
        at, self.cut_in_speech = self.cut_in_speech, None
        if at is not None and tracker.in_speech and not self.speaking:
            self.speaking = True
            told.append(("started", at))
        if self.speaking and tracker.silence_run >= self.min_silence_s - 1e-9:
            told.extend(self.stopped(tracker))
        return told

    def stopped(self, tracker: SpeechTracker) -> list[Told]:
        """``stopped`` for the speech being told (the stream pauses or ends), at the end of its last speech."""
        if not self.speaking:
            return []
        self.speaking = False
        return [("stopped", tracker.speech_end if tracker.speech_end is not None else tracker.t)]

    def cut(self, tracker: SpeechTracker, t: float) -> list[Told]:
        """A client's cut at ``t``: the speech before it is told stopped (at ``t`` when it goes on through the cut,
        and started there again once the audio after the cut is heard as speech)."""
        told = self.stopped(tracker)
        if told and tracker.in_speech:
            self.cut_in_speech = t
            return [("stopped", t)]
        return told
