"""``voxlane bench``: stream N real-speech files at once, at real-time pace, to a running server.

Prints one row per N and writes every figure as JSON, so a user learns what their
machine sustains and a change can be compared with the last run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import SHARED_AUDIO
from bench.metrics import admission_figures, fmt, level_figures, wer_counts
from bench.process import ProcessSampler, find_server_pid
from server.cli.live_client import load_pcm16k, stream_audio

DEFAULT_AUDIO = SHARED_AUDIO
DEFAULT_URL = "http://127.0.0.1:8000"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from bench.capacity import add_arguments as capacity_arguments
    from bench.faults import add_arguments as fault_arguments
    from bench.overload import add_arguments as overload_arguments
    from bench.queue import add_arguments as queue_arguments
    from bench.soak import add_arguments as soak_arguments

    p.add_argument("--url", default=None, help=f"server base URL (default {DEFAULT_URL}; --flood without it starts"
                                                " a server of its own)")
    p.add_argument("--audio-dir", default=str(DEFAULT_AUDIO), help="folder with references.json")
    p.add_argument("--files", nargs="*", help="files relative to the audio dir (default: every single/ file)")
    p.add_argument("-n", "--concurrency", default="1,4", help="comma-separated stream counts, e.g. 1,2,4")
    p.add_argument("--limit", type=int, default=0, help="use at most this many files per N (0: all)")
    p.add_argument("--max-seconds", type=float, default=0, help="cut each file to this length (0: whole)")
    p.add_argument("--chunk-ms", type=int, default=100)
    p.add_argument("--token", default=os.environ.get("VOXLANE_TOKEN"))
    p.add_argument("--server-pid", type=int, default=0, help="sample this process' CPU and RSS (default: by port)")
    p.add_argument("--offline", action="store_true", help="also transcribe the files offline with the bundled model")
    p.add_argument("--output", default="bench-results/bench.json")
    p.add_argument("--label", default="", help="free text stored in the JSON")
    p.add_argument("--diarization", default="", metavar="on,off",
                   help="run every N with speaker diarization on and/or off (per-stream 'start' option), to see"
                        " its cost (default: the server's setting)")
    p.add_argument("--der", action="store_true",
                   help="instead: stream the multi-speaker files and score diarization (DER) against their RTTMs;"
                        " with --replay, no server: their speaker labels on the audio clock")
    p.add_argument("--der-concurrency", type=int, default=2, help="multi-speaker files streamed at once")
    p.add_argument("--replay", action="store_true",
                   help="no server: run the live pipeline in this process on a simulated clock, every window decoded"
                        " by the real model but taking --decode-cost seconds; reproducible to the word, for"
                        " comparing settings (VOXLANE_* variables and --set apply)")
    p.add_argument("--decode-cost", default="0.3,0.015", metavar="FIXED,PER_SECOND",
                   help="replay: modelled seconds per decode, plus per second of window (default: a 2-core CPU)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="replay: override a stream setting (asr.session.StreamConfig field), e.g. settle_s=2")
    p.add_argument("--with-upload", default="", metavar="SECONDS|FILE",
                   help="upload this much real speech (or this file) while each level runs, to see its cost")
    p.add_argument("--decode-costs", action="store_true",
                   help="no server: time the backend the settings make, by window length and batch size")
    p.add_argument("--windows", default="2,5,10,20", help="decode costs: window lengths in seconds")
    p.add_argument("--batches", default="1,4,8", help="decode costs: batch sizes")
    p.add_argument("--repeats", type=int, default=3, help="decode costs: timed calls per figure (the median)")
    p.add_argument("--shape", default="", choices=["", "tiny", "small", "large-v3", "large-v3-turbo",
                                                   "distil-large-v3"],
                   help="decode costs: time a model of this shape with random weights (written by CTranslate2's"
                        " spec API, nothing downloaded) generating --tokens-per-second, instead of VOXLANE_MODEL")
    p.add_argument("--tokens-per-second", type=float, default=5.0,
                   help="decode costs with --shape: tokens generated per second of window (random text has no end)")
    p.add_argument("--hostile", action="store_true",
                   help="instead: one client sends hostile frames and bodies while another times /health (p50/p99)")
    p.add_argument("--duration-s", type=float, default=20, help="hostile: seconds of attack")
    p.add_argument("--quiet-s", type=float, default=3, help="hostile, flood: seconds of /health timing first")
    p.add_argument("--frame-mb", type=float, default=8, help="hostile: size of the huge WebSocket frames")
    p.add_argument("--flood", action="store_true",
                   help="instead: one family of floods after another on the live doors (Realtime JSON, appends and"
                        " session bursts, native and Deepgram WebSocket frames and bad control messages) while a"
                        " steady poller times /health (p50/p99 per family)")
    p.add_argument("--flood-s", type=float, default=5, help="flood: seconds each family runs")
    p.add_argument("--families", default="", help="flood: comma-separated families to run (default: all)")
    p.add_argument("--frame-kb", type=int, default=256, help="flood: binary frame size (the server's"
                                                              " VOXLANE_MAX_FRAME_KB)")
    capacity_arguments(p)
    overload_arguments(p)
    soak_arguments(p)
    p.add_argument("--fanout", action="store_true",
                   help="instead: two nodes on one Redis; stream one file (--files, default a sonnet) to --url and"
                        " time its finals, word commits and messages reaching a subscriber on --url-b against one"
                        " on --url (the B hop)")
    p.add_argument("--url-b", default=None, help="fanout: node B's base URL (same Redis as --url)")
    p.add_argument("--speech-events", dest="speech_events", action="store_true",
                   help="instead: stream the files in real time over the OpenAI Realtime route and time"
                        " speech_started/speech_stopped against their reference utterances (RTTM)")
    p.add_argument("--turn-gap", dest="turn_gap", type=float, default=1.5,
                   help="speech-events: seconds of silence put between a file's reference utterances (0: stream"
                        " it as recorded)")
    p.add_argument("--key-terms", dest="key_terms", action="store_true",
                   help="instead, no server: transcribe the files with the file pipeline without key terms, with"
                        " each file's own (from its reference) and with all of them; WER and key-term hit rate")
    queue_arguments(p)
    fault_arguments(p)


async def run_level(args: argparse.Namespace, n: int, files: list[str], refs: dict[str, Any],
                    audio: dict[str, Any], pid: int | None, diarization: bool | None = None) -> dict[str, Any]:
    # every file is streamed once; N slots stay busy until the list runs out (files repeat when N > files)
    chosen = files if n <= len(files) else [files[i % len(files)] for i in range(n)]
    queue = list(enumerate(chosen))
    records: list[Any] = [None] * len(chosen)

    async def slot() -> None:
        while queue:
            i, f = queue.pop(0)
            records[i] = await stream_audio(args.url, audio[f], name=f"bench N={n} {Path(f).stem}",
                                            chunk_ms=args.chunk_ms, token=args.token, settle_s=120,
                                            start_params=None if diarization is None else {"diarization": diarization})

    upload = None
    if args.with_upload:
        from bench.upload import start_background_upload

        spec = args.with_upload
        upload = await (start_background_upload(args.url, args.token, seconds=float(spec)) if spec.isdigit()
                        else start_background_upload(args.url, args.token, path=spec))
        for _ in range(3000):  # the upload itself takes a moment: measure once it is being transcribed
            if upload.upload_run.status != "starting":  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.2)
    with ProcessSampler(pid) as sampler:
        await asyncio.gather(*(slot() for _ in range(n)))
    upload_info = None
    if upload is not None:
        upload_info = upload.upload_run.as_dict()  # type: ignore[attr-defined]
        upload.cancel()
        await asyncio.gather(upload, return_exceptions=True)
    return {**level_figures(n, chosen, records, refs, args.max_seconds), "diarization": diarization,
            **admission_figures(records), **sampler.summary(), "background_upload": upload_info}


def offline_wer(audio_dir: Path, files: list[str], refs: dict[str, Any], audio: dict[str, Any]) -> dict[str, Any]:
    from asr.backends import DecodeRequest
    from asr.backends.faster_whisper import FasterWhisperBackend

    backend = FasterWhisperBackend(cpu_threads=os.cpu_count() or 1)
    errors = words = 0
    per = {}
    for f in files:
        # the same model and decoding options over the whole file, with faster-whisper's own long-form
        # transcription: no streaming, no windows cut at pauses
        res = backend.transcribe_long(DecodeRequest(audio[f]))
        e, w = wer_counts(refs[f]["text"], "".join(w.text for w in res.words))
        per[f] = round(e / w, 4) if w else None
        errors, words = errors + e, words + w
    return {"wer": round(errors / words, 4) if words else None, "per_file": per}


def run(args: argparse.Namespace) -> int:
    own_server = args.url is None
    args.url = args.url or DEFAULT_URL
    audio_dir = Path(args.audio_dir)
    if args.flood:
        from bench.flood import flood_rows, print_answers, run_flood

        result = run_flood(args, own_server)
        print_rows(*flood_rows(result))
        print_answers(result)
        write_result(args.output, result)
        return 0
    if args.der:
        return run_der_command(args, audio_dir)
    if args.fanout:
        from bench.fanout import fanout_rows, run_fanout

        result = asyncio.run(run_fanout(args, audio_dir))
        print_rows(*fanout_rows(result))
        print(f"same messages in the same order on both nodes: {result['same_order']}")
        write_result(args.output, result)
        return 0
    if args.faults:
        from bench.faults import fault_rows, run_faults

        result = run_faults(args)
        print_rows(*fault_rows(result))
        write_result(args.output, result)
        return 0 if result["violations"] == 0 else 1
    if args.queue:
        from bench.queue import queue_rows, run_queue

        result = run_queue(args, audio_dir)
        print_rows(*queue_rows(result))
        write_result(args.output, result)
        return 0
    if args.hostile:
        from bench.hostile import hostile_rows, print_answers, run_hostile

        result = run_hostile(args)
        print_rows(*hostile_rows(result))
        print_answers(result)
        write_result(args.output, result)
        return 0
    if args.decode_costs:
        from bench.decode_costs import cost_rows, run_decode_costs

        result = run_decode_costs(args, audio_dir)
        print_rows(*cost_rows(result))
        cost = result["replay_decode_cost"]
        print(f"{result['device']}/{result['compute_type']}, loaded and warmed in {result['load_and_warm_s']} s"
              + (f"; replay: --decode-cost {cost[0]},{cost[1]}" if cost else ""))
        write_result(args.output, result)
        return 0
    refs_path = audio_dir / "references.json"
    refs = json.loads(refs_path.read_text()) if refs_path.exists() else {}
    if args.soak:
        from bench.soak import run_soak_command, soak_rows

        result = run_soak_command(args, audio_dir, refs)
        print_rows(*soak_rows(result))
        write_result(args.output, result)
        return 0
    files = args.files or sorted(k for k in refs if k.startswith("single/"))
    if args.capacity and not args.files:
        from bench.capacity import DEFAULT_FILES

        files = list(DEFAULT_FILES)
    if args.limit:
        files = files[: args.limit]
    if not files:
        print("voxlane bench: no audio files (give --audio-dir or --files)", file=sys.stderr)
        return 2
    if args.speech_events:
        from bench.speech_events import run_speech_events, speech_event_rows

        result = asyncio.run(run_speech_events(args.url, args.token, audio_dir, refs, files, bool(args.files),
                                                args.turn_gap))
        print_rows(*speech_event_rows(result))
        write_result(args.output, result)
        return 0
    if args.key_terms:
        from bench.key_terms import key_term_rows, run_key_terms

        result = run_key_terms(audio_dir, refs, files)
        print_rows(*key_term_rows(result))
        write_result(args.output, result)
        return 0
    audio = {}
    for f in files:
        a = load_pcm16k(audio_dir / f)
        audio[f] = a[: int(args.max_seconds * 16000)] if args.max_seconds else a
    if args.capacity:
        from bench.capacity import capacity_rows, run_capacity

        levels = [int(x) for x in args.capacity_levels.split(",") if x.strip()]
        pid = args.server_pid or find_server_pid(args.url)
        result = asyncio.run(run_capacity(args, levels, files, refs, audio, pid))
        print()
        print_rows(*capacity_rows(result))
        write_result(args.output, result)
        return 0
    if args.overload:
        from bench.overload import overload_rows, run_overload

        result = asyncio.run(run_overload(args, files, refs, audio))
        print_rows(*overload_rows(result))
        write_result(args.output, result)
        return 0
    levels = [int(x) for x in str(args.concurrency).split(",") if x.strip()]
    if args.replay:
        from bench.replay import run_replay

        result = run_replay(args, levels, files, refs, audio)
    else:
        result = run_live(args, levels, files, refs, audio)
    if args.offline:
        result["offline"] = offline_wer(audio_dir, files, refs, audio)
    print_table(result)
    write_result(args.output, result)
    return 0


def run_live(args: argparse.Namespace, levels: list[int], files: list[str], refs: dict[str, Any],
             audio: dict[str, Any]) -> dict[str, Any]:
    """Every level streamed to the running server (with and without diarization when asked)."""
    pid = args.server_pid or find_server_pid(args.url)
    result: dict[str, Any] = {"url": args.url, "label": args.label, "started": time.time(), "server_pid": pid,
                              "cpu_count": os.cpu_count(), "levels": []}
    modes = [{"on": True, "off": False}[m.strip()] for m in args.diarization.split(",") if m.strip()] or [None]
    for n, mode in ((n, m) for n in levels for m in modes):
        level = asyncio.run(run_level(args, n, files, refs, audio, pid, mode))
        result["levels"].append(level)
        print(f"N={n} diarization {fmt(mode)}: WER {fmt(level['wer'], 4)}, commit p50/p95 "
              f"{fmt(level['commit_latency_p50'])}/"
              f"{fmt(level['commit_latency_p95'])} s, segment final p50/p95 "
              f"{fmt(level['segment_final_latency_p50'])}/{fmt(level['segment_final_latency_p95'])} s", file=sys.stderr)
    return result


def run_der_command(args: argparse.Namespace, audio_dir: Path) -> int:
    if args.replay:
        from bench.speaker_clock import run_speaker_clock, speaker_clock_rows
        from server.pipeline.configs import diarization_config
        from server.settings import Settings

        result = run_speaker_clock(audio_dir, args.files or None, diarization_config(Settings()))
        result.update(label=args.label, started=time.time())
        print_rows(*speaker_clock_rows(result))
        write_result(args.output, result)
        return 0
    from bench.diarization import der_rows, run_der

    result = asyncio.run(run_der(args.url, audio_dir, args.token, args.der_concurrency, args.files or None))
    result.update(url=args.url, label=args.label, started=time.time())
    print_rows(*der_rows(result))
    write_result(args.output, result)
    return 0


def write_result(path: str, result: dict[str, Any]) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out}")


def print_rows(cols: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(cols)]  # no rows: the header alone
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))


def print_table(result: dict[str, Any]) -> None:
    cols = ["N", "diarization", "first partial s", "words shown p50", "words shown p95", "commit p50", "commit p95",
            "seg final p50", "seg final p95", "final p50", "final p95", "WER",
            "lag max s", "lag growth s/s", "CPU avg %", "RSS max MB"]
    rows = [[str(lv["n"]), {True: "on", False: "off"}.get(lv.get("diarization"), "server"),
             fmt(lv["first_partial_s_p50"]), fmt(lv.get("onset_latency_p50")), fmt(lv.get("onset_latency_p95")),
             fmt(lv["commit_latency_p50"]),
             fmt(lv["commit_latency_p95"]), fmt(lv.get("segment_final_latency_p50")),
             fmt(lv.get("segment_final_latency_p95")), fmt(lv["final_latency_p50"]), fmt(lv["final_latency_p95"]),
             fmt(lv["wer"], 4), fmt(lv["lag_max_s"]), fmt(lv["lag_growth_s_per_s"], 3), fmt(lv["cpu_avg_percent"], 0),
             fmt(lv["rss_max_mb"], 0)] for lv in result["levels"]]
    print_rows(cols, rows)
    if "offline" in result:
        print(f"offline WER (same model, whole file): {fmt(result['offline']['wer'], 4)}")
