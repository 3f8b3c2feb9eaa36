"""Calls from a worker thread to the event loop, gathered into one hand-off per pass of the thread.

A stream's audio is taken in off the event loop, and what it changes that lives on the loop (the decode
scheduler's poke, the diarizer's audio, speech events, the caller's future) is handed back to it. One
``call_soon_threadsafe`` per call is one wake-up of the loop and one switch of the GIL each: with sixteen streams
in 100 ms frames that was 500-700 hand-offs a second and 20,000 context switches. A thread that takes in many
streams' audio in one pass wraps the pass in :func:`gathered`, and every call made meanwhile reaches the loop in
one callback, in the order the calls were made.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

_local = threading.local()


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)`` on ``loop``: now when this thread runs it, else at the end of this thread's gathered pass
    (see :func:`gathered`), else as soon as the loop gets to it."""
    if _running_loop() is loop:
        fn(*args)
        return
    pending = getattr(_local, "pending", None)
    if pending is not None:
        pending.setdefault(loop, []).append((fn, args))
        return
    loop.call_soon_threadsafe(fn, *args)


@contextlib.contextmanager
def gathered() -> Iterator[None]:
    """Every :func:`call_soon` made in the block runs on its loop in one callback per loop once the block ends."""
    outer = getattr(_local, "pending", None)
    _local.pending = {}
    try:
        yield
    finally:
        pending, _local.pending = _local.pending, outer
        for loop, calls in pending.items():
            try:
                loop.call_soon_threadsafe(_run_all, calls)
            except RuntimeError:  # the loop is closed: nobody is left to tell
                pass


def _run_all(calls: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> None:
    for fn, args in calls:
        try:
            fn(*args)
        except Exception as exc:  # one stream's callback must not cost the others theirs
            asyncio.get_running_loop().call_exception_handler(
                {"message": f"a call handed to the loop failed: {fn!r}", "exception": exc})


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a worker thread
        return None
