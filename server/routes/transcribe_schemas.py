"""Request and response bodies of the transcription jobs API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from asr.backends.model_files import BUNDLED_MODEL

TAG = "transcription jobs"
NOT_FOUND_MESSAGE = "Transcription job not found or expired"
_FULL_NAMES = {"tiny.en": "Systran/faster-whisper-tiny.en"}


class ModelInfo(BaseModel):
    name: str
    full_name: str
    is_downloaded: bool
    size_mb: float | None
    description: str
    loaded: bool = Field(description="Whether this server runs it now (jobs can only use a loaded model).")


class ModelList(BaseModel):
    models: list[ModelInfo]


class JobForm(BaseModel):
    """multipart/form-data fields."""

    file: bytes = Field(description="the audio (WAV, MP3, M4A, FLAC, OGG, WebM; 8-48 kHz)")
    model_name: str = Field(default=BUNDLED_MODEL, description="one of GET /api/transcribe/models")
    language: str | None = Field(default=None, description="ISO 639-1 code; default: detected/configured")
    diarize: bool = Field(default=True, description="label speakers where the server can")
    key_terms: str | None = Field(default=None, description=(
        "names and jargon to spell as given: a JSON array or comma-separated (at most 100 terms of 50 characters);"
        " the model is steered towards them and near-misses are corrected"))
    split_channels: bool = Field(default=False, description="each channel is its own participant and speaker"
                                                            " (`channel-1`, ...)")
    channel_names: list[str] | None = Field(default=None, description="with split_channels: one repeated field per"
                                                                      " channel, in order (default `Channel 1`, ...)")


class JobCreated(BaseModel):
    job_id: str
    status: str
    message: str


class JobStatus(BaseModel):
    job_id: str
    status: str = Field(description="processing | completed | failed | not_found")
    message: str
    progress: float
    updated_at: float
    chunk_info: dict[str, Any] | None = None


class JobList(BaseModel):
    jobs: list[JobStatus]
    count: int


class ResultSegment(BaseModel):
    start: float
    end: float
    text: str
    speaker: str | None
    speaker_confidence: float | None
    start_display: str
    end_display: str


class JobResult(BaseModel):
    job_id: str
    segments: list[ResultSegment]
    text: str
    language: str | None
    audio_duration: float | None


class JobDebug(BaseModel):
    job_id: str
    transcript_status: str
    item: dict[str, Any]
    options: dict[str, Any]
    cached_segments: int
    latest_time: float
    progress: dict[str, Any] | None
    queue_position: int | None
    queued_total: int
    running: bool
    subscribers: int
