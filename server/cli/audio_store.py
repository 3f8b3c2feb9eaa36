"""``voxlane audio-store``: the audio store a deployment's nodes share (:mod:`server.storage.audio.identity`).

``check`` says whether the store these settings name is the database's, as a node does at start; ``adopt`` makes
it so, once, after the deployment's audio was moved to it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from server.settings import Settings, SettingsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store_command", choices=["check", "adopt"])
    Settings.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    values = {k: v for k, v in vars(args).items() if k not in ("command", "store_command")}
    try:
        settings = Settings.from_sources(values)
    except SettingsError as exc:
        print(f"voxlane: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(settings, args.store_command))


async def _run(settings: Settings, command: str) -> int:
    from server.storage import open_store
    from server.storage.audio import describe_audio_store, open_audio_store
    from server.storage.audio.identity import NotTheSharedStore, adopt, check_shared_store

    settings.data_path.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.database_url, settings.data_path)
    audio = open_audio_store(settings)
    where = describe_audio_store(settings)
    await store.open()
    try:
        await audio.open()
        if command == "adopt":
            await adopt(store, audio)
            print(f"voxlane: {where} is this database's audio store now; start every node with it")
            return 0
        try:
            await check_shared_store(store, audio, where=where, wait_s=0)
        except NotTheSharedStore as exc:
            print(f"voxlane: {exc}", file=sys.stderr)
            return 1
        print(f"voxlane: {where} is this database's audio store")
        return 0
    finally:
        await audio.close()
        await store.close()
