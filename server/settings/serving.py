"""The settings of the server itself: where it listens, logs and keeps its files, how long and how large an HTTP
request may be, and the API's own pages and workers; what every node has, whatever its role."""

from __future__ import annotations

from pathlib import Path

from server.settings.base import setting, settings_group

__all__ = ["ServingSettings"]


@settings_group
class ServingSettings:
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8000, "port to listen on", lo=0, hi=65535)
    data_dir: str = setting("./voxlane-data", "where the embedded database and audio files live")
    metrics_port: int = setting(0, "serve Prometheus /metrics on this port, without authentication (0: on the main"
        " port, needing a projects:admin token in private mode)", lo=0, hi=65535)
    log_format: str = setting("text", "text, or json: one JSON object a line, with the"
        " request_id of the request", ("text", "json"))
    log_level: str = setting("info", "log level", ("critical", "error", "warning", "info", "debug"))
    http_header_timeout: float = setting(15.0, "seconds a client has to send a request's headers once it"
        " starts one (slowloris)", lo=1, hi=3600)
    http_body_timeout: float = setting(60.0, "a request body that stops arriving for this long is abandoned and"
        " the connection closed", lo=1, hi=3600)
    max_upload_mb: int = setting(500, "largest accepted upload", lo=1, hi=100000)
    max_json_body_kb: int = setting(1024, "largest accepted JSON request body in KiB (413 beyond; audio uploads have"
        " VOXLANE_MAX_UPLOAD_MB)", lo=1, hi=1 << 20)
    max_audio_seconds: float = setting(14400.0, "longest recorded file (upload, transcription"
        " job, /v1/audio/transcriptions) that is transcribed; counted from the decoded audio,"
        " not the file's header", lo=1, hi=604800)
    max_chunk_seconds: float = setting(300.0, "longest kiosk chunk that is transcribed; counted"
        " from the decoded audio", lo=1, hi=86400)
    api_docs: str = setting("auto", "serve the interactive API docs at /docs"
        " (auto: in public mode only)", ("auto", "on", "off"))
    rest_workers: int = setting(2, "recorded files (uploads, jobs, kiosk chunks) a node that takes"
        " jobs transcribes at once", lo=1, hi=64)
    public_url: str | None = setting(None, "base URL clients reach this server at, for signed upload URLs"
        " (default: the request's own)")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()
