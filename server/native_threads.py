"""The thread pools of the numeric libraries the server loads, sized for a server's work.

NumPy and SciPy each bundle an OpenBLAS that starts a thread per core and, after every matrix product it splits,
keeps those threads spinning for a while in case another comes. The server's BLAS work is small and frequent
(mel filters for every decode and every speaker window, distances between speaker embeddings), so the split
saves nothing and the spinning takes cores from the decodes: on 2 cores, four dialogues streamed at once spent
24 s of 140 s in NumPy's BLAS thread, and with one BLAS thread the model ran 9 % more decodes in the same time,
each 9 % faster. CTranslate2 and PyTorch keep their own (OpenMP) pools, which the settings size.

threadpoolctl finds the loaded BLAS libraries whatever their build and sets their size at run time, where the
``OPENBLAS_NUM_THREADS`` variable would have to be set before NumPy is first imported.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("voxlane")


def limit_blas_threads(threads: int = 1) -> None:
    """Run every BLAS library loaded so far on ``threads`` threads, for the rest of the process (a library
    loaded later keeps its own default). Call once the models are loaded."""
    from threadpoolctl import threadpool_info, threadpool_limits

    before = [(p["internal_api"], p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas"]
    threadpool_limits(limits=threads, user_api="blas")
    log.debug("BLAS threads %s -> %d", before, threads)


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Let at most ``arenas`` glibc malloc arenas serve the process's threads (False: not glibc, left as is).

    glibc gives a thread that allocates while others do an arena of its own, up to eight per core, and keeps what
    is freed in it. Every live stream has an ingest thread (decoding and the VAD allocate there) and the lanes
    and the speaker worker allocate too, so each stream grew the server by an arena it mostly held on to. Call
    it before those threads start; the allocations are short-lived, so a few arenas shared costs nothing."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


TRIM_INTERVAL_S = 10.0
_trimmer: threading.Thread | None = None


@functools.cache
def _glibc(function: str) -> Callable[..., int] | None:
    """A glibc function, looked up once: ``find_library`` runs ``ldconfig`` (None: not glibc; musl and other C
    libraries have no ``mallopt`` or ``malloc_trim``)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), function) if name else None
    except (OSError, AttributeError):
        return None


def return_freed_memory() -> bool:
    """Give the pages glibc holds free, in every arena, back to the system (False: not glibc)."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


def start_heap_trimmer(interval_s: float = TRIM_INTERVAL_S) -> bool:
    """Return freed memory every ``interval_s`` from a thread of its own, once per process (False: not glibc).

    glibc returns a freed block to the system only from the top of the heap. A decode's buffers and a stream's
    audio come and go in the middle of it, so what a load freed stayed resident: after sixteen speaking streams
    had ended, the server held 919 MB against 676 MB after one (2-core EPYC, diarization on); with this
    thread, 781 MB. ``malloc_trim`` walks the arenas under their locks for a few milliseconds, off the event
    loop. A fixed ``M_MMAP_THRESHOLD`` would keep large blocks out of the heap instead, but every
    decode then maps and faults in its buffers anew: at 1 MB, decodes took 35-55 % longer."""
    global _trimmer
    if _trimmer is not None:
        return True
    if not return_freed_memory():
        return False

    def run() -> None:
        stop = threading.Event()
        while not stop.wait(interval_s):
            return_freed_memory()

    _trimmer = threading.Thread(target=run, name="voxlane-heap-trim", daemon=True)
    _trimmer.start()
    return True
