"""``voxlane transcribe`` (files, offline, with the server's own pipeline) and ``voxlane export`` (a stored
transcript, from a server's data directory or database), both rendered by :mod:`server.features.exports`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from server.features import exports
from server.features.speakers import named_segments
from server.settings import Settings, SettingsError

FORMAT_NAMES = {"txt": "text", "text": "text", "timestamped": "text-timestamped",
                "text-timestamped": "text-timestamped", "srt": "srt", "vtt": "webvtt-named",
                "webvtt": "webvtt-named", "webvtt-named": "webvtt-named", "json": "json", "md": "markdown",
                "markdown": "markdown"}
TRANSCRIPT_FIELDS = ("id", "name", "status", "source_language", "created_at", "updated_at", "duration",
                     "participants", "summary")


def add_transcribe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, MP3, M4A, FLAC, OGG, WebM)")
    p.add_argument("--format", default="txt", choices=sorted(FORMAT_NAMES), help="output format (default txt)")
    p.add_argument("--output", metavar="DIR", help="write FILE's stem + extension into DIR (default: stdout)")
    p.add_argument("--model", help="Whisper model (default: VOXLANE_MODEL or the bundled tiny.en)")
    p.add_argument("--language", help="spoken language (multilingual models)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="inference device (default: VOXLANE_DEVICE or cpu)")
    p.add_argument("--compute-type", dest="compute_type", help="CTranslate2 compute type")
    p.add_argument("--cpu-threads", dest="cpu_threads", help="CPU threads (default: all cores)")
    p.add_argument("--key-terms", dest="key_terms", default="",
                   help="names and jargon to spell as given: comma-separated or a JSON array (at most 100)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("transcript_id", metavar="TRANSCRIPT_ID")
    p.add_argument("--format", default="txt", choices=sorted(FORMAT_NAMES), help="output format (default txt)")
    p.add_argument("--data-dir", dest="data_dir", help="the server's data directory (default: VOXLANE_DATA_DIR)")
    p.add_argument("--database-url", dest="database_url", help="the server's database (default: its data dir's)")
    p.add_argument("--output", metavar="FILE", help="write here (default: stdout)")


def _settings(values: dict[str, Any]) -> Settings:
    return Settings.from_sources({k: v for k, v in values.items() if v is not None})


def _write(body: str | dict[str, Any], out: Path | None) -> None:
    text = json.dumps(body, indent=2, ensure_ascii=False) + "\n" if isinstance(body, dict) else body
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")


# ------------------------------------------------------------ voxlane transcribe


def run_transcribe(args: argparse.Namespace) -> int:
    files = [Path(f) for f in args.files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        print(f"voxlane: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        settings = _settings({"model": args.model, "language": args.language, "device": args.device,
                              "compute_type": args.compute_type, "cpu_threads": args.cpu_threads,
                              "database_url": "", "status_interval": 0, "ping_interval": 0})
    except SettingsError as exc:
        print(f"voxlane: {exc}", file=sys.stderr)
        return 2
    from asr.backends.model_files import ModelNotFound
    from server.features.correction.key_terms import checked_key_terms

    try:
        key_terms = checked_key_terms(args.key_terms)
    except ValueError as exc:
        print(f"voxlane: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(transcribe_files(settings, files, FORMAT_NAMES[args.format],
                                            Path(args.output) if args.output else None, quiet=args.quiet,
                                            key_terms=key_terms))
    except ModelNotFound as exc:
        print(f"voxlane: {exc}", file=sys.stderr)
        return 2


async def transcribe_files(settings: Settings, files: list[Path], fmt: str, output: Path | None,
                           quiet: bool = False, key_terms: list[str] | None = None) -> int:
    """Each file through the same pipeline as uploads (decode, VAD, the inference loop, a session), into a
    throwaway store, then rendered. Returns the exit code (1 if any file failed)."""
    from tqdm import tqdm

    from media import DecodeError, probe_file
    from server import services as composition
    from server.jobs.file_jobs import transcribe_file
    from server.role import Role

    rc = 0
    with tempfile.TemporaryDirectory(prefix="voxlane-transcribe-") as tmp:
        settings.data_dir = tmp
        settings.database_url = None  # a throwaway SQLite file in the temporary folder
        # no live audio here: the backend is not calibrated for live streams it will never see
        services = await composition.build(settings, role=Role.worker())
        store = services.store
        durations = []
        for f in files:
            try:
                durations.append(float((await asyncio.to_thread(probe_file, f)).get("duration") or 0.0))
            except DecodeError:
                durations.append(0.0)
        bar = tqdm(total=max(sum(durations), 0.001), unit="s", desc="transcribing", file=sys.stderr, disable=quiet,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
        try:
            base = 0.0
            for path, expected in zip(files, durations, strict=True):
                bar.set_postfix_str(path.name)
                row = await store.create_transcript(name=path.name, source_language=settings.language,
                                                    status="processing")

                async def on_progress(done: float, total: float, _base: float = base,
                                      _expected: float = expected) -> None:
                    step = _base + min(done, _expected) - bar.n
                    if step > 0:
                        bar.update(step)

                result = await transcribe_file(services, row["id"], path, on_progress=on_progress,
                                               publish_status=False, language=settings.language,
                                               diarize=settings.diarization == "on", key_terms=key_terms or ())
                base += expected
                if base > bar.n:
                    bar.update(base - bar.n)
                if result.error:
                    bar.write(f"voxlane: {path}: {result.error}", file=sys.stderr)
                    rc = 1
                    continue
                row = await store.update_transcript(row["id"], status="completed", duration=round(result.duration, 3))
                assert row is not None
                segments = await store.get_segments(row["id"])
                public = {k: row.get(k) for k in ("name", "status", "source_language", "duration")}
                body = exports.render(fmt, public if fmt == "json" else row, segments)
                out = None if output is None else output / f"{path.stem}.{exports.EXTENSIONS[fmt]}"
                if out is None and len(files) > 1 and fmt != "json":
                    bar.write(f"==> {path} <==")
                _write(body, out)
        finally:
            bar.close()
            await composition.close(services)
    return rc


# ------------------------------------------------------------ voxlane export


def run_export(args: argparse.Namespace) -> int:
    try:
        settings = _settings({"data_dir": args.data_dir, "database_url": args.database_url})
    except SettingsError as exc:
        print(f"voxlane: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(export_transcript(settings, args.transcript_id, FORMAT_NAMES[args.format],
                                         Path(args.output) if args.output else None))


async def export_transcript(settings: Settings, transcript_id: str, fmt: str, output: Path | None) -> int:
    from server.storage import open_store

    if not settings.database_url and not (settings.data_path / "voxlane.db").is_file():
        print(f"voxlane: no voxlane database in {settings.data_path} (use --data-dir)", file=sys.stderr)
        return 2
    store = open_store(settings.database_url, settings.data_path)
    await store.open()
    try:
        row = await store.get_transcript(transcript_id)
        if row is None:
            print(f"voxlane: no transcript {transcript_id!r} in {settings.database_url or settings.data_path}",
                  file=sys.stderr)
            return 1
        segments = await named_segments(store, row)  # with the row's meta: participant ids as they were sent
        conversation = await store.get_conversation(transcript_id)
    finally:
        await store.close()
    if fmt == "markdown":
        body: str | dict[str, Any] = exports.as_markdown(row, segments, conversation)
    else:
        public = {k: row.get(k) for k in TRANSCRIPT_FIELDS}
        body = exports.render(fmt, public if fmt == "json" else row, segments)
    _write(body, output)
    return 0
