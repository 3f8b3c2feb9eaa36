"""Which audio store a deployment keeps its audio in: nodes that share a database must share it.

A chunk one node acknowledges is transcribed by whichever node takes its job, and a recording one node wrote is
downloaded through any other. Nodes that keep audio in different places (each its own local directory, the
default) accept every chunk and then fail its job, with the file safe on another node's disk all along.

So the database names its store: a random id, kept as a row of ``secrets`` and written into the store as
:data:`MARKER_KEY` by the node that created the id (the first node ever on that database). Every node checks at
start that its store holds the database's id. A node that cannot see it refuses to start and says why, before
it takes a chunk or a job: it is not on the store the others use. The check reads what a node can see, not what
its settings say, so one directory mounted on several machines passes and two directories of the same name on
two machines do not.

When the deployment's store really changes (its audio was moved to a bucket), ``voxlane audio-store adopt``
gives the database a new id and writes it into the store now configured, once: a node left on the old store is
refused from then on.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Protocol

from server.storage.audio.base import AudioStore

MARKER_KEY = "voxlane/store-id"
"""The store's copy of the database's id, in a folder of its own at the top of the store (no transcript id looks
like ``voxlane``)."""
SECRET_NAME = "audio-store-id"
WAIT_S = 10.0
"""How long a node waits for the marker of an id another node has just created (two nodes started at once on a
new database): the creator writes it right after the id."""


class SecretRows(Protocol):
    async def get_or_create_secret(self, name: str, value: str) -> str: ...

    async def replace_secret(self, name: str, value: str) -> None: ...


class NotTheSharedStore(RuntimeError):
    """This node's audio store is not the one the database's other nodes use."""


async def check_shared_store(rows: SecretRows, audio: AudioStore, *, where: str, wait_s: float = WAIT_S) -> None:
    """Return when ``audio`` is the store of the database behind ``rows``; raise :class:`NotTheSharedStore`
    with what to do when it is not. ``where`` names the store for the message."""
    mine = secrets.token_hex(16)
    wanted = await rows.get_or_create_secret(SECRET_NAME, mine)
    if wanted == mine:  # the first node on this database: its store is the deployment's
        await write_marker(audio, wanted)
        return
    deadline = time.monotonic() + wait_s
    while True:
        found = await read_marker(audio)
        if found == wanted:
            return
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    seen = "holds another deployment's id" if found else "holds no voxlane id"
    raise NotTheSharedStore(
        f"this node's audio store ({where}) is not the one the other nodes on this database use: it {seen}. A"
        " chunk or recording another node stored could not be read here, so this node does not start. Nodes that"
        " share a database must share one audio store: set VOXLANE_S3_BUCKET (and its endpoint and keys) the same"
        " on every node, or run a single node (docs/deployment.md). If the audio was moved and this store is the"
        " deployment's store from now on, run 'voxlane audio-store adopt' once with this node's settings.")


async def adopt(rows: SecretRows, audio: AudioStore) -> str:
    """Make ``audio`` the database's store: a new id, written into it and then into the database, so that a node
    still on the old store is refused from now on. Run again after a failure: the store's id is replaced too."""
    new = secrets.token_hex(16)
    await write_marker(audio, new)
    await rows.replace_secret(SECRET_NAME, new)
    return new


async def read_marker(audio: AudioStore) -> str | None:
    try:
        return (await audio.read_head(MARKER_KEY, 256)).decode("ascii", "replace").strip() or None
    except FileNotFoundError:
        return None


async def write_marker(audio: AudioStore, value: str) -> None:
    """Written where the store receives files for the marker's folder (locally that folder itself: one rename,
    also when the audio directory is a filesystem of its own)."""
    folder = audio.incoming_dir(MARKER_KEY.rpartition("/")[0])

    def spool() -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".store-id-", dir=folder)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        return Path(name)

    path = await asyncio.to_thread(spool)
    try:
        await audio.put_file(MARKER_KEY, path)
    finally:
        await asyncio.to_thread(path.unlink, True)
