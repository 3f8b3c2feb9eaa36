"""The real model, each request it is given read once: a second reading of the same window is the first's.

The model reads the same window, prompt and options to the same words, so where the suite sends one recording
through the model again to test something other than the model (the REST tests run in both access modes, on both
databases; the inference-loop replays of one recording share their first windows), the second reading costs the
suite's CPU and tests nothing the first did not. Every first reading is the real model's; a request that differs in
any sample or option is read anew.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import threading
from typing import Any

from asr.backends import AsrBackend, DecodeRequest, DecodeResult, make_backend
from server.pipeline.configs import backend_config
from server.role import Role
from server.settings import Settings

Key = tuple[bytes, str, str, str | None, str, bool, bool]


def request_key(request: DecodeRequest) -> Key:
    return (hashlib.sha1(request.audio.tobytes()).digest(), request.audio.dtype.str, request.prompt,
            request.language, request.hotwords, request.word_timestamps, request.hurried)


class ReadOnce:
    """``backend`` behind a record of what it read, shared through ``readings`` by the wrappers of backends that
    load the same model. A batch's unread requests go to the model as one batch, so the loop batches as it would
    with the model alone; every other attribute (``lanes``, ``english_only``, ``close``, ...) is the backend's."""

    def __init__(self, backend: AsrBackend, readings: dict[Key, DecodeResult] | None = None,
                 max_batch: int | None = None) -> None:
        self.backend = backend
        self.readings = {} if readings is None else readings
        self.max_batch = backend.max_batch if max_batch is None else max_batch
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        keys = [request_key(r) for r in requests]
        with self._lock:
            unread = {k: r for k, r in zip(keys, requests, strict=True) if k not in self.readings}
        if unread:
            read = self.backend.transcribe(list(unread.values()))
            with self._lock:
                self.readings.update(zip(unread, read, strict=True))
        # a copy: a session may count more work into its result
        return [copy.deepcopy(self.readings[k]) for k in keys]


READINGS: dict[tuple[str, str, str, int, float], dict[Key, DecodeResult]] = {}
"""What the in-process apps' models have read, in this process, by what decides a reading (model, device, compute
type, beam size, a hurried window's pad): each app :func:`read_once` loads reads through its model's record."""


async def read_once(settings: Settings) -> ReadOnce | None:
    """The model ``settings`` name, loaded as a node of theirs would load it, reading through its record in
    :data:`READINGS`; None where such a node loads no Whisper model (another backend, or a node that transcribes
    nothing)."""
    role = Role.serve(settings)
    if settings.asr_backend != "faster-whisper" or not role.transcribes:
        return None
    config = backend_config(settings, live=role.live)
    readings = READINGS.setdefault(
        (config.model, config.device, config.compute_type, config.beam_size, config.hurried_pad_s), {})
    return ReadOnce(await asyncio.to_thread(make_backend, config), readings)
