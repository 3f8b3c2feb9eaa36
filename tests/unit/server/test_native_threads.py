import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from server.native_threads import limit_blas_threads


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_every_loaded_blas_runs_on_one_thread_and_the_models_openmp_pools_are_left_alone():
    import scipy.cluster.hierarchy  # noqa: F401  (the diarizer's SciPy brings its own OpenBLAS)

    openmp = [(p["filepath"], p["num_threads"]) for p in threadpool_info() if p["user_api"] == "openmp"]
    before = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
    try:
        limit_blas_threads()
        assert _blas_threads() and set(_blas_threads()) == {1}
        assert [(p["filepath"], p["num_threads"]) for p in threadpool_info() if p["user_api"] == "openmp"] == openmp
        a = np.random.default_rng(0).standard_normal((64, 64))
        assert np.allclose(a @ np.linalg.inv(a), np.eye(64), atol=1e-6)  # still computes
    finally:
        for path, n in before.items():
            threadpool_limits(limits={path: n})


def test_freed_memory_goes_back_to_the_system_from_one_thread_per_process():
    import threading

    from server import native_threads

    assert native_threads.return_freed_memory()  # the CI image's C library is glibc
    assert native_threads.start_heap_trimmer(interval_s=3600)
    assert native_threads.start_heap_trimmer(interval_s=3600)
    assert [t.name for t in threading.enumerate()].count("voxlane-heap-trim") == 1
