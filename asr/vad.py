"""Silero VAD run straight on onnxruntime.

The ``silero-vad`` package ships the ONNX model but importing it pulls in torch;
we locate the file without importing the package and keep one shared
``InferenceSession`` with per-stream recurrent state.

A stream's VAD is a sequence of steps, one model call per 32 ms chunk, each on the state the one before left
(:meth:`VadStream.steps`). A call costs 0.27 ms alone and 1.2 ms for sixteen streams' chunks together (2-core
EPYC), so an ingest thread that takes in many streams at once runs their steps side by side, one call for a
chunk of each (:func:`score_together`); a stream alone runs its own (:func:`run_steps`).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from media.audio import SAMPLE_RATE

CHUNK = 512  # samples per VAD step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk the v5+ models expect in front
CHUNK_SECONDS = CHUNK / SAMPLE_RATE
MAX_BATCH = 64
"""Most streams' chunks scored in one model call."""

VadSteps = Generator[tuple[np.ndarray, np.ndarray], tuple[float, np.ndarray], np.ndarray]
"""A stream's VAD over some audio: it yields (frame of context and chunk, recurrent state) for each chunk the model
must score, is sent back (probability, new state), and returns the chunks' probabilities."""


def silero_model_path() -> str:
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the silero-vad package is not installed (pip install silero-vad)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "silero_vad.onnx")
    if not os.path.exists(path):
        raise RuntimeError(f"silero-vad ONNX model not found at {path}")
    return path


class SileroModel:
    """One ONNX session shared by every stream; ``run`` is thread-safe."""

    def __init__(self, path: str | None = None) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(path or silero_model_path(), sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self._lock = threading.Lock()

    def run(self, frames: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames: (batch, CONTEXT + CHUNK) float32; state: (2, batch, 128)."""
        with self._lock:
            out, new_state = self._session.run(None, {"input": frames, "state": state, "sr": self._sr})
        return out[:, 0], new_state


QUIET_PEAK = 3e-4
"""A chunk whose samples all stay under this (-70 dBFS), in a quiet run the model called silence, is silence without
asking the model. The model costs 0.6 % of a core per stream, more than a connected stream that says nothing
may cost; over the corpus no chunk this quiet after silence scored 0.1, and within speech (a digital zero between
words still scores up to 0.5 on the model's memory) the model is always asked."""
QUIET_AFTER = 0.05  # ...the model's probability for the chunks before, for the gate to apply
QUIET_RUN = 32  # ...and only after this many such chunks (1 s): a whisper's pauses are read as they were
WARM_CHUNKS = 16
"""Skipped chunks the model reads, unscored, before the first sound after them: its recurrent state then is what
it would have been (with a cold or stale state the onsets of whispered speech scored otherwise, and the replay's
hard-cases file lost 15 words)."""


class VadStream:
    """Per-stream recurrent state; turns arbitrary-length audio into per-chunk speech probabilities."""

    def __init__(self, model: SileroModel) -> None:
        self._model = model
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._quiet = 0  # quiet chunks in a row after silence
        self._skipped: deque[np.ndarray] = deque(maxlen=WARM_CHUNKS)  # the last chunks not read, for warming up

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities for every complete 512-sample chunk now available (leftover is kept)."""
        return run_steps(self._model, self.steps(samples))

    def steps(self, samples: np.ndarray) -> VadSteps:
        """The model calls :meth:`process` makes, for a caller that runs them (see :data:`VadSteps`)."""
        buf = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        n = len(buf) // CHUNK
        self._pending = buf[n * CHUNK:]
        probs = np.empty(n, dtype=np.float32)
        quiet = np.abs(buf[:n * CHUNK]).reshape(n, CHUNK).max(axis=1) < QUIET_PEAK if n else np.zeros(0, bool)
        for i in range(n):
            chunk = buf[i * CHUNK:(i + 1) * CHUNK]
            if quiet[i] and self._quiet >= QUIET_RUN:
                probs[i] = 0.0
                self._skipped.append(chunk)
                continue
            while self._skipped:  # sound after skipped chunks: bring the model's memory up to date first
                yield from self._score(self._skipped.popleft())
            probs[i] = p = yield from self._score(chunk)
            self._quiet = self._quiet + 1 if quiet[i] and p < QUIET_AFTER else 0
        return probs

    @property
    def hushed(self) -> bool:
        """Whether quiet chunks are skipped now (a second of silence was heard): until a louder one, this stream's
        audio costs no model run."""
        return self._quiet >= QUIET_RUN

    def _score(self, chunk: np.ndarray) -> Generator[tuple[np.ndarray, np.ndarray], tuple[float, np.ndarray], float]:
        p, self._state = yield np.concatenate([self._context, chunk]), self._state
        self._context = chunk[-CONTEXT:]
        return p


def run_steps(model: SileroModel, steps: VadSteps) -> np.ndarray:
    """One stream's VAD steps, one model call each."""
    try:
        frame, state = next(steps)
        while True:
            p, new_state = model.run(frame[None, :], state)
            frame, state = steps.send((float(p[0]), new_state))
    except StopIteration as done:
        return done.value


def score_together(model: SileroModel, streams: list[VadSteps]) -> list[np.ndarray]:
    """Several streams' VAD steps side by side: each model call scores the next chunk of up to
    :data:`MAX_BATCH` streams (a stream's chunks follow one another: each needs the state the one before left).
    Returns each stream's probabilities, in order."""
    out: list[np.ndarray | None] = [None] * len(streams)
    waiting: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, steps in enumerate(streams):
        try:
            waiting[i] = next(steps)
        except StopIteration as done:
            out[i] = done.value
    while waiting:
        batch = list(waiting)[:MAX_BATCH]
        frames = np.stack([waiting[i][0] for i in batch])
        states = np.concatenate([waiting[i][1] for i in batch], axis=1)
        probs, new_states = model.run(frames, states)
        for k, i in enumerate(batch):
            try:
                waiting[i] = streams[i].send((float(probs[k]), np.ascontiguousarray(new_states[:, k:k + 1])))
            except StopIteration as done:
                out[i] = done.value
                del waiting[i]
    return [p if p is not None else np.zeros(0, dtype=np.float32) for p in out]


@dataclass
class VadConfig:
    threshold: float = 0.35  # whispered speech peaks around 0.3-0.7; white noise stays under 0.06
    # speech stays speech down to this: a whispered sentence dips to 0.1-0.3 between its peaks
    neg_threshold: float = 0.1
    min_speech_s: float = 0.2  # shorter blips are not speech (clicks, coughs)
    # audio kept after speech so word ends are not clipped: a pause's window ends here. 0.1 s read as well in
    # pause commits over fixed windows (130 errors of 1372 against 134) and started the pause's decode 0.1 s
    # sooner, but the replay's commit tail grew (p95 1.19 -> 2.24 s: more last words read unsure)
    speech_pad_s: float = 0.2
    resume_within_s: float = 0.8  # speech this soon after the last is the same utterance going on


class SpeechTracker:
    """Hysteresis over VAD probabilities: where speech is, and how long the current silence has run.

    Times are seconds on the stream's own clock (samples fed / SAMPLE_RATE).
    """

    def __init__(self, config: VadConfig, t: float = 0.0) -> None:
        self.config = config
        self.t = t  # end of audio processed by VAD
        self.in_speech = False
        self.speech_start: float | None = None  # start of the current/last speech run
        self.speech_end: float | None = None  # end of the last chunk judged speech
        self._candidate: float | None = None  # start of a run not yet long enough to count
        self.voiced_end: float | None = None  # end of the last chunk at or over ``threshold`` (clearly voiced)
        self.recent: deque[tuple[float, float]] = deque(maxlen=200)  # (chunk end, probability), ~6 s

    def quietest(self, since: float) -> float | None:
        """End of the least speech-like chunk after ``since``: the least harmful place to cut."""
        cands = [(p, t) for t, p in self.recent if t > since]
        return min(cands)[1] if cands else None

    def quiet_runs(self, start: float, end: float, least: float) -> list[tuple[float, float]]:
        """The stretches from ``start`` to ``end`` in which every chunk was below the negative threshold (not
        even a quiet continuation of speech), each at least ``least`` seconds long, in time order."""
        runs: list[list[float]] = []
        for t, p in self.recent:
            a = t - CHUNK_SECONDS
            if p >= self.config.neg_threshold or a < start - 1e-9 or t > end + 1e-9:
                continue
            if runs and abs(runs[-1][1] - a) < 1e-6:
                runs[-1][1] = t
            else:
                runs.append([a, t])
        return [(a, b) for a, b in runs if b - a >= least - 1e-9]

    def update(self, probs: np.ndarray) -> list[tuple[str, float]]:
        """Feed probabilities; returns events ``("speech_start", t)`` in time order."""
        events: list[tuple[str, float]] = []
        cfg = self.config
        for p in probs:
            start, end = self.t, self.t + CHUNK_SECONDS
            self.t = end
            self.recent.append((end, float(p)))
            if p >= cfg.threshold:
                self.voiced_end = end
            if p >= cfg.threshold and not self.in_speech:
                if self.speech_end is not None and start - self.speech_end < cfg.resume_within_s:
                    # a pause within an utterance ends: a clicks filter would clip the word after it
                    self._candidate = None
                    self.in_speech = True
                    events.append(("speech_start", start))
                elif self._candidate is None:
                    self._candidate = start
            if p >= cfg.neg_threshold and (self.in_speech or self._candidate is not None):
                # voiced enough to keep an utterance alive, or a quiet onset (a whisper) on its way to one
                if self._candidate is not None and end - self._candidate >= cfg.min_speech_s:
                    self.in_speech = True
                    self.speech_start = self._candidate
                    self._candidate = None
                    events.append(("speech_start", self.speech_start))
                if self.in_speech:
                    self.speech_end = end
            else:
                self._candidate = None
                self.in_speech = False
        return events

    @property
    def pending_onset(self) -> float | None:
        """Start of a voiced run not yet long enough to count as speech (None when there is none)."""
        return self._candidate

    @property
    def silence_run(self) -> float:
        """Seconds since the last speech chunk (0 while speaking, inf before any speech)."""
        if self.in_speech:
            return 0.0
        if self.speech_end is None:
            return float("inf")
        return self.t - self.speech_end
