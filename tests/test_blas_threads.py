"""The single-BLAS-thread section restores the original limits, even with threads overlapping."""

import threading

import numpy as np
from threadpoolctl import threadpool_info

from emstream._blas import single_thread_blas


def _blas_threads():
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def test_overlapping_threads_restore_the_original_limits():
    before = _blas_threads()
    inside = threading.Event()
    release = threading.Event()

    def hold():
        with single_thread_blas():
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=hold)
    worker.start()
    inside.wait(5)
    with single_thread_blas():
        assert all(n == 1 for n in _blas_threads())
        release.set()          # the first holder leaves while this one is still inside
        worker.join(5)
        assert all(n == 1 for n in _blas_threads())
    assert _blas_threads() == before
    np.ones((3, 3)) @ np.ones((3, 3))
