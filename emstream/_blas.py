"""One BLAS thread for the core's many small products.

The E-step makes one small matrix product per chunk and the M-step factors K small matrices.
OpenBLAS splits such products across its threads and then waits for them; on a busy 2-core
machine that wait made the E-step 10-40x slower (benchmarks/README.md), and numpy and scipy each
ship their own OpenBLAS, whose idle threads compete with each other.  Work is split by chunk
instead, so a single BLAS thread per call is both faster and steadier.
"""

from __future__ import annotations

import contextlib
import threading
from functools import lru_cache

_state = threading.local()


@lru_cache(maxsize=1)
def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency; stay usable without
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def single_thread_blas():
    """Limit every loaded BLAS to one thread for the duration; nested uses cost nothing."""
    controller = _controller()
    if controller is None or getattr(_state, "depth", 0):
        yield
        return
    _state.depth = 1
    try:
        with controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        _state.depth = 0
