"""A client's cuts of its stream: where an OpenAI Realtime ``input_audio_buffer.commit`` ends an item.

A commit takes exactly the audio appended before it, so the cut is a stream time, not the end of what the VAD or
a decode has read; the segment rules (:mod:`asr.segment_book`) do the closing, this holds what a cut adds to them:
the speech events it ends and starts, and the context a segment after it must not be lent.
"""

from __future__ import annotations

from asr.result_reader import ResultReader
from asr.segment_book import Segment
from asr.speech_events import SpeechTeller, Told


class ClientCuts(ResultReader):
    """The cuts of a :class:`~asr.session.StreamSession` (its base)."""

    _cut_time = 0.0  # the latest cut: no later window reads audio before it
    _speech: SpeechTeller

    def _tell_speech(self, told: list[Told]) -> None:
        raise NotImplementedError  # the session's

    def cut(self, t: float) -> None:
        """End the open segment at stream time ``t`` without stopping (a client's commit: OpenAI's
        ``input_audio_buffer.commit`` takes exactly the audio appended before it). Its final reads its window
        to ``t`` and keeps the words spoken before it; speech going on at ``t`` opens the next segment there,
        and no later segment reaches back before ``t`` for its lead-in (a pause closes at the speech's end,
        and the segment after it started a lead-in earlier: one word was read into both). The speech being
        told is told stopped (at ``t`` if it goes on, and started there again once the audio after the cut
        is heard as speech). Call it in order with the audio, after every sample before ``t``."""
        with self._lock:
            seg = self._open
            speaking = self._tracker.in_speech
            if seg is not None and seg.start < t:
                if speaking:
                    self._cut_at(seg, t)
                else:
                    self._close_open(t)  # at the speech's end and a pad, as a pause closes it
            self._last_closed_end = max(self._last_closed_end, t)
            self._cut_time = max(self._cut_time, t)
            told = self._speech.cut(self._tracker, t)
        self._tell_speech(told)
        self._on_loop(self._poke)

    def _lend_context(self, seg: Segment) -> None:
        """(under the lock) As the planner lends, but never words from before a cut: the item after a commit
        holds no audio before it (lent, "ask" after the cut was stamped 0.35 s before it)."""
        if self._last_words and self._last_words[0].start < self._cut_time:
            seg.context_lent = True  # decided: nothing to take
            return
        super()._lend_context(seg)
