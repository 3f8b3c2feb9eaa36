"""The settings of speech recognition: which model or Riva server, on which device, and how the inference loop
spends it (batches, parallel decodes, threads), with the defaults each device gets when left at 0."""

from __future__ import annotations

import os

from server.settings.base import SettingsError, setting, settings_group

__all__ = ["InferenceSettings", "check_inference", "riva_metadata_pairs"]


@settings_group
class InferenceSettings:
    model: str = setting("tiny.en", "Whisper model: 'tiny.en' (bundled), a locally cached name, or a model directory")
    asr_backend: str = setting("faster-whisper", "speech recognizer: faster-whisper (the model runs here), riva"
        " (streams to an NVIDIA Riva server, VOXLANE_RIVA_*); synthetic writes one word per 0.3 s of speech without"
        " a model, to measure the server's plumbing (voxlane bench"
        " --queue), never for users", ("faster-whisper", "riva", "synthetic"))
    synthetic_rtf: float = setting(0.0, "with VOXLANE_ASR_BACKEND=synthetic: seconds each decode takes per second of"
        " its audio, spent waiting, not computing (0: at once); stands for a model's pace, as a job that is still"
        " running when its node is killed", lo=0, hi=10)
    riva_uri: str = setting("localhost:50051", "with VOXLANE_ASR_BACKEND=riva: the Riva server's"
        " gRPC address, host:port")
    riva_ssl: str = setting("off", "TLS to the Riva server (on: the system's CA certificates, or"
        " VOXLANE_RIVA_SSL_ROOT_CERT)", ("on", "off"))
    riva_ssl_root_cert: str | None = setting(None, "CA certificate file the Riva server's certificate is checked"
        " against (turns TLS on)")
    riva_api_key: str | None = setting(None, "sent to the Riva server as 'authorization: Bearer <key>'"
        " (NVIDIA's hosted endpoints)", secret=True)
    riva_metadata: str | None = setting(None, "more gRPC metadata for every call, key=value pairs separated by ';' (a"
        " hosted endpoint's function-id=...)", secret=True)
    riva_model: str = setting("", "the Riva ASR model to use (default: the server's for the language)")
    riva_language: str = setting("en-US", "language code sent to Riva when a stream names none")
    riva_chunk_ms: int = setting(100, "audio sent to Riva per request", lo=10, hi=2000)
    device: str = setting("cpu", "inference device", ("cpu", "cuda"))
    compute_type: str = setting("int8", "CTranslate2 compute type",
        ("default", "auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16", "float16",
         "bfloat16", "float32"))
    cpu_threads: int = setting(0, "threads for CPU inference (0: all cores)", lo=0, hi=256)
    device_index: int = setting(0, "GPU index", lo=0, hi=64)
    batch_size: int = setting(0, "most decode requests run together by the inference loop"
        " (0: 1 on cpu, 8 on cuda)", lo=0, hi=256)
    parallel_decodes: int = setting(0, "decodes the model runs at once (other streams', or a stream's pause commit"
        " beside its refresh), each with every CPU thread (0: 2 on cpu, 1 on cuda)", lo=0, hi=16)
    ingest_threads: int = setting(0, "threads that take every live stream's audio in (decoding, recording, VAD), many"
        " streams a pass (0: one per 8 cores, at least one)", lo=0, hi=64)
    calibration_seconds: float = setting(0.0, "what a batch of live refreshes costs this node's lanes, as its log"
        " says at start ('calibration: ... took', the fastest round): set, a node starts without timing them"
        " (seconds on a CPU) and sizes its first burst of streams on it, not on how busy the machine was at that"
        " moment; for a fleet of like nodes (0: timed at every start)", lo=0, hi=60)
    beam_size: int = setting(1, "beam size for live decoding", lo=1, hi=16)
    hurried_pad_seconds: float = setting(5.0, "while live streams wait for the model, a window is encoded with this"
        " much silence after it instead of as Whisper's full 30 s input (30: never)", lo=1, hi=30)
    language: str | None = setting(None, "default spoken language (multilingual models)")

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
    def effective_ingest_threads(self) -> int:
        """One thread takes sixteen streams in on 2 cores for a few per cent of a core; more cores, more streams."""
        return self.ingest_threads or max(1, (os.cpu_count() or 1) // 8)

    @property
    def effective_cpu_threads(self) -> int:
        return self.cpu_threads or (os.cpu_count() or 1)


def check_inference(settings: InferenceSettings) -> None:
    """Raises ``SettingsError`` naming the setting that is wrong."""
    if settings.device == "cpu" and settings.compute_type in ("float16", "int8_float16", "bfloat16", "int8_bfloat16"):
        raise SettingsError(f"VOXLANE_COMPUTE_TYPE={settings.compute_type!r} needs a GPU; on cpu use int8 or float32")
    if settings.riva_metadata:
        riva_metadata_pairs(settings.riva_metadata)


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
