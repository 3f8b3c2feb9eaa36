"""The one exception the media layer lets escape for bad input."""

from __future__ import annotations


class DecodeError(Exception):
    """Audio that cannot be turned into samples; the message is meant to be shown to a user as-is.

    Callers catch this single type instead of PyAV's many error classes, so a bad upload or stream
    becomes a clean client error rather than an internal one.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def describe_av_error(exc: BaseException) -> str:
    """FFmpeg errors stringify with errno and file noise; keep only the human part."""
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    return str(exc) or type(exc).__name__


class AudioTooLong(DecodeError):
    """Audio that decodes to more than the caller's budget of seconds.

    Raised as soon as the decoded samples pass the budget, whatever the container's header claims about the
    duration (a header can lie: a small file of compressed silence may hold hours), so nothing past the limit
    is decoded or held. ``limit_seconds`` is the budget the caller set.
    """

    def __init__(self, what: str, limit_seconds: float) -> None:
        super().__init__(f"{what} is longer than the limit of {limit_seconds:g} s")
        self.limit_seconds = limit_seconds
