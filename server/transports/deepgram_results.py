"""Voxlane's transcription messages as Deepgram's ``Results`` (and ``SpeechStarted``/``UtteranceEnd``), for one
live connection (server.transports.deepgram).

A partial's leading words flagged final never change: each new run of them is one ``is_final`` Results, the
rest of the partial an interim; a segment's final sends only the words not sent yet, with ``speech_final``. So
the ``is_final`` Results of a stream, concatenated, are its transcript, each word in one of them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from protocol.deepgram import (
    DgWord,
    ListenParams,
    Results,
    ResultsChannel,
    ResultsMetadata,
    SpeechStarted,
    UtteranceEnd,
    alternative,
    dg_word,
)


@dataclass
class _Segment:
    channel: int
    sent: int = 0  # words already sent in is_final Results


class ResultMapper:
    """The state the mapping needs: per open segment, the words sent; the speakers' indexes; finals counted."""

    def __init__(self, params: ListenParams, meta: ResultsMetadata) -> None:
        self.params = params
        self.meta = meta
        self.channels = params.channels if params.multichannel else 1
        self.segments: dict[str, _Segment] = {}
        self.speakers: dict[str, int] = {}
        self.finals = 0  # segment finals mapped since the current publisher started
        self.stopped: set[int] = set()  # channels whose speech stopped and whose UtteranceEnd is not sent yet
        self.last_word_end: dict[int, float] = {}  # per channel, the end of the last final word not yet ended

    def channel(self, participant_id: Any) -> int | None:
        """The channel index of a message: a split stream's participants are ``channel-1`` ...; a mixed
        stream's messages have no participant. None: not this connection's."""
        if participant_id is None:
            return None if self.params.multichannel else 0
        if self.params.multichannel and isinstance(participant_id, str) and participant_id.startswith("channel-"):
            index = participant_id.removeprefix("channel-")
            return int(index) - 1 if index.isdigit() and 0 < int(index) <= self.channels else None
        return None

    def speaker(self, label: str | None) -> int | None:
        """Deepgram numbers speakers from 0 in the order they are first heard."""
        if not self.params.diarize or not label:
            return None
        return self.speakers.setdefault(label, len(self.speakers))

    def transcription(self, data: dict[str, Any], channel: int) -> list[BaseModel]:
        out: list[BaseModel] = []
        seg_id = data["segment_id"]
        seg = self.segments.get(seg_id)
        if seg is None:
            seg = self.segments[seg_id] = _Segment(channel)
        speaker = self.speaker(data.get("speaker"))
        words = [dg_word(w, speaker) for w in data.get("words") or []]
        if data["is_final"]:
            del self.segments[seg_id]
            self.finals += 1
            rest = words[seg.sent:]
            start = rest[0].start if rest else float(data["end"])
            out.append(self.results(rest, channel, start, float(data["end"]), final=True, speech_final=True))
            if words:
                self.last_word_end[channel] = words[-1].end
            return out + self._utterance_end(channel)
        settled = len(list(itertools.takewhile(lambda w: w.get("final"), data.get("words") or [])))
        if settled > seg.sent:
            new = words[seg.sent:settled]
            out.append(self.results(new, channel, new[0].start, new[-1].end, final=True, speech_final=False))
            seg.sent = settled
        pending = words[seg.sent:]
        if self.params.interim_results and pending:
            out.append(self.results(pending, channel, pending[0].start, pending[-1].end, final=False,
                                    speech_final=False))
        return out

    def speech(self, data: dict[str, Any], channel: int) -> list[BaseModel]:
        """The VAD heard speech start (``SpeechStarted``, with ``vad_events``) or stop: an ``UtteranceEnd`` follows
        (with ``utterance_end_ms``) once the words it ended are all out, so a client never sees the end of an
        utterance before its last words."""
        if data.get("event") == "started":
            if not self.params.vad_events:
                return []
            return [SpeechStarted(channel=[channel, self.channels], timestamp=round(float(data["time"]), 3))]
        self.stopped.add(channel)
        return self._utterance_end(channel)

    def _utterance_end(self, channel: int) -> list[BaseModel]:
        if self.params.utterance_end_ms is None or channel not in self.stopped or channel not in self.last_word_end:
            return []
        if any(seg.channel == channel for seg in self.segments.values()):
            return []  # the stopped speech's words are still being read
        self.stopped.discard(channel)
        return [UtteranceEnd(channel=[channel, self.channels], last_word_end=self.last_word_end.pop(channel))]

    def results(self, words: list[DgWord], channel: int, start: float, end: float, *, final: bool,
                speech_final: bool, from_finalize: bool = False) -> Results:
        return Results(channel_index=[channel, self.channels], start=round(start, 3),
                       duration=round(max(0.0, end - start), 3), is_final=final, speech_final=speech_final,
                       from_finalize=from_finalize,
                       channel=ResultsChannel(alternatives=[alternative(words, self.params.formatted)]),
                       metadata=self.meta)
