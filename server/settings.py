"""Settings from ``voxlane serve`` flags and ``VOXLANE_*`` variables, validated once at start.

Each field declares its environment name, so deployment scripts and the CLI agree
on one spelling; a bad value stops the server with one line naming the setting.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from server.settings_correction import CorrectionSettings, check_correction
from server.settings_limits import ClientLimitSettings
from server.settings_shared import PlatformSettings, SettingsError, _opt, check_shared_services

JWT_AUDIENCE_REQUIRED = ("VOXLANE_JWT_AUDIENCE is required when VOXLANE_JWT_PUBLIC_KEY is set: keys from an"
                         " identity provider also sign its tokens for other services, and only the 'aud' claim"
                         " tells which are meant for this one")


@dataclass
class Settings(CorrectionSettings, PlatformSettings, ClientLimitSettings):
    host: str = field(default="127.0.0.1", metadata=_opt("VOXLANE_HOST", "address to listen on"))
    port: int = field(default=8000, metadata=_opt("VOXLANE_PORT", "port to listen on", lo=0, hi=65535))
    data_dir: str = field(default="./voxlane-data", metadata=_opt(
        "VOXLANE_DATA_DIR", "where the embedded database and audio files live"))
    model: str = field(default="tiny.en", metadata=_opt(
        "VOXLANE_MODEL", "Whisper model: 'tiny.en' (bundled), a locally cached name, or a model directory"))
    asr_backend: str = field(default="faster-whisper", metadata=_opt(
        "VOXLANE_ASR_BACKEND", "speech recognizer: faster-whisper (the model runs here), riva (streams to an NVIDIA"
        " Riva server, VOXLANE_RIVA_*); synthetic writes one word per 0.3 s of speech without a model, to measure the"
        " server's plumbing (voxlane bench --queue), never for users", ("faster-whisper", "riva", "synthetic")))
    riva_uri: str = field(default="localhost:50051", metadata=_opt(
        "VOXLANE_RIVA_URI", "with VOXLANE_ASR_BACKEND=riva: the Riva server's gRPC address, host:port"))
    riva_ssl: str = field(default="off", metadata=_opt(
        "VOXLANE_RIVA_SSL", "TLS to the Riva server (on: the system's CA certificates, or VOXLANE_RIVA_SSL_ROOT_CERT)",
        ("on", "off")))
    riva_ssl_root_cert: str | None = field(default=None, metadata=_opt(
        "VOXLANE_RIVA_SSL_ROOT_CERT", "CA certificate file the Riva server's certificate is checked against (turns"
        " TLS on)"))
    riva_api_key: str | None = field(default=None, metadata=_opt(
        "VOXLANE_RIVA_API_KEY", "sent to the Riva server as 'authorization: Bearer <key>' (NVIDIA's hosted"
        " endpoints)", secret=True))
    riva_metadata: str | None = field(default=None, metadata=_opt(
        "VOXLANE_RIVA_METADATA", "more gRPC metadata for every call, key=value pairs separated by ';' (a hosted"
        " endpoint's function-id=...)", secret=True))
    riva_model: str = field(default="", metadata=_opt(
        "VOXLANE_RIVA_MODEL", "the Riva ASR model to use (default: the server's for the language)"))
    riva_language: str = field(default="en-US", metadata=_opt(
        "VOXLANE_RIVA_LANGUAGE", "language code sent to Riva when a stream names none"))
    riva_chunk_ms: int = field(default=100, metadata=_opt(
        "VOXLANE_RIVA_CHUNK_MS", "audio sent to Riva per request", lo=10, hi=2000))
    device: str = field(default="cpu", metadata=_opt("VOXLANE_DEVICE", "inference device", ("cpu", "cuda")))
    compute_type: str = field(default="int8", metadata=_opt(
        "VOXLANE_COMPUTE_TYPE", "CTranslate2 compute type",
        ("default", "auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16", "float16",
         "bfloat16", "float32")))
    cpu_threads: int = field(default=0, metadata=_opt(
        "VOXLANE_CPU_THREADS", "threads for CPU inference (0: all cores)", lo=0, hi=256))
    device_index: int = field(default=0, metadata=_opt("VOXLANE_DEVICE_INDEX", "GPU index", lo=0, hi=64))
    batch_size: int = field(default=0, metadata=_opt(
        "VOXLANE_BATCH_SIZE", "most decode requests run together by the inference loop (0: 1 on cpu, 8 on cuda)",
        lo=0, hi=256))
    parallel_decodes: int = field(default=0, metadata=_opt(
        "VOXLANE_PARALLEL_DECODES", "decodes the model runs at once (other streams', or a stream's pause commit"
        " beside its refresh), each with every CPU thread (0: 2 on cpu, 1 on cuda)", lo=0, hi=16))
    max_live_streams: int = field(default=0, metadata=_opt(
        "VOXLANE_MAX_LIVE_STREAMS", "most live audio streams at once, whatever the measured capacity (0: the"
        " measured capacity alone decides)", lo=0, hi=100000))
    latency_target_s: float = field(default=2.0, metadata=_opt(
        "VOXLANE_LATENCY_TARGET_S", "a new live stream is refused (OVERLOADED) when the inference loop's measured"
        " decode times say the admitted streams' commits would take longer than this", lo=0.01, hi=600))
    max_streams_per_token: int = field(default=32, metadata=_opt(
        "VOXLANE_MAX_STREAMS_PER_TOKEN", "most live streams one user or API key publishes at once (0: no limit)",
        lo=0, hi=100000))
    max_streams_per_address: int = field(default=32, metadata=_opt(
        "VOXLANE_MAX_STREAMS_PER_ADDRESS", "most live streams one client address publishes at once (0: no limit)",
        lo=0, hi=100000))
    max_webrtc_offers: int = field(default=16, metadata=_opt(
        "VOXLANE_MAX_WEBRTC_OFFERS", "WebRTC offers being negotiated at once; more are answered 503", lo=1,
        hi=10000))
    max_concurrent_uploads: int = field(default=8, metadata=_opt(
        "VOXLANE_MAX_CONCURRENT_UPLOADS", "audio uploads being received at once; more are answered 429 (0: no"
        " limit)", lo=0, hi=10000))
    metrics_port: int = field(default=0, metadata=_opt(
        "VOXLANE_METRICS_PORT", "serve Prometheus /metrics on this port, without authentication (0: on the main"
        " port, needing a projects:admin token in private mode)", lo=0, hi=65535))
    log_format: str = field(default="text", metadata=_opt(
        "VOXLANE_LOG_FORMAT", "text, or json: one JSON object a line, with the request_id of the request",
        ("text", "json")))
    beam_size: int = field(default=1, metadata=_opt("VOXLANE_BEAM_SIZE", "beam size for live decoding", lo=1, hi=16))
    hurried_pad_seconds: float = field(default=5.0, metadata=_opt(
        "VOXLANE_HURRIED_PAD_SECONDS", "while live streams wait for the model, a window is encoded with this much"
        " silence after it instead of as Whisper's full 30 s input (30: never)", lo=1, hi=30))
    language: str | None = field(default=None, metadata=_opt(
        "VOXLANE_LANGUAGE", "default spoken language (multilingual models)"))
    vad_threshold: float = field(default=0.35, metadata=_opt(
        "VOXLANE_VAD_THRESHOLD", "speech probability that starts speech", lo=0.05, hi=0.95))
    vad_min_silence_ms: int = field(default=800, metadata=_opt(
        "VOXLANE_VAD_MIN_SILENCE_MS", "a pause this long ends a segment", lo=100, hi=10000))
    pause_commit_ms: int = field(default=250, metadata=_opt(
        "VOXLANE_PAUSE_COMMIT_MS", "a pause this long makes the words before it final", lo=50, hi=5000))
    pause_settle_ms: int = field(default=350, metadata=_opt(
        "VOXLANE_PAUSE_SETTLE_MS", "a pause this long makes final even the words a pause commit left open (an"
        " unsure word, a stream's first short line), as the segment's final would read them", lo=50, hi=10000))
    pause_commit_confidence: float = field(default=0.5, metadata=_opt(
        "VOXLANE_PAUSE_COMMIT_CONFIDENCE", "a pause commit leaves a word this unsure (and not yet agreed on) to a"
        " later reading, a pause of VOXLANE_PAUSE_SETTLE_MS or the segment's final", lo=0, hi=1))
    min_step_ms: int = field(default=500, metadata=_opt(
        "VOXLANE_MIN_STEP_MS", "least new audio before a live hypothesis is refreshed", lo=100, hi=10000))
    first_step_ms: int = field(default=500, metadata=_opt(
        "VOXLANE_FIRST_STEP_MS", "least audio before a live segment's first reading (its first partial)",
        lo=100, hi=10000))
    window_seconds: float = field(default=20.0, metadata=_opt(
        "VOXLANE_WINDOW_SECONDS", "decode window beyond which committed audio is trimmed off", lo=2, hi=30))
    segment_close_seconds: float = field(default=6.0, metadata=_opt(
        "VOXLANE_SEGMENT_CLOSE_SECONDS", "a pause of VOXLANE_PAUSE_COMMIT_MS closes a segment this long once its"
        " words are final (at a sentence end it closes whatever its length; 0: sentence ends only)", lo=0, hi=120))
    sentence_split_seconds: float = field(default=0.0, metadata=_opt(
        "VOXLANE_SENTENCE_SPLIT_SECONDS", "a segment this long closes after a final word that ends a sentence even"
        " when the speaker goes on without a pause (abutting turns, crosstalk; 0: at every such sentence end;"
        " -1: only at a pause)", lo=-1, hi=120))
    max_segment_seconds: float = field(default=20.0, metadata=_opt(
        "VOXLANE_MAX_SEGMENT_SECONDS", "segments longer than this are split", lo=3, hi=120))
    diarization: str = field(default="on", metadata=_opt(
        "VOXLANE_DIARIZATION", "label speakers of mixed (non-participant) live streams and uploads", ("on", "off")))
    max_speakers: int = field(default=8, metadata=_opt(
        "VOXLANE_MAX_SPEAKERS", "most speakers diarization tells apart in one stream", lo=1, hi=64))
    speaker_threshold: float = field(default=0.3, metadata=_opt(
        "VOXLANE_SPEAKER_THRESHOLD", "cosine distance below which voice clusters merge (lower: more speakers)",
        lo=0.05, hi=0.9))
    ping_interval: float = field(default=15.0, metadata=_opt(
        "VOXLANE_PING_INTERVAL", "seconds between ping messages (0: off)", lo=0, hi=3600))
    idle_timeout: float = field(default=60.0, metadata=_opt(
        "VOXLANE_IDLE_TIMEOUT", "a WebSocket peer that answers no WebSocket ping for this long (a dead or"
        " half-open connection) is closed; pings go out every half of it", lo=2, hi=86400))
    publisher_idle_timeout: float = field(default=120.0, metadata=_opt(
        "VOXLANE_PUBLISHER_IDLE_TIMEOUT", "a started live stream that sends no audio for this long is finished as"
        " if it had sent 'stop' (finals stored); pause still sends audio (0: never)", lo=0, hi=86400))
    send_timeout: float = field(default=20.0, metadata=_opt(
        "VOXLANE_SEND_TIMEOUT", "a subscriber whose socket takes no message for this long (it stopped reading) is"
        " disconnected; its queue of pending messages is capped too", lo=1, hi=3600))
    http_header_timeout: float = field(default=15.0, metadata=_opt(
        "VOXLANE_HTTP_HEADER_TIMEOUT", "seconds a client has to send a request's headers once it starts one"
        " (slowloris)", lo=1, hi=3600))
    http_body_timeout: float = field(default=60.0, metadata=_opt(
        "VOXLANE_HTTP_BODY_TIMEOUT", "a request body that stops arriving for this long is abandoned and the"
        " connection closed", lo=1, hi=3600))
    status_interval: float = field(default=2.0, metadata=_opt(
        "VOXLANE_STATUS_INTERVAL", "seconds between status/lag reports while a stream is live (0: off)",
        lo=0, hi=3600))
    max_frame_kb: int = field(default=256, metadata=_opt(
        "VOXLANE_MAX_FRAME_KB", "largest binary audio frame a live WebSocket accepts, in KiB; a bigger one gets"
        " a MESSAGE_TOO_LARGE error and the stream goes on", lo=4, hi=8192))
    max_audio_lead_seconds: float = field(default=10.0, metadata=_opt(
        "VOXLANE_MAX_AUDIO_LEAD_SECONDS", "how far a live stream's audio may run ahead of the wall clock since it"
        " started: beyond it a WebSocket is not read until real time catches up, and WebRTC frames are"
        " dropped (0: no limit, for trusted clients that send recordings faster than real time)",
        lo=0, hi=86400))
    max_upload_mb: int = field(default=500, metadata=_opt(
        "VOXLANE_MAX_UPLOAD_MB", "largest accepted upload", lo=1, hi=100000))
    max_audio_seconds: float = field(default=14400.0, metadata=_opt(
        "VOXLANE_MAX_AUDIO_SECONDS", "longest recorded file (upload, transcription job, /v1/audio/transcriptions)"
        " that is transcribed; counted from the decoded audio, not the file's header", lo=1, hi=604800))
    max_chunk_seconds: float = field(default=300.0, metadata=_opt(
        "VOXLANE_MAX_CHUNK_SECONDS", "longest kiosk chunk that is transcribed; counted from the decoded audio",
        lo=1, hi=86400))
    database_url: str | None = field(default=None, metadata=_opt(
        "VOXLANE_DATABASE_URL", "sqlite:/path/file.db or postgresql://user:password@host/db (default: SQLite file"
        " in the data dir); the schema is migrated at start", secret=True))
    redis_url: str | None = field(default=None, metadata=_opt(
        "VOXLANE_REDIS_URL", "redis://host:6379/0 (or rediss://, unix:///path.sock): live messages reach the"
        " subscribers of every node through Redis Streams (default: in-process, one node)", secret=True))
    s3_bucket: str | None = field(default=None, metadata=_opt(
        "VOXLANE_S3_BUCKET", "S3-compatible bucket for every audio file (recordings, uploads, kiosk chunks), shared"
        " by the nodes; kiosks PUT chunks straight to it (default: files under the data dir)"))
    s3_endpoint_url: str | None = field(default=None, metadata=_opt(
        "VOXLANE_S3_ENDPOINT_URL", "the store's S3 API endpoint as this server reaches it, http(s)://host[:port]"
        " (MinIO, Ceph, R2, ...; default: AWS S3 for the region)"))
    s3_public_endpoint_url: str | None = field(default=None, metadata=_opt(
        "VOXLANE_S3_PUBLIC_ENDPOINT_URL", "the endpoint written into presigned upload URLs handed to clients, when"
        " they reach the store at another address than this server does (default: VOXLANE_S3_ENDPOINT_URL)"))
    s3_region: str | None = field(default=None, metadata=_opt(
        "VOXLANE_S3_REGION", "the bucket's region (default: the AWS SDK's configuration, else us-east-1)"))
    s3_prefix: str = field(default="", metadata=_opt(
        "VOXLANE_S3_PREFIX", "key prefix of voxlane's objects in the bucket, e.g. voxlane/ (default: none)"))
    s3_access_key_id: str | None = field(default=None, metadata=_opt(
        "VOXLANE_S3_ACCESS_KEY_ID", "access key id for the bucket (default: the AWS SDK's usual credential chain:"
        " AWS_* variables, shared config files, instance or task roles)"))
    s3_secret_access_key: str | None = field(default=None, metadata=_opt(
        "VOXLANE_S3_SECRET_ACCESS_KEY", "secret access key for VOXLANE_S3_ACCESS_KEY_ID", secret=True))
    live_lease_seconds: float = field(default=10.0, metadata=_opt(
        "VOXLANE_LIVE_LEASE_SECONDS", "with Redis: how long a node's hold on the transcripts it streams lasts"
        " unrenewed; a transcript whose node died is finished by another node this long after it died (plus a"
        " one-second sweep)", lo=2, hi=600))
    auth_mode: str = field(default="public", metadata=_opt(
        "VOXLANE_AUTH_MODE", "public: no token needed; private: bearer tokens", ("public", "private")))
    jwt_secret: str | None = field(default=None, metadata=_opt(
        "VOXLANE_JWT_SECRET", "HS256 secret for bearer tokens", secret=True))
    jwt_public_key: str | None = field(default=None, metadata=_opt(
        "VOXLANE_JWT_PUBLIC_KEY", "RS256/ES256 verification key: a PEM, a PEM file or a JWKS JSON file"))
    jwt_audience: str | None = field(default=None, metadata=_opt(
        "VOXLANE_JWT_AUDIENCE", "required 'aud' claim of bearer JWTs (default: not checked)"))
    jwt_issuer: str | None = field(default=None, metadata=_opt(
        "VOXLANE_JWT_ISSUER", "required 'iss' claim of bearer JWTs (default: not checked)"))
    jwt_max_lifetime: int = field(default=86400, metadata=_opt(
        "VOXLANE_JWT_MAX_LIFETIME", "longest lifetime (exp - iat, or exp - now without iat) in seconds a bearer"
        " JWT may have; every JWT must carry 'exp'", lo=60, hi=30 * 86400))
    api_docs: str = field(default="auto", metadata=_opt(
        "VOXLANE_API_DOCS", "serve the interactive API docs at /docs (auto: in public mode only)",
        ("auto", "on", "off")))
    rest_workers: int = field(default=2, metadata=_opt(
        "VOXLANE_REST_WORKERS", "recorded files (uploads, jobs, kiosk chunks) a node that takes jobs transcribes at"
        " once", lo=1, hi=64))
    jobs: str = field(default="on", metadata=_opt(
        "VOXLANE_JOBS", "whether 'voxlane serve' also takes jobs (transcribing recorded files, merges, summaries,"
        " webhooks) besides the API and live streams; off: an API node, with 'voxlane worker' nodes taking them",
        ("on", "off")))
    live: str = field(default="on", metadata=_opt(
        "VOXLANE_LIVE", "whether 'voxlane serve' takes live audio (WebSocket, WebRTC, Realtime) and answers the"
        " routes that transcribe while the caller waits; off, with VOXLANE_JOBS=off, the node loads no model",
        ("on", "off")))
    event_workers: int = field(default=8, metadata=_opt(
        "VOXLANE_EVENT_WORKERS", "merges, summaries and webhook deliveries a node that takes jobs runs at once"
        " (a lane of their own: a long transcription never holds them up)", lo=1, hi=256))
    job_max_attempts: int = field(default=3, metadata=_opt(
        "VOXLANE_JOB_MAX_ATTEMPTS", "attempts a job gets (an error, or a node that died running it, uses one)"
        " before it is given up and its transcript or chunk marked failed", lo=1, hi=100))
    job_lease_seconds: float = field(default=10.0, metadata=_opt(
        "VOXLANE_JOB_LEASE_SECONDS", "PostgreSQL job queue: a node whose heartbeat (every fifth of this) stops for"
        " this long is dead, and its running jobs run again elsewhere", lo=2, hi=3600))
    job_stall_seconds: float = field(default=900.0, metadata=_opt(
        "VOXLANE_JOB_STALL_SECONDS", "a running job that shows no progress for this long (a hung decode or read on"
        " a node that is otherwise alive) is cancelled and counted as a failed attempt", lo=5, hi=86400))
    upload_url_ttl: int = field(default=900, metadata=_opt(
        "VOXLANE_UPLOAD_URL_TTL", "seconds a signed kiosk chunk upload URL stays valid", lo=10, hi=7 * 86400))
    upload_url_rate: int = field(default=40, metadata=_opt(
        "VOXLANE_UPLOAD_URL_RATE", "get-upload-url requests allowed per minute per conversation", lo=1, hi=100000))
    max_json_body_kb: int = field(default=1024, metadata=_opt(
        "VOXLANE_MAX_JSON_BODY_KB", "largest accepted JSON request body in KiB (413 beyond; audio uploads have"
        " VOXLANE_MAX_UPLOAD_MB)", lo=1, hi=1 << 20))
    rate_per_address: int = field(default=600, metadata=_opt(
        "VOXLANE_RATE_PER_ADDRESS", "participant API requests allowed per minute per client address (the"
        " connection's peer; behind a proxy, as uvicorn's --forwarded-allow-ips resolves it)", lo=1, hi=1000000))
    rate_per_project: int = field(default=1200, metadata=_opt(
        "VOXLANE_RATE_PER_PROJECT", "conversation starts and get-upload-url requests allowed per minute per"
        " project, whatever the conversation", lo=1, hi=1000000))
    max_open_conversations: int = field(default=1000, metadata=_opt(
        "VOXLANE_MAX_OPEN_CONVERSATIONS", "unfinished conversations a project may have (those active in the last"
        " 24 h); starting one more answers 429", lo=1, hi=10000000))
    public_url: str | None = field(default=None, metadata=_opt(
        "VOXLANE_PUBLIC_URL", "base URL clients reach this server at, for signed upload URLs (default: the"
        " request's own)"))
    webhook_retry_base: float = field(default=10.0, metadata=_opt(
        "VOXLANE_WEBHOOK_RETRY_BASE", "seconds before a failed webhook delivery is retried; doubles per attempt",
        lo=0.05, hi=3600))
    webhook_max_attempts: int = field(default=10, metadata=_opt(
        "VOXLANE_WEBHOOK_MAX_ATTEMPTS", "attempts before a webhook delivery is marked failed", lo=1, hi=100))
    webhook_timeout: float = field(default=10.0, metadata=_opt(
        "VOXLANE_WEBHOOK_TIMEOUT", "seconds a webhook receiver has to answer one delivery", lo=0.5, hi=300))
    outbound_allowlist: str = field(default="", metadata=_opt(
        "VOXLANE_OUTBOUND_ALLOWLIST", "comma-separated CIDRs and/or host names that webhooks (and other URLs the"
        " server calls for a user) may reach although they are internal (loopback, private, link-local, ...)"))
    ice_hosts: str = field(default="", metadata=_opt(
        "VOXLANE_ICE_HOSTS", "comma-separated local addresses to gather WebRTC candidates on (default: all)"))
    ice_servers: str = field(default="", metadata=_opt(
        "VOXLANE_ICE_SERVERS", "comma-separated stun:/turn: URLs (turn:user:pass@host:port)"))
    llm_url: str | None = field(default=None, metadata=_opt(
        "VOXLANE_LLM_URL", "OpenAI-compatible chat endpoint for summaries and chat, e.g. http://host:port/v1"
        " (default: offline extractive summaries, no chat)"))
    llm_model: str | None = field(default=None, metadata=_opt(
        "VOXLANE_LLM_MODEL", "model name sent to VOXLANE_LLM_URL"))
    llm_api_key: str | None = field(default=None, metadata=_opt(
        "VOXLANE_LLM_API_KEY", "bearer key for VOXLANE_LLM_URL", secret=True))
    llm_timeout: float = field(default=120.0, metadata=_opt(
        "VOXLANE_LLM_TIMEOUT", "seconds to wait for one chat completion", lo=1, hi=3600))
    retranslate_models: str = field(default="", metadata=_opt(
        "VOXLANE_RETRANSLATE_MODELS", "comma-separated extra local models (names or directories)"
        " /api/retranslate may load on first use, besides the server's own and the bundled one"))
    log_level: str = field(default="info", metadata=_opt(
        "VOXLANE_LOG_LEVEL", "log level", ("critical", "error", "warning", "info", "debug")))

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_sources(cls, args: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Settings:
        """Flags win over environment variables, which win over defaults."""
        environ: Mapping[str, str] = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = (args or {}).get(f.name)
            source = f"--{f.name.replace('_', '-')}"
            if raw is None and f.metadata["env"] in environ:
                raw, source = environ[f.metadata["env"]], f.metadata["env"]
            if raw is None:
                continue
            values[f.name] = _convert(f, raw, source)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        for f in fields(self):
            _check(f, getattr(self, f.name), f.metadata["env"])
        if self.auth_mode == "private" and not (self.jwt_secret or self.jwt_public_key):
            raise SettingsError("VOXLANE_JWT_SECRET (or VOXLANE_JWT_PUBLIC_KEY) is required when"
                                " VOXLANE_AUTH_MODE=private")
        if self.jwt_public_key and not self.jwt_audience:
            raise SettingsError(JWT_AUDIENCE_REQUIRED)
        if self.outbound_allowlist:
            from server.http.outbound import parse_allowlist  # here: settings must not import httpx at load

            try:
                parse_allowlist(self.outbound_allowlist)
            except ValueError as exc:
                raise SettingsError(f"VOXLANE_OUTBOUND_ALLOWLIST: {exc}") from None
        if self.device == "cpu" and self.compute_type in ("float16", "int8_float16", "bfloat16", "int8_bfloat16"):
            raise SettingsError(f"VOXLANE_COMPUTE_TYPE={self.compute_type!r} needs a GPU; on cpu use int8 or float32")
        if self.riva_metadata:
            riva_metadata_pairs(self.riva_metadata)
        if self.llm_url and not self.llm_url.startswith(("http://", "https://")):
            raise SettingsError("VOXLANE_LLM_URL must start with http:// or https://")
        check_shared_services(self)  # database, Redis, S3
        check_correction(self)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def effective_batch_size(self) -> int:
        """On a CPU a batch of four costs three single decodes, and an urgent decode that arrives while
        it runs waits for all four (N=4 bench: commit p50 1.41 s batched, 1.03 s one at a time); an H100
        ran eight 5 s windows of tiny.en in 0.10 s, 13 ms each against 21-31 ms alone."""
        return self.batch_size or (8 if self.device == "cuda" else 1)

    @property
    def effective_parallel_decodes(self) -> int:
        """CTranslate2 keeps only part of two CPU cores busy in one decode (much of a decoder step is too
        small to split across threads), so two streams' decodes at once finish sooner than one after the
        other: on 2 cores, eight 6.4 s windows took 0.58-0.64 s each two at a time against 0.88-1.06 s one
        at a time, and a decode alone takes as long as before. A GPU gets its throughput from batches."""
        return self.parallel_decodes or (1 if self.device == "cuda" else 2)

    @property
    def effective_cpu_threads(self) -> int:
        return self.cpu_threads or (os.cpu_count() or 1)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        for f in fields(Settings):
            m = f.metadata
            extra = f" (one of {', '.join(m['choices'])})" if m["choices"] else ""
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None,
                                help=f"{m['help']}{extra}; env {m['env']}")


def _convert(f, raw: Any, source: str) -> Any:
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{source}={raw!r}: expected a number ({kind.split(' ')[0]})") from None
    if isinstance(raw, str):
        raw = raw.strip()
        if raw == "" and "None" in kind:
            return None
    return raw


def _check(f, value: Any, name: str) -> None:
    m = f.metadata
    if value is None:
        return
    if m["choices"] and value not in m["choices"]:
        raise SettingsError(f"{name}={value!r}: expected one of {', '.join(m['choices'])}")
    if m["lo"] is not None and value < m["lo"] or m["hi"] is not None and value > m["hi"]:
        raise SettingsError(f"{name}={value!r}: must be between {m['lo']:g} and {m['hi']:g}")


def riva_metadata_pairs(raw: str) -> tuple[tuple[str, str], ...]:
    """``VOXLANE_RIVA_METADATA``: ``key=value;key=value`` (gRPC metadata keys are lower case)."""
    pairs = []
    for item in raw.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"VOXLANE_RIVA_METADATA: {item.strip()!r} is not key=value")
        pairs.append((key.strip().lower(), value.strip()))
    return tuple(pairs)
