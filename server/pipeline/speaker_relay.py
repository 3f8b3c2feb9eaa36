"""Live diarization of a mixed stream, wired to the hub and the store.

A :class:`LiveSpeakers` rides along one publisher whose audio holds several
voices (no declared participant). It cuts speech windows on the event loop,
embeds and clusters them on the process's speaker worker thread (never on the
event loop, never in the transcriber's thread), tells the session where a new
voice takes over (the session opens a new segment there, so words never move
between segments on the wire), labels each final with its speaker before it is
stored, sends a ``diarization`` message for every speaker turn and for words
of another voice inside a final, and when later evidence relabels the past it
sends corrections and re-stores the affected segments. When the stream ends,
one more clustering over everything heard (the offline pass) settles the labels
the stored transcript keeps, and stored segments that hold several turns are
cut at them: late joiners and REST readers get that stored form.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from asr.diarization import DiarizationConfig, SpeakerDiarizer, Turn, speaker_id, speaker_label
from asr.diarization.spans import parts_by_turn
from asr.policy import join_words
from asr.vad import CHUNK_SECONDS, SileroModel
from protocol import Transcription
from protocol.messages import Diarization, Word
from server.pipeline.configs import diarization_config
from server.pipeline.word_runs import MIN_RUN_S, majority, word_runs
from server.storage import StaleFence

if TYPE_CHECKING:
    from server.pipeline.parts import StreamParts
    from server.pipeline.speaker_worker import SpeakerWorker

log = logging.getLogger("voxlane.speakers")
EMBED_EVERY_S = 1.0  # audio between embedding jobs: a few windows per batch (0.5 s tripled live DER)
ESTABLISHED_S = 4.0  # a voice is a run of its own in a final's words once this much of its speech was heard
# a new voice that has held this much labelled speech is a turn the live session splits at: shorter runs
# are backchannels or a window heard wrong, and a split costs the segment a final decode
TURN_SPLIT_S = 0.8
# Whisper's timestamps step by 20 ms, and the aligner gives some words no extent at all ("I" at 9.024-9.024 s:
# a few a minute on the phone call): a range over such words is given that one step, so it is never empty
TIMESTAMP_STEP_S = 0.02


@dataclass
class _Stored:
    row: Transcription
    speaker: int


class LiveSpeakers:
    def __init__(self, *, worker: SpeakerWorker, vad_model: SileroModel, config: DiarizationConfig,
                 offset: float, publish, save_segment, on_turn: Callable[[float], None] | None = None) -> None:
        self.diarizer = SpeakerDiarizer(vad_model, config)
        self.offset = offset  # transcript time of this stream's t=0
        self._worker = worker
        self._publish = publish  # async (body) -> None: to every subscriber
        self._save_segment = save_segment  # async (Transcription) -> None: re-store a relabelled final
        self.on_turn = on_turn  # (stream time) a new voice took over there: the live session splits its segment
        self._turn_told = 0.0
        self._job: asyncio.Task | None = None
        self._next_job_at = EMBED_EVERY_S
        self._told: set[tuple[float, float, int]] = set()  # every turn subscribers were told (stream time)
        self._sent_until = 0.0
        self._segments: dict[str, _Stored] = {}
        self._revision = 0
        self._lock = asyncio.Lock()  # one update at a time (jobs and the final pass)
        self._deliver: Callable[[Transcription], Awaitable[None]] | None = None
        self._sending = asyncio.Lock()  # a partial told again never overtakes a newer message
        # the open segment's latest partial as it came from the session, and the speaker it was sent with
        self._partial: tuple[Transcription, str | None] | None = None

    # ------------------------------------------------------------ audio in (event loop)

    def heard(self, samples: np.ndarray, probs: np.ndarray) -> None:
        """The session's audio with its VAD probabilities (the session's listener)."""
        self.diarizer.feed(samples, probs)
        self._schedule()

    def _schedule(self, now: bool = False) -> None:
        """Start an embedding job when ``EMBED_EVERY_S`` of new audio has come in (or ``now``) and none is
        running."""
        if (now or self.diarizer.received >= self._next_job_at) and (self._job is None or self._job.done()):
            self._next_job_at = self.diarizer.received + EMBED_EVERY_S
            self._job = asyncio.get_running_loop().create_task(self._update())

    def _hurry(self, msg: Transcription) -> None:
        """A partial whose last word was said past the labelled audio starts the next embedding job now, not at
        the next second of audio: its voice is then known, and the partial told again under it, up to a second
        sooner. Labels come from windows on the audio clock whatever the jobs (``add_embeddings``), so this
        changes when a voice is known, never which; and it embeds no window more than the cadence would."""
        d = self.diarizer
        if msg.words and msg.words[-1].start - self.offset > d.labelled_until \
                and d.received - d.pending_until >= d.config.hop_s:
            self._schedule(now=True)

    def skip(self, seconds: float) -> None:
        self.diarizer.skip(seconds)

    async def _update(self, final: bool = False) -> None:
        async with self._lock:
            try:
                centers, windows = self.diarizer.take_windows(final=final)
                stride = 1 if final else self._worker.window_stride
                if stride > 1:  # shed: fewer live windows embedded (the final pass still takes them all)
                    centers, windows = centers[::stride], windows[::stride]
                emb = await self._worker.embed_batched(windows)
                if windows or final:  # nothing new and no final pass: nothing to add, no thread to wake
                    await self._worker.run(self.diarizer.add_embeddings, centers, emb, final)
                await self._report(final)
            except Exception:  # speaker labels are an extra: never let them stop a transcript
                log.exception("speaker update failed")

    async def _catch_up(self, until: float) -> None:
        """Wait until every window up to ``until`` (stream time) is labelled, or no more can be."""
        while True:
            job = self._job
            if job is not None and not job.done():
                await asyncio.shield(job)
            before = self.diarizer.labelled_until
            if before >= until:
                return
            await self._update()
            if self.diarizer.labelled_until <= before:
                return

    # ------------------------------------------------------------ finals (labelled before they are stored)

    def relay(self, deliver: Callable[[Transcription], Awaitable[None]]) -> Callable[[Transcription], Awaitable[None]]:
        """``deliver`` with speakers: a final labelled, a partial tagged with the voice heard at its last word (and
        told again, with the new voice, when later labels name another: see :meth:`_retell_partial`)."""
        self._deliver = deliver

        async def emit(msg: Transcription) -> None:
            if msg.is_final:
                self._partial = None  # its segment's partials are over (the session sends in order)
                labelled = await self.label(msg)
                async with self._sending:
                    await deliver(labelled)
                return
            tagged = self.partial_speaker(msg)
            async with self._sending:
                self._partial = (msg, tagged.speaker)
                await deliver(tagged)
            self._hurry(msg)

        return emit

    async def _retell_partial(self) -> None:
        """The latest partial once more, when the labels now give its last word another voice than it was sent
        with. A partial is tagged with the voice known when it is sent, and the first partials of a turn come
        before the diarizer has labelled the new voice's audio; waiting for the next partial (a refresh whose
        text changed, or the final) kept a caption under the voice before it for a second or more after the
        labels knew better."""
        held = self._partial
        if held is None or self._deliver is None:
            return
        msg, told = held
        tagged = self.partial_speaker(msg)
        if tagged.speaker is None or tagged.speaker == told:
            return
        async with self._sending:
            if self._partial is not held:
                return  # a newer message went out meanwhile
            self._partial = (msg, tagged.speaker)
            await self._deliver(tagged.model_copy(update={"timestamp": time.time()}))

    async def label(self, msg: Transcription) -> Transcription:
        """The final with its speaker: the voice of most of its speech. It is never cut (its words were shown in
        its partials, and a word shown final stays in its segment); words of another voice in it are told by a
        ``diarization`` message over their time range. Never raises: a final that cannot be labelled goes out
        as it came."""
        try:
            return await self._label(msg)
        except Exception:
            log.exception("labelling final %s failed; sent without a speaker", msg.segment_id)
            return msg

    async def _label(self, msg: Transcription) -> Transcription:
        await self._catch_up(msg.end - self.offset + self.diarizer.config.window_s / 2)
        if not msg.words:
            n = self._speaker_of(msg)
            return self._remember(msg.model_copy(update={"speaker": _name(n)}), n)
        runs = self._word_runs(msg.words)
        n = majority(runs)
        labelled = self._remember(msg.model_copy(update={"speaker": _name(n)}), n)
        for s, ws in runs:
            if s and s != n:
                start, end = _extent(ws[0].start, ws[-1].end)
                await self._publish(Diarization(
                    speaker=speaker_label(s), speaker_id=speaker_id(s), start_time=start, end_time=end,
                    confidence=0.5, correction=True, segment_ids=[msg.segment_id]))
        return labelled

    def _speaker_of(self, msg: Transcription) -> int:
        """A final's speaker as the labels give it now: the voice of most of its words' runs, or of its middle when
        it has no words. The one rule for a final labelled live and a stored one relabelled, so the stored speaker
        is a function of the words and the labels, not of which pass last touched the segment."""
        if msg.words:
            return majority(self._word_runs(msg.words))
        return int(self.diarizer.speaker_at([(msg.start + msg.end) / 2 - self.offset])[0])

    def _word_runs(self, words: list[Word]) -> list[tuple[int, list[Word]]]:
        """Consecutive words by speaker as known now; a voice heard too little yet, or a run too short to be a
        turn, joins its neighbour."""
        mids = [(w.start + w.end) / 2 - self.offset for w in words]
        who = [int(s) for s in self.diarizer.speaker_at(mids)]
        heard = self.diarizer.speaker_seconds()
        # early in a stream one voice can briefly look like two
        return word_runs(words, who, keep=lambda s: heard.get(s, 0.0) >= ESTABLISHED_S)

    def partial_speaker(self, msg: Transcription) -> Transcription:
        """A partial gets the speaker heard at its last word, as known now (no waiting)."""
        if not msg.words:
            return msg
        n = int(self.diarizer.speaker_at([msg.words[-1].start - self.offset])[0])
        return msg.model_copy(update={"speaker": _name(n)}) if n else msg

    def _remember(self, part: Transcription, n: int) -> Transcription:
        if part.text:
            self._segments[part.segment_id] = _Stored(part, n)
        return part

    # ------------------------------------------------------------ turns and corrections out

    def _tell_turns(self) -> None:
        """Tell the live session where a new voice took over once it has held ``TURN_SPLIT_S`` of labelled
        speech: the next speaker's words open a new segment (about two seconds after the turn)."""
        d = self.diarizer
        if self.on_turn is None:
            return
        labelled = d.labelled_until
        recent = d.turns(max(0.0, labelled - 10.0), labelled)
        for before, t in zip(recent, recent[1:], strict=False):
            if t.speaker != before.speaker and t.start > self._turn_told + MIN_RUN_S \
                    and t.end - t.start >= TURN_SPLIT_S:
                self._turn_told = t.start
                self.on_turn(t.start)

    async def _report(self, final: bool) -> None:
        """Tell every ended turn that subscribers do not have as it is now: a new one past what was told, or a
        correction over told time (a re-clustering relabelled it, or a turn that began in told time ended
        only now)."""
        d = self.diarizer
        if not final:
            self._tell_turns()
            await self._retell_partial()
        labelled = d.labelled_until
        # a turn is reported once it has ended: followed by another voice, or by a pause past bridging
        horizon = labelled if final else labelled - d.config.gap_fill_s
        revised = d.revision != self._revision
        # without a re-clustering only the recent turns can differ from what was told; ``turns`` cuts the first
        # one at ``since``, so a turn starting there is not compared
        since = 0.0 if revised else max(0.0, self._sent_until - 4 * d.config.gap_fill_s)
        done = [t for t in d.turns(since, labelled if final else None)
                if t.end <= horizon and (since == 0.0 or t.start > since + CHUNK_SECONDS)]
        for t in done:
            if (t.start, t.end, t.speaker) not in self._told:
                await self._publish(self._turn(t, correction=t.start < self._sent_until))
                self._told.add((t.start, t.end, t.speaker))
        if revised or final:  # the final labels may name a segment as they did not when it was labelled
            self._revision = d.revision
            await self._relabel_segments()
        if done:
            self._sent_until = max(self._sent_until, done[-1].end)

    async def _relabel_segments(self) -> None:
        """Every stored final under the speaker the labels give it now (:meth:`_speaker_of`)."""
        for seg_id, stored in list(self._segments.items()):
            row = stored.row
            n = self._speaker_of(row)
            if n and n != stored.speaker:
                stored.speaker = n
                stored.row = row.model_copy(update={"speaker": _name(n)})
                await self._save_segment(stored.row)
                start, end = _extent(row.start, row.end)
                await self._publish(Diarization(
                    speaker=speaker_label(n), speaker_id=speaker_id(n), start_time=start, end_time=end,
                    confidence=0.5, correction=True, segment_ids=[seg_id]))

    def _store_by_turns(self, changed: set[str]) -> None:
        """The stored form after the offline pass (:func:`parts_by_turn`): each segment cut where its words pass
        into another of the final turns, each piece under its turn's voice and spanning its share of the turn,
        the first piece keeping the segment's id (every row that differs goes into ``changed``). Nothing is
        re-sent live: subscribers had each segment's final and the ``diarization`` messages of the turns."""
        turns = self.diarizer.turns()
        off = self.offset
        stored = sorted(self._segments.values(), key=lambda s: (s.row.start, s.row.end))
        parts = parts_by_turn([[(w.start - off, w.end - off) for w in s.row.words] for s in stored],
                              [(s.row.start - off, s.row.end - off) for s in stored],
                              [(t.start, t.end, t.speaker) for t in turns], self.diarizer.speech(), CHUNK_SECONDS)
        pieces: dict[int, int] = {}
        for p in parts:
            pieces[p.segment] = pieces.get(p.segment, 0) + 1
        seen: dict[int, int] = {}
        for p in parts:
            row = stored[p.segment].row
            k = seen[p.segment] = seen.get(p.segment, 0) + 1
            n = p.voice
            update: dict = {"segment_id": row.segment_id if k == 1 else f"{row.segment_id}-{k}",
                            "speaker": _name(n), "start": round(p.start + off, 3), "end": round(p.end + off, 3)}
            if pieces[p.segment] > 1:
                ws = row.words[p.first:p.stop]
                update.update(words=ws, text=join_words(w.text for w in ws),
                              confidence=round(sum(w.probability for w in ws) / len(ws), 4))
            part = row.model_copy(update=update)
            if part != row:
                changed.add(part.segment_id)
            self._segments[part.segment_id] = _Stored(part, n)

    def _turn(self, t: Turn, correction: bool = False) -> Diarization:
        return Diarization(speaker=speaker_label(t.speaker), speaker_id=speaker_id(t.speaker),
                           start_time=round(t.start + self.offset, 3), end_time=round(t.end + self.offset, 3),
                           confidence=self._confidence(t), correction=correction)

    def _confidence(self, t: Turn) -> float:
        # longer turns rest on more windows; a 0.5 s blip is a guess
        return round(min(0.95, 0.5 + 0.1 * (t.end - t.start)), 3)

    # ------------------------------------------------------------ end of stream: the offline pass

    async def finish(self) -> list[dict]:
        """Embed what is left, re-cluster everything once more, report; returns the turns to store."""
        job = self._job
        if job is not None and not job.done():
            await asyncio.shield(job)
        await self._update(final=True)
        changed: set[str] = set()  # the stored form is worked out whole, then each changed row written once
        self._store_by_turns(changed)
        for seg_id, stored in list(self._segments.items()):
            if seg_id in changed:
                await self._save_segment(stored.row)
        return [{"start": round(t.start + self.offset, 3), "end": round(t.end + self.offset, 3),
                 "speaker": speaker_label(t.speaker), "speaker_id": speaker_id(t.speaker)}
                for t in self.diarizer.turns()]


def _extent(start: float, end: float) -> tuple[float, float]:
    """A range of words for a ``diarization`` message: words aligned to an instant still span one timestamp step."""
    return start, round(max(end, start + TIMESTAMP_STEP_S), 3)


def _name(n: int) -> str | None:
    return speaker_label(n) if n else None


def live_speakers(services: StreamParts, transcript_id: str, offset: float) -> LiveSpeakers:
    """Diarization of one mixed stream of ``transcript_id`` (live or a file), starting at ``offset``."""
    return LiveSpeakers(
        worker=services.speaker_worker, vad_model=services.model[1], config=diarization_config(services.settings),
        offset=offset, publish=lambda body: services.hub.publish(transcript_id, body),
        save_segment=lambda msg: services.hub.store_final(transcript_id, msg))


async def settle_speakers(services: StreamParts, transcript_id: str, speakers: LiveSpeakers) -> None:
    """The end-of-stream pass, then its turns stored with the transcript. Labels are an extra: a failure
    is logged and never keeps a transcript from completing."""
    try:
        turns = await speakers.finish()
        await services.store.merge_transcript_meta(transcript_id, {"diarization": {"turns": turns, "pass": "offline"}},
                                                   fence=services.hub.fence_of(transcript_id))
    except StaleFence:  # another node has the transcript now: its own turns stand
        services.hub.refused(transcript_id)
    except Exception:
        log.exception("diarization of transcript %s failed at the end of the stream", transcript_id)
