"""``voxlane bench --decode-costs``: what one decode takes on this machine, by window length and batch size.

How many live streams a machine carries, and the ``--decode-cost`` a replay should charge, come down to these
figures: a CPU decodes a batch in about the sum of its windows, an H100 eight tiny.en windows in three to five
single decodes' time. The backend is the one the server's settings make (``VOXLANE_DEVICE``,
``VOXLANE_COMPUTE_TYPE``, ``VOXLANE_MODEL``...), warmed and with its BLAS threads set as the server does; each
figure is the median of ``--repeats`` calls on real speech from the corpus with a prompt, hurried (the window and a
pad of silence encoded, as when other streams wait) and in full.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from asr.backends import AsrBackend, BackendConfig, DecodeRequest
from media import SAMPLE_RATE
from media.audio import faint_noise

SPEECH = "single/ljspeech_LJ001-0001_0016.wav"  # 113 s of one reader: every window is dense speech
PROMPT = "Printing, in the only sense with which we are at present concerned, differs from most if not from all"


def windows_of(speech: np.ndarray, seconds: float, count: int) -> list[np.ndarray]:
    """``count`` windows of ``seconds``, 3 s apart (wrapping round the file): a batch of different speech."""
    size = int(seconds * SAMPLE_RATE)
    room = max(1, len(speech) - size)
    return [speech[(i * 3 * SAMPLE_RATE) % room:][:size].copy() for i in range(count)]


def measure(backend: AsrBackend, speech: np.ndarray, windows_s: list[float], batches: list[int],
            repeats: int) -> list[dict[str, Any]]:
    rows = []
    for hurried in (True, False):
        for seconds in windows_s:
            for batch in batches:
                reqs = [DecodeRequest(w, prompt=PROMPT, language="en", hurried=hurried)
                        for w in windows_of(speech, seconds, batch)]
                backend.transcribe(reqs)  # a shape new to the backend may load kernels on its first call
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    backend.transcribe(reqs)
                    times.append(time.perf_counter() - t0)
                median = statistics.median(times)
                rows.append({"hurried": hurried, "window_s": seconds, "batch": batch, "median_s": round(median, 4),
                             "min_s": round(min(times), 4), "per_window_s": round(median / batch, 4)})
    return rows


def replay_cost(rows: list[dict[str, Any]]) -> tuple[float, float] | None:
    """The replay's ``FIXED,PER_SECOND``: a least-squares line through the single full decodes' times (a hurried
    decode is charged its share of the fixed cost by the replay itself). None without two window lengths."""
    points = sorted((r["window_s"], r["median_s"]) for r in rows if not r["hurried"] and r["batch"] == 1)
    if len({x for x, _ in points}) < 2:
        return None
    slope, intercept = np.polyfit([x for x, _ in points], [y for _, y in points], 1)
    return round(max(0.0, float(intercept)), 3), round(max(0.0, float(slope)), 4)


def run_decode_costs(args: argparse.Namespace, audio_dir: Path) -> dict[str, Any]:
    from server.native_threads import limit_blas_threads
    from server.pipeline.configs import backend_config
    from server.settings import Settings

    config = backend_config(Settings.from_sources())
    windows_s = [float(x) for x in args.windows.split(",") if x.strip()]
    batches = [int(x) for x in args.batches.split(",") if x.strip()]
    repeats = max(1, args.repeats)
    if args.shape:
        from asr.backends.model_files import BUNDLED_MODEL, resolve_model

        limit_blas_threads()  # as the server runs (CTranslate2 is loaded: asr.backends imports it)
        result = time_shape(args.shape, windows_s, batches, repeats, Path(resolve_model(BUNDLED_MODEL)),
                            args.tokens_per_second, device=config.device, device_index=config.device_index,
                            compute_type=config.compute_type, cpu_threads=config.cpu_threads,
                            batch_size=max(batches), hurried_pad_s=config.hurried_pad_s)
        model, lanes = f"{args.shape} (random weights, {args.tokens_per_second:g} tokens a second)", 1
    else:
        result = time_backend(config, audio_dir / (args.files[0] if args.files else SPEECH), windows_s, batches,
                              repeats)
        model, lanes = config.model, config.lanes
    cost = replay_cost(result["rows"])
    return {"decode_costs": True, "label": args.label, "started": time.time(), "cpu_count": os.cpu_count(),
            "model": model, "device": config.device, "compute_type": config.compute_type,
            "cpu_threads": config.cpu_threads, "lanes": lanes, **result,
            "replay_decode_cost": list(cost) if cost else None}


def time_backend(config: BackendConfig, speech_file: Path, windows_s: list[float], batches: list[int],
                 repeats: int) -> dict[str, Any]:
    """The backend ``config`` makes, loaded and warmed as the server does, timed on ``speech_file``."""
    from asr.backends import make_backend
    from server.cli.live_client import load_pcm16k
    from server.native_threads import limit_blas_threads

    t0 = time.perf_counter()
    backend = make_backend(config)
    loaded = time.perf_counter() - t0
    limit_blas_threads()  # as the server runs
    try:
        rows = measure(backend, load_pcm16k(speech_file), windows_s, batches, repeats)
    finally:
        backend.close()
    return {"load_and_warm_s": round(loaded, 2), "rows": rows}


def time_shape(name: str, windows_s: list[float], batches: list[int], repeats: int, tokens_from: Path,
               tokens_per_second: float = 5.0, **backend: Any) -> dict[str, Any]:
    """``--decode-costs`` for the model shape ``name``: written with random weights to a temporary folder, loaded
    as a fixed-length backend (:mod:`bench.model_shapes`) with ``backend``'s arguments (device, compute
    type, threads...), and timed as :func:`measure` times a real one, on quiet noise (random weights make any audio
    noise)."""
    from bench.model_shapes import SHAPES, FixedLengthBackend, write_random_whisper

    with tempfile.TemporaryDirectory(prefix=f"voxlane-{name}-") as folder:
        t0 = time.perf_counter()
        path = write_random_whisper(SHAPES[name], Path(folder) / name, tokens_from)
        written = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = FixedLengthBackend(str(path), tokens_per_second=tokens_per_second, **backend)
        loaded = time.perf_counter() - t0
        try:
            rows = measure(model, faint_noise(max(windows_s) + 3 * max(batches)), windows_s, batches, repeats)
        finally:
            model.close()
    return {"shape": name, "shape_sizes": vars(SHAPES[name]), "tokens_per_second": tokens_per_second,
            "written_s": round(written, 2), "load_and_warm_s": round(loaded, 2), "rows": rows}


def cost_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per reading and window length, one column per batch size: seconds per call (median)."""
    rows = result["rows"]
    batches = sorted({r["batch"] for r in rows})
    cols = ["reading", "window s", *(f"batch {b} s" for b in batches)]
    table = []
    for hurried in (True, False):
        for seconds in sorted({r["window_s"] for r in rows}):
            by_batch = {r["batch"]: r["median_s"] for r in rows if r["hurried"] == hurried and r["window_s"] == seconds}
            if by_batch:
                table.append(["hurried" if hurried else "full", f"{seconds:g}",
                              *(f"{by_batch[b]:.3f}" if b in by_batch else "-" for b in batches)])
    return cols, table
