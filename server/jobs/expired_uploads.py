"""Housekeeping: what a kiosk's upload URL can still leave in the audio store once it expired.

A chunk's presigned URL (a PUT straight to the bucket) stays valid until it expires whatever the server does:
a chunk never confirmed leaves its object behind, and a confirmed one was moved away from the URL's key
(:func:`server.routes.participant_uploads.check_direct_upload`), so a second PUT there writes an object no row
reads. Once the URL has expired nothing can write there again: each round removes those objects, and the
unconfirmed chunk's own file (its own PUT route's too), and clears the row's expiry so it is looked at once.
The rows stay: a conversation's merge counts an abandoned chunk's place.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Protocol

from server.storage.base import UNCONFIRMED

if TYPE_CHECKING:
    from server.storage import Store
    from server.storage.audio import AudioStore

log = logging.getLogger("voxlane.jobs")
GRACE_S = 60.0
"""After the expiry: a PUT that started in time may still be arriving."""
LIMIT = 500


class UploadParts(Protocol):
    store: Store
    audio: AudioStore


async def remove_expired_uploads(parts: UploadParts, now: float | None = None) -> int:
    """One round; how many objects it removed."""
    store, audio = parts.store, parts.audio
    rows = await store.list_chunks(kind="chunk", expires_before=(now or time.time()) - GRACE_S, limit=LIMIT)
    removed = 0
    for row in rows:
        if row["status"] == "receiving":
            continue  # a body still arriving through this server's own PUT: that route settles the row
        keys = [(row.get("options") or {}).get("presigned")]
        if row["status"] in UNCONFIRMED:
            keys.append(row.get("path"))
        for key in {k for k in keys if k}:
            if await audio.head(key) is not None:
                await audio.delete(key)
                removed += 1
        fields: dict = {"expires_at": None}
        if row["status"] in UNCONFIRMED:
            fields["path"] = None
        await store.update_chunk(row["id"], **fields)
    if removed:
        log.info("removed %d object(s) left by expired upload URLs", removed)
    return removed
