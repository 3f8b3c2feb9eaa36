"""Re-transcribing one segment of audio with a chosen model (``/api/retranslate``).

The server's own model is never loaded twice: its decodes go through the running inference loop at BULK
priority (live streams stay first), in windows of at most 30 s with the text so far as prompt. Another
*configured* local model (the bundled ``tiny.en``, or one named in ``VOXLANE_RETRANSLATE_MODELS``) is loaded
on first use, kept, and run in a worker thread, one decode at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from asr.backends import AsrBackend, DecodedWord, DecodeRequest, DecodeResult, make_backend
from asr.backends.model_files import BUNDLED_MODEL, ModelNotFound
from asr.inference import Priority
from media import SAMPLE_RATE, AudioTooLong, DecodeError, downmix, iter_decode_file, read_wav_range, s16_to_float
from media.wavfile import read_wav_layout
from server.pipeline.configs import backend_config
from server.storage.audio import AudioStore
from server.storage.audio.wav import stored_wav_layout

WINDOW_SECONDS = 30.0
MAX_SECONDS = 600.0
"""Longest segment that may be re-transcribed in one request."""


class ModelUnavailable(ValueError):
    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(f"model {name!r} is not available on this server; use one of {', '.join(available)}")
        self.available = available


class DecodeFailed(RuntimeError):
    pass


@dataclass
class Retranscription:
    text: str
    confidence: float
    words: list[DecodedWord]
    model_used: str


class ModelPool:
    """The models ``/api/retranslate`` may use besides the server's own, loaded lazily."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._models: dict[str, AsrBackend] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._loading = asyncio.Lock()

    def canonical(self, name: str | None) -> str:
        name = (name or "").strip()
        if not name or name == "server":
            return self.settings.model
        return BUNDLED_MODEL if name in ("default", "bundled") else name

    def available(self) -> list[str]:
        extra = [m.strip() for m in (self.settings.retranslate_models or "").split(",") if m.strip()]
        return list(dict.fromkeys([self.settings.model, BUNDLED_MODEL, *extra]))

    def check(self, name: str) -> None:
        if name not in self.available():
            raise ModelUnavailable(name, self.available())

    async def get(self, name: str) -> tuple[AsrBackend, threading.Lock]:
        async with self._loading:
            if name not in self._models:
                # the server's backend and device settings with another model, from the one factory: one lane,
                # one request per call (these decodes are one at a time, off the inference loop)
                config = replace(backend_config(self.settings, live=False), model=name, lanes=1, batch_size=1)
                try:
                    self._models[name] = await asyncio.to_thread(make_backend, config)
                except ModelNotFound as exc:
                    raise DecodeFailed(str(exc)) from None
                self._locks[name] = threading.Lock()
        return self._models[name], self._locks[name]

    def loaded(self) -> list[str]:
        return list(self._models)


async def _decode_window(services: Any, pool: ModelPool, model: str, request: DecodeRequest) -> DecodeResult:
    if model == services.settings.model and services.loop is not None:  # the loaded model: in the loop's turn
        key = f"retranslate-{uuid.uuid4().hex}"
        try:
            done = await services.loop.schedule(key, Priority.BULK, lambda: (request, None))
        finally:
            services.loop.forget(key)
        if done is None:
            return DecodeResult()
        return done[0]
    backend, lock = await pool.get(model)

    def run() -> DecodeResult:
        with lock:
            return backend.transcribe([request])[0]

    return await asyncio.to_thread(run)


async def retranscribe(services: Any, pool: ModelPool, audio: np.ndarray, *, model_name: str | None,
                       language: str | None = None) -> Retranscription:
    """Transcribe ``audio`` (16 kHz mono) with ``model_name`` (default: the server's model)."""
    model = pool.canonical(model_name)
    pool.check(model)
    language = language or services.settings.language
    words: list[DecodedWord] = []
    window = int(WINDOW_SECONDS * SAMPLE_RATE)
    for start in range(0, max(1, len(audio)), window):
        piece = audio[start:start + window]
        if len(piece) < SAMPLE_RATE // 10:  # under 0.1 s: nothing to hear
            continue
        prompt = "".join(w.text for w in words)[-400:].strip()
        result = await _decode_window(services, pool, model, DecodeRequest(
            audio=np.ascontiguousarray(piece, dtype=np.float32), prompt=prompt, language=language,
            word_timestamps=True))
        if result.error:
            raise DecodeFailed(result.error)
        offset = start / SAMPLE_RATE
        words += [DecodedWord(w.text, w.start + offset, w.end + offset, w.probability) for w in result.words]
    text = "".join(w.text for w in words).strip()
    confidence = float(np.mean([w.probability for w in words])) if words else 0.0
    return Retranscription(text=text, confidence=round(confidence, 4), words=words, model_used=model)


def read_audio_range(path: str | os.PathLike[str], start: float, end: float,
                     max_seconds: float | None = None) -> np.ndarray:
    """16 kHz mono audio between two times of a stored file (a 16 kHz WAV is read directly, anything else
    decoded block by block, keeping only the range). Nothing past ``max_seconds`` of decoded audio is
    decoded: a stored file longer than the server transcribes (one that failed for it) ends there."""
    path = Path(path)
    if path.suffix.lower() == ".wav":
        fd = os.open(path, os.O_RDONLY)
        try:
            layout = read_wav_layout(fd, path)
        except DecodeError:
            layout = None
        finally:
            os.close(fd)
        if layout is not None and layout.sample_rate == SAMPLE_RATE:
            return read_wav_range(path, start, end)
    first, last = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
    out: list[np.ndarray] = []
    pos = 0
    with contextlib.suppress(AudioTooLong):
        for block in iter_decode_file(path, chunk_seconds=10.0, max_seconds=max_seconds):
            a, b = max(first, pos), min(last, pos + len(block))
            if a < b:
                out.append(block[a - pos:b - pos])
            pos += len(block)
            if pos >= last:
                break
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


async def read_stored_range(audio: AudioStore, key: str, start: float, end: float,
                            max_seconds: float | None = None) -> np.ndarray:
    """:func:`read_audio_range` of a file in the audio store. A local file is read in place. From a bucket, a
    16 kHz WAV (a live or merged recording, hours long perhaps) is read as the one byte range the time range is;
    any other file is fetched whole first, as its decoder needs."""
    path = audio.direct_path(key)
    if path is not None:
        return await asyncio.to_thread(read_audio_range, path, start, end, max_seconds)
    layout = await stored_wav_layout(audio, key)
    if layout is not None and layout.sample_rate == SAMPLE_RATE:
        block = layout.channels * layout.sample_width
        total = layout.data_bytes // block
        first = min(total, max(0, round(start * SAMPLE_RATE)))
        last = min(total, max(first, round(end * SAMPLE_RATE)))
        data = b"".join([piece async for piece in audio.read_range(
            key, layout.data_offset + first * block, layout.data_offset + last * block)])
        return downmix(s16_to_float(data[:len(data) - len(data) % block]).reshape(-1, layout.channels))
    async with audio.local_path(key) as copy:
        return await asyncio.to_thread(read_audio_range, copy, start, end, max_seconds)
