"""Set-up run in each worker process of a ``local:N`` cluster (a dask preload module).

The worker processes share the terminal's process group with the daemon or ``emstream fit``
that started them: Ctrl-C reached them too, and each printed a ``KeyboardInterrupt``
traceback while the client was still stopping (the daemon then waited
``refit.wait_at_exit`` for a refit whose worker was gone).  Ctrl-C is the client's to handle:
a worker ignores it and stops when its nanny closes it.
"""

from __future__ import annotations

import signal
import threading


def dask_setup(worker) -> None:
    """dask calls this in the worker process when the worker starts."""
    if threading.current_thread() is threading.main_thread():  # (signal's own rule)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
