"""How long a recorded file may be, and the one answer every route gives when it is longer.

A file's header can lie about its duration (a 1 MB FLAC of silence may claim 1 s and hold two hours), so the
limit is enforced where the audio is decoded: :mod:`media` raises :class:`~media.AudioTooLong` as soon as the
decoded samples pass it. The header's claim is still checked first, because an honest long file can then be
refused before any of it is decoded.
"""

from __future__ import annotations

from typing import Any

from server.http.errors import ApiError

AUDIO_TOO_LONG = "AUDIO_TOO_LONG"
"""Error code (HTTP and the ``error`` message of a failed job) for audio longer than the route's limit."""


def too_long_message(limit_seconds: float) -> str:
    return f"the audio is longer than this server's limit of {limit_seconds:g} s"


def too_long(limit_seconds: float) -> ApiError:
    """413 with ``details.limit_seconds``: what a synchronous route answers for audio over its limit."""
    return ApiError(413, too_long_message(limit_seconds), AUDIO_TOO_LONG, {"limit_seconds": limit_seconds})


def claims_too_long(info: dict[str, Any], limit_seconds: float) -> bool:
    """Whether a probe (:func:`media.probe_file`) already admits the file is over the limit."""
    declared = info.get("duration")
    return declared is not None and float(declared) > limit_seconds


def refuse_declared(info: dict[str, Any], limit_seconds: float) -> None:
    """Raise the 413 for a file whose own header says it is too long (no decoding needed to know)."""
    if claims_too_long(info, limit_seconds):
        raise too_long(limit_seconds)
