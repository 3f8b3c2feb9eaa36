"""``voxlane`` command line: ``serve`` runs the server, ``worker`` a node that takes jobs only, ``bench`` measures
a running one, ``token`` makes API keys, ``transcribe`` transcribes files offline, ``export`` renders a stored
transcript, ``db`` migrates the database, ``audio-store`` checks the store the nodes share."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from server.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voxlane", description="Realtime speech transcription server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    Settings.add_arguments(serve)
    worker = sub.add_parser("worker", help="take jobs only (recorded files, merges, summaries, webhooks): a node of"
                            " a deployment that shares PostgreSQL, Redis and an audio store; /health and /metrics on"
                            " VOXLANE_PORT")
    Settings.add_arguments(worker)
    bench = sub.add_parser("bench", help="stream real speech to a running server and measure it (the bench"
                           " extra: pip install 'voxlane[bench]')")
    # the benchmarks' arguments only for ``bench`` itself: importing them (the load client, the queue bench and
    # what they import) took a second and a half of every server's start
    bench_arguments = _bench("add_arguments") if _command(sys.argv[1:] if argv is None else argv) == "bench" else None
    if bench_arguments is not None:
        bench_arguments(bench)
    else:  # whatever it is given, it says how to install the benchmarks (or, not asked for, nothing)
        bench.add_argument("anything", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    from server.cli.tokens import add_arguments as token_arguments

    token_arguments(sub.add_parser("token", help="API keys: create (printed once), list, revoke; test JWTs"))
    from server.cli.offline import add_export_arguments, add_transcribe_arguments

    add_transcribe_arguments(sub.add_parser("transcribe", help="transcribe audio files offline (no server needed)"))
    add_export_arguments(sub.add_parser("export", help="render a stored transcript (txt, srt, vtt, json, md)"))
    db = sub.add_parser("db", help="the database: 'upgrade' applies the schema migrations (the server does at start)")
    db.add_argument("db_command", choices=["upgrade"])
    db.add_argument("--data-dir", default=None, help="the server's data dir; env VOXLANE_DATA_DIR")
    db.add_argument("--database-url", default=None, help="the server's database; env VOXLANE_DATABASE_URL")
    from server.cli.audio_store import add_arguments as audio_store_arguments

    audio_store_arguments(sub.add_parser("audio-store", help="the audio store the nodes of a database share: 'check'"
                                         " it as a node does at start, 'adopt' it once after moving the audio"))
    args = parser.parse_args(argv)
    if args.command in ("serve", "worker"):
        return serve_command(vars(args))
    if args.command in ("transcribe", "export"):
        from server.cli.offline import run_export, run_transcribe

        return run_transcribe(args) if args.command == "transcribe" else run_export(args)
    if args.command == "token":
        from server.cli.tokens import run as token_run

        return token_run(args)
    if args.command == "db":
        return db_command(args)
    if args.command == "audio-store":
        from server.cli.audio_store import run as audio_store_run

        return audio_store_run(args)
    bench_run = _bench("run")
    if bench_run is None:
        print("voxlane bench: the benchmarks are not installed here; pip install 'voxlane[bench]' from a checkout",
              file=sys.stderr)
        return 2
    return bench_run(args)


def _command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option (``voxlane`` itself has none)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _bench(name: str) -> Any:
    """``bench.command``'s ``name``, or None where the benchmarks are not installed: they are a package of their
    own (the ``bench`` extra, with jiwer and pyannote.metrics), which a server image does not carry."""
    try:
        from bench import command
    except ImportError:
        return None
    return getattr(command, name)


def db_command(args: argparse.Namespace) -> int:
    """``voxlane db upgrade``: migrate a database to this version's schema without starting a server (before a
    rolling upgrade of several nodes, say)."""
    from server.storage.engine import default_url
    from server.storage.migrate import upgrade_sync

    try:
        settings = Settings.from_sources({"data_dir": args.data_dir, "database_url": args.database_url})
    except SettingsError as exc:
        print(f"voxlane: {exc}", file=sys.stderr)
        return 2
    settings.data_path.mkdir(parents=True, exist_ok=True)
    url = settings.database_url or default_url(settings.data_path)
    upgrade_sync(url)
    print(f"voxlane: {settings.database_url and 'the database' or settings.data_path / 'voxlane.db'} is at the"
          " current schema")
    return 0


def serve_command(values: dict) -> int:
    """``voxlane serve`` and ``voxlane worker``: settings checked, the model found, logging set up, then the node."""
    try:
        settings = Settings.from_sources({k: v for k, v in values.items() if k != "command"})
    except SettingsError as exc:
        print(f"voxlane: {exc}", file=sys.stderr)
        return 2
    if values["command"] == "worker" and not settings.database_url:
        print("voxlane: a worker takes its jobs from a database it shares with the API nodes: set"
              " VOXLANE_DATABASE_URL (postgresql://...)", file=sys.stderr)
        return 2
    import uvicorn

    from asr.backends.model_files import ModelNotFound, resolve_model
    from server.app import create_app

    try:
        resolve_model(settings.model)
    except ModelNotFound as exc:
        print(f"voxlane: VOXLANE_MODEL: {exc}", file=sys.stderr)
        return 2
    from server.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every decode at INFO
    if values["command"] == "worker":
        from server.worker import run_worker

        return run_worker(settings)
    # A frame over VOXLANE_MAX_FRAME_KB is answered MESSAGE_TOO_LARGE and the stream goes on; only one far bigger
    # than that (over this) makes the WebSocket layer drop the connection (close code 1009)
    ws_max_size = max(16 * 1024 * 1024, 2 * settings.max_frame_kb * 1024 + 1024 * 1024)
    from server.http.timeouts import guarded_h11

    # A dead or half-open WebSocket peer answers no WebSocket-level ping: it is closed within VOXLANE_IDLE_TIMEOUT.
    # No permessage-deflate: audio does not compress, and inflating a client's frames would run on the event loop.
    # HTTP: headers must arrive in time and a body keep coming (slowloris); idle keep-alive closes after 5 s.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                ws_max_size=ws_max_size, ws_per_message_deflate=False, ws_ping_interval=settings.idle_timeout / 2,
                ws_ping_timeout=settings.idle_timeout / 2,
                http=guarded_h11(settings.http_header_timeout, settings.http_body_timeout),
                timeout_keep_alive=5, h11_max_incomplete_event_size=16 * 1024,
                **({"log_config": None} if settings.log_format == "json" else {}))  # json: uvicorn's lines too
    return 0

