"""Bodies being received: which ones a request still holds, so a sweep removes only what nobody acknowledged.

A request holds an exclusive ``flock`` on the file its body goes into, from the first byte until it stored or
dropped it; the operating system drops that lock with the process, even on SIGKILL. So a sweep (at start, or
housekeeping) on any process that shares the directory removes exactly the bodies of requests that are gone,
never one still arriving on another node.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Any


def hold(file: IO[Any]) -> None:
    """Mark an open file as a body being received (until it is closed)."""
    fcntl.flock(file.fileno(), fcntl.LOCK_EX)


def claimed(path: Path) -> bool:
    """Whether a request (of any process) still holds this body; a missing file counts as held (nothing to do)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing the descriptor releases a lock it took
    return False
