"""One BLAS thread for the core's many small products.

The E-step makes one small matrix product per chunk and the M-step factors K small matrices.
OpenBLAS splits such products across its threads and then waits for them; on a busy 2-core
machine that wait made the E-step 10-40x slower (benchmarks/README.md), and numpy and scipy each
ship their own OpenBLAS, whose idle threads compete with each other.  Work is split by chunk
instead, so a single BLAS thread per call is both faster and steadier.
"""

from __future__ import annotations

import contextlib
import sys
import threading

# The limit is process-wide, so nesting is counted process-wide: the first entry applies it and
# the last exit restores it, whichever threads they come from.
_lock = threading.Lock()
_depth = 0
_active = None


_known = {"modules": -1, "controller": None}


def _controller():
    """threadpoolctl's view of the loaded BLAS libraries, refreshed after any new import (a
    library loaded later, say scipy's OpenBLAS, would otherwise keep all its threads)."""
    if len(sys.modules) != _known["modules"]:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            return None
        _known["controller"] = ThreadpoolController()
        _known["modules"] = len(sys.modules)
    return _known["controller"]


# Work smaller than this (rows) never reaches OpenBLAS's threading thresholds: skip the ~20 µs
# of switching limits, which would dominate a small mini-batch.
SMALL_WORK_ROWS = 2048


# Shared by every call below the threshold: entering and leaving it costs ~0.2 µs, against
# ~5 µs for a generator-based context manager (it runs several times per online step).
_NOTHING = contextlib.nullcontext()


def single_thread_blas(rows: int | None = None):
    """Limit every loaded BLAS to one thread for the duration; nested uses cost nothing.

    Parameters
    ----------
    rows : int, optional
        Size of the work: below :data:`SMALL_WORK_ROWS` nothing is changed.
    """
    if rows is not None and rows < SMALL_WORK_ROWS:
        return _NOTHING
    controller = _controller()
    if controller is None:
        return _NOTHING
    return _limited(controller)


@contextlib.contextmanager
def _limited(controller):
    global _depth, _active
    with _lock:
        if _depth == 0:
            _active = controller.limit(limits=1, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _active.restore_original_limits()
                _active = None
