"""faster-whisper (CTranslate2) backend: batched window decodes on one or more lanes.

Where the weights come from is :mod:`asr.backends.model_files`.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from asr.backends.base import LOOP_COMPRESSION_RATIO, DecodedWord, DecodeRequest, DecodeResult
from asr.backends.calibration import CALIBRATION_PROMPT, calibration_speech
from asr.backends.hotwords import hotword_tokens
from asr.backends.model_files import BUNDLED_MODEL, ModelNotFound, resolve_model
from media.audio import SAMPLE_RATE, faint_noise

TAIL_S = 1.0  # audio left undecoded after a window's last timestamp that is decoded in a second pass
# tokens a window's text may take: the corpus's densest speech reads at 7 a second, timestamps included
# about 8. Without a bound a window the model loops on ("Word. Word. Word. ...") is generated to what
# CTranslate2 allows under the model's length of 448 (224 tokens): 2.5 s of generating on 2 cores for a
# 5 s window, and a looping window is read twice
TOKENS_BASE = 16
TOKENS_PER_SECOND = 12
# a reading's last word aligned longer than this stands for speech the model skipped: it closed its text with a
# timestamp at the window's end, and the aligner stretched the word before over what it did not write ("die
# single and" with "and" at 48.31-51.14 s, "thine image dies with thee" lost). Of 6,623 words aligned in 8 s
# windows over the corpus, 47 took longer than 1.2 s, 3 of them a reading's last word
STRETCHED_WORD_S = 1.2
log = logging.getLogger("voxlane.whisper")


def _stops_short(words: list[DecodedWord], duration: float) -> int | None:
    """A reading whose last word is stretched over the rest of its window: the model stopped reading there. The
    words to keep (all but that one and the one before it, so the word is read again with sound before it: read
    from its own onset "posterity" came out "austerity"), or None. Not when they end in the window's first
    second (the tail would be the whole window) or the word starts in its last (too little to read)."""
    if len(words) < 3:
        return None
    last = words[-1]
    if last.end - last.start > STRETCHED_WORD_S and duration - last.start > TAIL_S and words[-3].end >= TAIL_S:
        return len(words) - 2
    return None


@dataclass(slots=True)
class _Reading:
    """One window's generated text, split at its timestamps, before its word timings are aligned."""

    segments: list[dict]
    size: int  # the window's length in encoder frames, whole seconds
    text: str
    unread_from: int | None  # first sample of a tail the model left unread, to be decoded again
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    passes: int = 1


CALIBRATION_WINDOW_S = 5.0
"""The window whose full reading tells the live pace (:mod:`asr.pace`): a segment's refresh at the step."""
CALIBRATION_ROUNDS = 5


class FasterWhisperBackend:
    name = "faster-whisper"

    def __init__(self, model: str = BUNDLED_MODEL, device: str = "cpu", compute_type: str = "int8",
                 cpu_threads: int = 0, batch_size: int = 1, beam_size: int = 1,
                 device_index: int = 0, hurried_pad_s: float = 5.0, lanes: int = 1, calibrate: bool = True,
                 calibration_s: float | None = None) -> None:
        """``lanes``: decodes that may run at once, from different threads (see
        ``Settings.effective_parallel_decodes``). Each lane has a model of its own with ``cpu_threads``
        threads: one model with several CTranslate2 workers hands a decode's encoder, generate and
        alignment calls to whichever worker is free, and a decode alone took 10-15 % longer in the server.

        ``calibrate``: whether :meth:`warm` also times the live decodes that admission and the pacer size from
        (a node that takes no live audio has no use for them); ``calibration_s``: their cost as measured before,
        taken instead of the rounds of :meth:`_calibrate` (the full decode the pacer is seeded from is still
        timed: one decode, and the machine's pace now)."""
        from faster_whisper import WhisperModel

        path = resolve_model(model)
        self.lanes = max(1, lanes)
        try:
            self._models = [WhisperModel(path, device=device, device_index=device_index,
                                         compute_type=compute_type, cpu_threads=cpu_threads,
                                         local_files_only=True) for _ in range(self.lanes)]
        except Exception as exc:  # CTranslate2 raises plain RuntimeError/ValueError
            raise ModelNotFound(f"cannot load model {model!r} on {device}/{compute_type}: {exc}") from exc
        self._lane = threading.local()
        self._lanes_given = itertools.count()
        self.model_name = model
        self.english_only = not self._models[0].model.is_multilingual
        self.max_batch = max(1, batch_size)
        self.beam_size = beam_size
        self.hurried_pad_s = hurried_pad_s
        self.calibrate = calibrate
        self.preset_calibration = calibration_s
        self.calibration_seconds: float | None = None  # a full batch of live refreshes, timed by warm()
        self.full_decode_seconds: float | None = None  # one live window read in full, alone, timed by warm()

    @property
    def _model(self):
        """The calling thread's model: an inference lane keeps one for all its decodes."""
        model = getattr(self._lane, "model", None)
        if model is None:
            model = self._lane.model = self._models[next(self._lanes_given) % len(self._models)]
        return model

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        out: dict[int, DecodeResult] = {}
        groups: dict[tuple[str | None, str], list[int]] = {}
        for i, r in enumerate(requests):
            if self._single_pass(r):
                groups.setdefault(("en" if self.english_only else r.language, r.hotwords), []).append(i)
            else:
                out[i] = self.transcribe_long(r)
        # one encoder pass and one generate call for each group: requests in another language or with other
        # key terms form their own batch (a batch's prompts are cut to one length)
        for idx in groups.values():
            # a session without prompt text would take every other prompt down to nothing: batch apart
            idx.sort(key=lambda i: bool(requests[i].prompt.strip()))
            bare = [i for i in idx if not requests[i].prompt.strip()]
            for part in (bare, idx[len(bare):]):
                if part:
                    out.update(zip(part, self._window_or_long([requests[i] for i in part]), strict=True))
        return [out[i] for i in range(len(requests))]

    def _single_pass(self, req: DecodeRequest) -> bool:
        """A window of up to 30 s in a known language is decoded in one pass over the model."""
        return len(req.audio) <= 30 * SAMPLE_RATE and (self.english_only or req.language is not None)

    def _window_or_long(self, reqs: list[DecodeRequest]) -> list[DecodeResult]:
        try:
            return self._windows(reqs)
        except Exception as exc:  # fall back to the library's own path rather than fail every session
            log.warning("windowed decode failed (%s); decoding one by one", exc)
            return [self.transcribe_long(r) for r in reqs]

    def _windows(self, reqs: list[DecodeRequest]) -> list[DecodeResult]:
        """One encoder pass and one generate call over windows of up to 30 s each, with a prompt per
        request (the shape of faster-whisper's batched pipeline): what makes several live sessions cost
        one encoder batch on a GPU.

        Live windows are decoded this way even alone. ``WhisperModel.transcribe`` re-decodes the tail
        of every window after the last timestamp it saw, a second encoder and decoder pass that cost 40 %
        more time and, on the corpus's utterances, added errors (WER 11.3 % against 8.6 % in one pass).
        Here only a tail of more than ``TAIL_S`` that the first pass left out is decoded again: the model
        sometimes ends early on a long window, and those words would be lost. That includes a text closed
        by a single final timestamp long before the window ends ("... and thou" with "feel'st it cold"
        unread): faster-whisper takes such a window as wholly read. Replay at N=1: 144 -> 139 errors of
        1372, the extra pass taken by a few windows only.
        """
        from faster_whisper.tokenizer import Tokenizer

        t0 = time.perf_counter()
        m = self._model
        language = "en" if self.english_only else (reqs[0].language or "en")
        tok = Tokenizer(m.hf_tokenizer, m.model.is_multilingual, task="transcribe", language=language)
        span = int(round(self.encoder_seconds(reqs) * 100))
        t_enc = time.perf_counter()
        encoded = self._encode(reqs, span)
        encode_share = (time.perf_counter() - t_enc) / len(reqs)
        readings = self._without_loops(reqs, self._generate(reqs, encoded, tok), encoded, tok, span)
        if any(r.word_timestamps for r in reqs):
            aligned = self._with_words([r.segments for r in readings], tok, encoded, [r.size for r in readings])
            for reading, segments in zip(readings, aligned, strict=True):
                reading.segments = segments
        elapsed = (time.perf_counter() - t0) / len(reqs)
        results = []
        for reading in readings:
            words = [DecodedWord(w["word"], float(w["start"]), float(w["end"]), float(w["probability"]))
                     for seg in reading.segments for w in seg.get("words") or []]
            results.append(DecodeResult(words=words, no_speech_prob=reading.no_speech_prob,
                                        avg_logprob=reading.avg_logprob, compression_ratio=reading.compression_ratio,
                                        compute_seconds=elapsed, encode_seconds=encode_share,
                                        passes=reading.passes))
        for req, reading, res in zip(reqs, readings, results, strict=True):
            cut = _stops_short(res.words, len(req.audio) / SAMPLE_RATE) if reading.unread_from is None else None
            if cut is not None:
                del res.words[cut:]
                reading.unread_from = int(res.words[-1].end * SAMPLE_RATE)
                reading.text = "".join(w.text for w in res.words)  # the prompt of the tail's reading
        tails = [(i, r.unread_from, replace(reqs[i], audio=reqs[i].audio[r.unread_from:],
                                            prompt=f"{reqs[i].prompt} {r.text}".strip()))
                 for i, r in enumerate(readings) if r.unread_from is not None]
        if tails:
            for (i, first, _), more in zip(tails, self._windows([t for _, _, t in tails]), strict=True):
                offset = first / SAMPLE_RATE
                res = results[i]
                res.words += [DecodedWord(w.text, w.start + offset, w.end + offset, w.probability) for w in more.words]
                res.compression_ratio = max(res.compression_ratio, more.compression_ratio)
                res.add_cost(more)
        return results

    def _encode(self, reqs: list[DecodeRequest], span: int):
        from faster_whisper.audio import pad_or_trim

        m = self._model
        return m.encode(np.stack([pad_or_trim(m.feature_extractor(r.audio)[..., :-1], span) for r in reqs]))

    def _generate(self, reqs: list[DecodeRequest], encoded, tok) -> list[_Reading]:
        """The batch's texts, split into timestamped segments, without word timings yet."""
        from faster_whisper.transcribe import get_compression_ratio

        m = self._model
        # CTranslate2 wants <|startoftranscript|> at one position across a batch: every prompt keeps
        # the same number of its most recent tokens, after the batch's key terms (one batch, one set of them)
        hot = hotword_tokens(tok, reqs[0].hotwords)
        room = m.max_length // 2 - 1 - len(hot)
        previous = [tok.encode(" " + r.prompt.strip())[-room:] if r.prompt.strip() and room > 0 else []
                    for r in reqs]
        keep = min(len(p) for p in previous)
        prompts = [m.get_prompt(tok, previous_tokens=hot + (p[len(p) - keep:] if keep else []),
                                without_timestamps=False) for p in previous]
        generated = m.model.generate(
            encoded, prompts, beam_size=self.beam_size, max_length=self._max_length(reqs, len(prompts[0])),
            suppress_blank=True, suppress_tokens=self._suppressed_tokens(tok), return_scores=True,
            return_no_speech_prob=True, max_initial_timestamp_index=int(round(1.0 / m.time_precision)))
        readings = []
        for req, res in zip(reqs, generated, strict=True):
            tokens = res.sequences_ids[0]
            duration = len(req.audio) / SAMPLE_RATE
            size = int(math.ceil(duration) * m.frames_per_second)
            subs, seek, single_ending = m._split_segments_by_timestamps(
                tokenizer=tok, tokens=tokens, time_offset=0.0, segment_size=size, segment_duration=duration,
                seek=0)
            text = tok.decode([t for t in tokens if t < tok.eot])
            first = seek * m.feature_extractor.hop_length
            if subs and single_ending:
                first = int(subs[-1]["end"] * SAMPLE_RATE)  # the model closed the text early: the rest is unread
            unread = subs and 0 < first and len(req.audio) - first > TAIL_S * SAMPLE_RATE
            readings.append(_Reading(
                segments=[{"tokens": s["tokens"], "start": s["start"], "end": s["end"], "seek": 0} for s in subs],
                size=size, text=text, unread_from=first if unread else None, no_speech_prob=res.no_speech_prob,
                avg_logprob=res.scores[0] * len(tokens) / (len(tokens) + 1),
                compression_ratio=get_compression_ratio(text) if text else 1.0))
        return readings

    def _suppressed_tokens(self, tok) -> list[int]:
        """Tokens a reading never writes: Whisper's own set (symbols that are not speech, and the task tokens)."""
        from faster_whisper.transcribe import get_suppressed_tokens

        return list(get_suppressed_tokens(tok, [-1]))

    def _without_loops(self, reqs: list[DecodeRequest], readings: list[_Reading], encoded, tok,
                       span: int) -> list[_Reading]:
        """Read a window again without its prompt when the prompt led the model into a loop.

        A prompt that ends in a run of one word ("Word. Word. Word.") can make the model repeat it over
        every later window that starts there: "Word." twenty-five times where "I have a thousand
        thoughts" was said. The loop guard keeps only its first turn, so the speech after it would be
        lost from every hypothesis, the segment's final included. Without the prompt the same audio
        reads correctly (Whisper's own fallback drops the prompt too). The second reading is of the same
        audio, so it reuses the encoder's output unless only part of a batch loops (then that part is
        encoded again); word timings are aligned once, for the reading kept.
        """
        again = [i for i, (r, reading) in enumerate(zip(reqs, readings, strict=True))
                 if reading.compression_ratio > LOOP_COMPRESSION_RATIO and (r.prompt.strip() or r.hotwords)]
        if not again:
            return readings
        bare = [replace(reqs[i], prompt="", hotwords="") for i in again]
        out = list(readings)
        for i, retry in zip(again, self._generate(bare, encoded if len(again) == len(reqs) else
                                                  self._encode(bare, span), tok), strict=True):
            kept = retry if retry.compression_ratio < readings[i].compression_ratio else readings[i]
            kept.passes = 2  # both readings ran
            out[i] = kept
        return out

    def _max_length(self, reqs: list[DecodeRequest], prompt_tokens: int) -> int:
        """CTranslate2's ``max_length`` for a batch that may generate ``TOKENS_BASE`` plus
        ``TOKENS_PER_SECOND`` tokens for each second of its longest window.

        CTranslate2 4.x generates at most half of ``max_length``, and no more than ``max_length`` less the
        prompt (measured: a loop prompted with 26 tokens stops at 224 tokens under the default 448 and at
        50 under 100; prompted with 65, at 36 under 100). The batch's prompts are equally long.
        """
        budget = TOKENS_BASE + math.ceil(TOKENS_PER_SECOND * max(len(r.audio) for r in reqs) / SAMPLE_RATE)
        return min(self._model.max_length, max(2 * budget, prompt_tokens + budget))

    def _with_words(self, segments_per_request: list[list[dict]], tok, encoded, sizes: list[int]) -> list[list[dict]]:
        """Word timings for a batch, aligned in one pass over its encoder output.

        faster-whisper's aligner reads every request's first segment: one window of a batch that read no
        text made it raise, and the whole batch fell back to decoding one by one (on a GPU, eight decodes
        for one). Such a window is aligned as one segment without text, which gives it no words.
        """
        if not any(segments_per_request):
            return segments_per_request
        padded = [segs or [{"tokens": [], "start": 0.0, "end": 0.0, "seek": 0}] for segs in segments_per_request]
        self._model.add_word_timestamps(padded, tok, encoded, sizes, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、", 0.0)
        return padded

    def encoder_seconds(self, reqs: list[DecodeRequest]) -> float:
        """Seconds of input the encoder reads for a batch: Whisper's 30, or for a hurried batch its longest
        window and ``hurried_pad_s`` of silence, in whole seconds.

        The encoder's pass over 30 s is most of a decode's cost on a CPU whatever the window holds (0.26 s
        of a 2 s window's 0.42 s on 2 cores). CTranslate2 encodes a shorter input, and with some
        seconds of silence after the speech the model still ends its text where the speech ends: a 2 s
        window then decodes in 0.20 s, a 10 s window in 0.42 s instead of 0.66 s. With no silence after
        it, it loops ("after early after early ...") and drops punctuation. The reading is a little less
        sure (replay at N=1, every decode hurried: 142 errors of 1372 against 138 in full), so only
        decodes that live work waits for take it: other streams', or a lone stream's on a machine whose full
        decodes fall behind its step (see :mod:`asr.pace`).
        """
        if self.hurried_pad_s >= 30 or not all(r.hurried for r in reqs):
            return 30.0
        longest = max(len(r.audio) for r in reqs) / SAMPLE_RATE
        return float(min(30, math.ceil(longest + self.hurried_pad_s)))

    def transcribe_long(self, req: DecodeRequest) -> DecodeResult:
        """faster-whisper's own long-form transcription: audio over 30 s, or a language to detect."""
        t0 = time.perf_counter()
        language = "en" if self.english_only else req.language
        try:
            segments, _info = self._model.transcribe(
                req.audio, language=language, beam_size=self.beam_size, best_of=1,
                temperature=0.0, condition_on_previous_text=False,
                initial_prompt=req.prompt or None, hotwords=req.hotwords or None,
                word_timestamps=req.word_timestamps,
                vad_filter=False, without_timestamps=False,
            )
            segments = list(segments)
        except Exception as exc:
            return DecodeResult(error=f"{type(exc).__name__}: {exc}", compute_seconds=time.perf_counter() - t0)
        words: list[DecodedWord] = []
        n = 0
        no_speech = logprob = 0.0
        ratio = 1.0
        for seg in segments:
            n += 1
            no_speech = max(no_speech, seg.no_speech_prob)
            logprob += seg.avg_logprob
            ratio = max(ratio, seg.compression_ratio)
            for w in seg.words or []:
                words.append(DecodedWord(w.word, float(w.start), float(w.end), float(w.probability)))
        return DecodeResult(words=words, no_speech_prob=no_speech, avg_logprob=logprob / n if n else 0.0,
                            compression_ratio=ratio, compute_seconds=time.perf_counter() - t0)

    def warm(self) -> None:
        """Decode a second of faint noise on every lane, hurried and in full, before the first stream does.

        The first decode of a process loads the compute kernels and grows the allocators. On a GPU that is
        seconds: on an H100 (float16) the first stream after start got its first partial at 20.8 s and fell
        13.5 s behind, where a second server started after it on the same machine did not."""
        audio = faint_noise()
        for model in self._models:
            with self._on_lane(model):
                for hurried in (True, False):
                    self.transcribe([DecodeRequest(audio, hurried=hurried)])
        if self.calibrate:
            self.full_decode_seconds = self._time_full_decode()
            self.calibration_seconds = self.preset_calibration or self._calibrate()

    def _time_full_decode(self) -> float:
        """One window of ``CALIBRATION_WINDOW_S`` read in full on the first lane alone, the model warm: whether
        this machine keeps to the live step (:mod:`asr.pace`) before any live decode has been timed."""
        with self._on_lane(self._models[0]):
            t0 = time.perf_counter()
            self.transcribe([DecodeRequest(faint_noise(CALIBRATION_WINDOW_S))])
            return time.perf_counter() - t0

    @contextmanager
    def _on_lane(self, model: Any) -> Iterator[None]:
        """This thread decodes on ``model`` until the block ends (warm-up and calibration run on lanes of their
        choosing, not the next one in turn)."""
        self._lane.model = model
        try:
            yield
        finally:
            del self._lane.model

    def _calibrate(self) -> float:
        """What a full batch of live refreshes costs here with every lane busy, what admission sizes a burst on
        (:meth:`server.pipeline.load.LoadMonitor.estimate`): on each lane at once, ``max_batch`` windows of real
        speech with a prompt, hurried (as a loaded loop reads them); the mean time of a batch over the lanes. 8 s
        is what a live refresh reads: a segment's own speech after up to ``StreamConfig.context_s`` (8 s) lent
        from the one before. Live decodes do not replace it there: they lengthen with every stream admitted.

        The fastest of :data:`CALIBRATION_ROUNDS` rounds: on one 2-core box a round read anything from 0.16 to
        0.24 s (two lanes of two threads each share the cores), enough to move the burst a fresh node admits by
        five streams; the fastest of three read 0.162-0.179 s over four server starts, of five 0.160-0.164 s."""
        speech = calibration_speech()
        rounds: list[float] = []
        for _ in range(CALIBRATION_ROUNDS):
            took: list[float] = []

            def lane(model: Any, took: list[float] = took) -> None:
                reqs = [DecodeRequest(speech, prompt=CALIBRATION_PROMPT, hurried=True) for _ in range(self.max_batch)]
                with self._on_lane(model):
                    t0 = time.perf_counter()
                    self.transcribe(reqs)
                    took.append(time.perf_counter() - t0)

            threads = [threading.Thread(target=lane, args=(model,), name="voxlane-calibrate")
                       for model in self._models]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rounds.append(sum(took) / len(took))
        log.info("calibration: a batch of live refreshes on every lane took %s s",
                 " / ".join(f"{r:.3f}" for r in rounds))
        return min(rounds)

    def close(self) -> None:
        self._models.clear()
