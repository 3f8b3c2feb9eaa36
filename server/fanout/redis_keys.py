"""How live messages sit in Redis: the keys, the fields of a stream entry, and stream ids.

One stream per transcript (``voxlane:live:{id}``) holds its messages in publishing order, each entry with the
node that appended it (``n``), that node's run of appends to this transcript (``r``: a new one after the node
forgets the transcript, or restarts) and the entry's place in that run (``q``, from 1 without holes, so a reader
that sees a hole knows messages were lost), and the message as JSON (``m``). Beside it a plain key holds the
transcript's latest status, written in the same MULTI as the entry that carried it, so a reader that takes the
stream's last id and the status key in one MULTI has the status as of exactly that id.
"""

from __future__ import annotations

from typing import Any

STREAM_PREFIX = "voxlane:live:"


def stream_key(transcript_id: str) -> str:
    return f"{STREAM_PREFIX}{transcript_id}"


def status_key(transcript_id: str) -> str:
    return f"voxlane:status:{transcript_id}"


def wake_key(node: str) -> str:
    """A node's own stream, read beside the transcripts' streams: appending to it wakes the node's blocked
    reader when it must read one more transcript (a blocked XREAD cannot be given new keys)."""
    return f"voxlane:wake:{node}"


def transcript_of(key: str) -> str:
    return key[len(STREAM_PREFIX):]


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def id_before(a: str, b: str) -> bool:
    return parse_id(a) < parse_id(b)


def read_entries(response: Any) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """XREAD's answer as (key, entries): a list of pairs in RESP2, a map in RESP3."""
    if not response:
        return []
    if isinstance(response, dict):
        return list(response.items())
    return [(key, entries) for key, entries in response]


def first_id(entries: Any) -> str | None:
    """The id of the one entry an XRANGE/XREVRANGE with COUNT 1 returned, or None."""
    return entries[0][0] if entries else None
