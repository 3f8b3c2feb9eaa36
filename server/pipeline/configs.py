"""The live path's settings, turned into the ASR core's configs (the core never reads server settings)."""

from __future__ import annotations

from asr.backends import BackendConfig
from asr.backends.riva import RivaConfig
from asr.diarization import DiarizationConfig
from asr.inference import Priority
from asr.session import StreamConfig
from asr.vad import VadConfig
from server.settings import Settings, riva_metadata_pairs


def stream_config(settings: Settings, priority: Priority = Priority.PARTIAL) -> StreamConfig:
    min_silence = settings.vad_min_silence_ms / 1000  # a pause shorter than this keeps the utterance going
    return StreamConfig(
        vad=VadConfig(threshold=settings.vad_threshold, neg_threshold=max(0.05, settings.vad_threshold - 0.25),
                      resume_within_s=min_silence),
        min_silence_s=min_silence,
        pause_commit_s=settings.pause_commit_ms / 1000,
        pause_settle_s=settings.pause_settle_ms / 1000,
        pause_commit_confidence=settings.pause_commit_confidence,
        min_step_s=settings.min_step_ms / 1000,
        first_step_s=settings.first_step_ms / 1000,
        max_segment_s=settings.max_segment_seconds,
        close_after_s=settings.segment_close_seconds,
        sentence_split_s=settings.sentence_split_seconds,
        trim_s=settings.window_seconds,
        language=settings.language,
        priority=priority,
    )


def diarization_config(settings: Settings) -> DiarizationConfig:
    return DiarizationConfig(max_speakers=settings.max_speakers, cluster_threshold=settings.speaker_threshold)


def backend_config(settings: Settings, live: bool = True) -> BackendConfig:
    """``live``: whether the backend serves live streams (and so is calibrated for them at warm-up)."""
    return BackendConfig(
        name=settings.asr_backend, model=settings.model, device=settings.device, compute_type=settings.compute_type,
        cpu_threads=settings.effective_cpu_threads, batch_size=settings.effective_batch_size,
        beam_size=settings.beam_size, device_index=settings.device_index,
        hurried_pad_s=settings.hurried_pad_seconds, lanes=settings.effective_parallel_decodes,
        calibrate=live, calibration_s=settings.calibration_seconds or None,
        synthetic_rtf=settings.synthetic_rtf)


def riva_config(settings: Settings) -> RivaConfig:
    return RivaConfig(
        uri=settings.riva_uri, use_ssl=settings.riva_ssl == "on" or bool(settings.riva_ssl_root_cert),
        ssl_root_cert=settings.riva_ssl_root_cert, api_key=settings.riva_api_key,
        metadata=riva_metadata_pairs(settings.riva_metadata or ""), model=settings.riva_model,
        language=settings.riva_language, chunk_ms=settings.riva_chunk_ms)
