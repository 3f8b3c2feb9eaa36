"""ASR backends: the window-decoding interface the inference loop drives, and the one place a backend is made.

``base`` holds the interface (:class:`AsrBackend` and the request/result shapes); each backend lives in a module
of its own and loads its libraries (and model) only when it is made, so choosing one never loads another's.
``streaming`` describes recognizers that endpoint themselves (a different shape, not driven by the loop);
``riva`` is one, made by :func:`make_recognizer`.
The server turns its settings into a :class:`BackendConfig`; nothing here reads the server's settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asr.backends.base import LOOP_COMPRESSION_RATIO, AsrBackend, DecodedWord, DecodeRequest, DecodeResult
from asr.backends.faster_whisper import FasterWhisperBackend
from asr.backends.model_files import BUNDLED_MODEL
from asr.backends.streaming import StreamingRecognizer

__all__ = [
    "BACKENDS",
    "RECOGNIZERS",
    "LOOP_COMPRESSION_RATIO",
    "AsrBackend",
    "BackendConfig",
    "DecodeRequest",
    "DecodeResult",
    "DecodedWord",
    "make_backend",
    "make_recognizer",
]


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """What a backend is built from; the defaults are faster-whisper's own (the bundled model on one CPU lane)."""

    name: str = "faster-whisper"
    model: str = BUNDLED_MODEL
    device: str = "cpu"
    device_index: int = 0
    compute_type: str = "int8"
    cpu_threads: int = 0  # 0: the library's choice
    batch_size: int = 1  # most requests one call decodes together
    beam_size: int = 1
    hurried_pad_s: float = 5.0  # silence encoded after a hurried window (see DecodeRequest.hurried)
    lanes: int = 1  # decodes that may run at once, each from its own thread
    calibrate: bool = True
    """Time the live decodes at warm-up (what admission and the pacer size from). Off where no live stream is
    served (a worker, ``voxlane transcribe``, a retranslation model): 5 rounds of a full batch per lane that
    only delay the start."""
    calibration_s: float | None = None
    """A full batch of live refreshes' cost, known beforehand (``VOXLANE_CALIBRATION_SECONDS``): warm-up takes
    it instead of timing the rounds."""
    synthetic_rtf: float = 0.0
    """The synthetic backend's pace: seconds a decode waits per second of its audio."""


def _faster_whisper(config: BackendConfig) -> AsrBackend:
    return FasterWhisperBackend(
        model=config.model, device=config.device, compute_type=config.compute_type,
        cpu_threads=config.cpu_threads, batch_size=config.batch_size, beam_size=config.beam_size,
        device_index=config.device_index, hurried_pad_s=config.hurried_pad_s, lanes=config.lanes,
        calibrate=config.calibrate, calibration_s=config.calibration_s)


def _synthetic(config: BackendConfig) -> AsrBackend:
    from asr.backends.synthetic import SyntheticBackend

    return SyntheticBackend(rtf=config.synthetic_rtf)


BACKENDS: dict[str, Callable[[BackendConfig], AsrBackend]] = {"faster-whisper": _faster_whisper,
                                                               "synthetic": _synthetic}
"""Backend name -> its builder (``VOXLANE_*`` settings pick the name; a new backend adds one entry)."""


def _riva(config: Any) -> StreamingRecognizer:
    from asr.backends.riva import RivaRecognizer

    return RivaRecognizer(config)


RECOGNIZERS: dict[str, Callable[[Any], StreamingRecognizer]] = {"riva": _riva}
"""Streaming recognizer name -> its builder, given that recognizer's own config (``asr.backends.riva.RivaConfig``).
A recognizer endpoints itself, so it is not driven by the inference loop (see ``asr.transcriber``)."""


def make_recognizer(name: str, config: Any) -> StreamingRecognizer:
    """The streaming recognizer ``name`` names. Opening its channel connects lazily: a service that is down shows
    as failed calls on the streams (reported to their subscribers), not as a node that does not start."""
    try:
        build = RECOGNIZERS[name]
    except KeyError:
        raise ValueError(f"unknown streaming recognizer {name!r}; known: {', '.join(sorted(RECOGNIZERS))}") from None
    return build(config)


def make_backend(config: BackendConfig) -> AsrBackend:
    """The backend ``config.name`` names, loaded and warmed (its model too: this may take seconds; call it off the
    loop).

    Raises ``ValueError`` for a name no backend has, and whatever the backend raises when its model cannot be
    loaded (faster-whisper: ``ModelNotFound``)."""
    try:
        build = BACKENDS[config.name]
    except KeyError:
        raise ValueError(f"unknown ASR backend {config.name!r}; known: {', '.join(sorted(BACKENDS))}") from None
    backend = build(config)
    backend.warm()
    return backend
