"""The settings of the server itself: where it listens, logs and keeps its files, how long and how large an HTTP
request may be, and the API's own pages and workers; what every node has, whatever its role."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from server.settings.base import setting

__all__ = ["ServingSettings"]


@dataclass
class ServingSettings:
    host: str = field(default="127.0.0.1", metadata=setting("VOXLANE_HOST", "address to listen on"))
    port: int = field(default=8000, metadata=setting("VOXLANE_PORT", "port to listen on", lo=0, hi=65535))
    data_dir: str = field(default="./voxlane-data", metadata=setting(
        "VOXLANE_DATA_DIR", "where the embedded database and audio files live"))
    metrics_port: int = field(default=0, metadata=setting(
        "VOXLANE_METRICS_PORT", "serve Prometheus /metrics on this port, without authentication (0: on the main"
        " port, needing a projects:admin token in private mode)", lo=0, hi=65535))
    log_format: str = field(default="text", metadata=setting(
        "VOXLANE_LOG_FORMAT", "text, or json: one JSON object a line, with the request_id of the request",
        ("text", "json")))
    log_level: str = field(default="info", metadata=setting(
        "VOXLANE_LOG_LEVEL", "log level", ("critical", "error", "warning", "info", "debug")))
    http_header_timeout: float = field(default=15.0, metadata=setting(
        "VOXLANE_HTTP_HEADER_TIMEOUT", "seconds a client has to send a request's headers once it starts one"
        " (slowloris)", lo=1, hi=3600))
    http_body_timeout: float = field(default=60.0, metadata=setting(
        "VOXLANE_HTTP_BODY_TIMEOUT", "a request body that stops arriving for this long is abandoned and the"
        " connection closed", lo=1, hi=3600))
    max_upload_mb: int = field(default=500, metadata=setting(
        "VOXLANE_MAX_UPLOAD_MB", "largest accepted upload", lo=1, hi=100000))
    max_json_body_kb: int = field(default=1024, metadata=setting(
        "VOXLANE_MAX_JSON_BODY_KB", "largest accepted JSON request body in KiB (413 beyond; audio uploads have"
        " VOXLANE_MAX_UPLOAD_MB)", lo=1, hi=1 << 20))
    max_audio_seconds: float = field(default=14400.0, metadata=setting(
        "VOXLANE_MAX_AUDIO_SECONDS", "longest recorded file (upload, transcription job, /v1/audio/transcriptions)"
        " that is transcribed; counted from the decoded audio, not the file's header", lo=1, hi=604800))
    max_chunk_seconds: float = field(default=300.0, metadata=setting(
        "VOXLANE_MAX_CHUNK_SECONDS", "longest kiosk chunk that is transcribed; counted from the decoded audio",
        lo=1, hi=86400))
    api_docs: str = field(default="auto", metadata=setting(
        "VOXLANE_API_DOCS", "serve the interactive API docs at /docs (auto: in public mode only)",
        ("auto", "on", "off")))
    rest_workers: int = field(default=2, metadata=setting(
        "VOXLANE_REST_WORKERS", "recorded files (uploads, jobs, kiosk chunks) a node that takes jobs transcribes at"
        " once", lo=1, hi=64))
    public_url: str | None = field(default=None, metadata=setting(
        "VOXLANE_PUBLIC_URL", "base URL clients reach this server at, for signed upload URLs (default: the"
        " request's own)"))

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()
