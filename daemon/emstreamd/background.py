"""Refits on a dask cluster in a background thread, so ingestion never stops for them.

The loop starts a job with a copy of the model and of the refit window, keeps learning, and
polls; when the job is done the loop swaps the refitted model in and re-learns the points that
arrived meanwhile (see :meth:`emstreamd.keymonitor.KeyMonitor.swap_in`).  The cluster connection (or the
``local:N`` cluster) is opened on the first refit and kept until the daemon stops.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("emstreamd")


@dataclass
class Job:
    """One refit on the cluster: its inputs, and its outcome once ``done`` is set."""

    model: object
    rows: np.ndarray
    reason: str
    learned_at_start: int
    generation: int
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class BackgroundRefit:
    """Runs ``GaussianMixture.refit`` on a dask scheduler, one job at a time.

    Parameters
    ----------
    address : str
        ``tcp://host:8786`` or ``local:N`` (see :func:`emstream.distributed.connect`).
    """

    def __init__(self, address: str):
        self.address = address
        self._stack = ExitStack()
        self._client = None
        self._job: Job | None = None
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return self._job is not None

    @property
    def running_for(self) -> float:
        """Seconds since the job under way started (0 if none)."""
        job = self._job
        return 0.0 if job is None or job.done.is_set() else time.monotonic() - job.started

    def start(self, model, rows: np.ndarray, *, reason: str, learned_at_start: int,
              generation: int) -> None:
        """Refit copies of ``model`` and ``rows``; the caller keeps using its own."""
        job = Job(copy.deepcopy(model), rows.copy(), reason, learned_at_start, generation)
        self._job = job
        self._thread = threading.Thread(target=self._run, args=(job,), name="emstreamd-refit",
                                        daemon=True)
        self._thread.start()

    def _run(self, job: Job) -> None:
        from emstream.cluster import refit_on_client
        from emstream.distributed import connect

        try:
            if self._client is None:
                self._client = self._stack.enter_context(connect(self.address))
            job.model = refit_on_client(job.model, job.rows, self._client)
        except BaseException as exc:  # reported by the loop; the daemon goes on without it
            job.error = exc
            if getattr(self._client, "status", "running") not in ("running", "connecting"):
                # A scheduler away longer than the client waits for it (or one left without
                # a worker: the connection closes its client) closes the client for good:
                # kept, it failed every later refit until a restart.  The next refit
                # connects anew.
                job.error = self._drop_client() or exc
        job.seconds = time.monotonic() - job.started
        job.done.set()

    def _drop_client(self) -> ConnectionError | None:
        """Close the connection; the reason it gives for its end, if it gives one."""
        stack, self._stack, self._client = self._stack, ExitStack(), None
        try:
            stack.close()
        except ConnectionError as exc:  # (why it closed: "lost its last worker")
            return exc
        except Exception as exc:  # (a client already closed may complain on the way out)
            log.info("closing the lost dask connection: %s", exc)
        return None

    def poll(self) -> Job | None:
        """The finished job, once (None while running or idle)."""
        job = self._job
        if job is None or not job.done.is_set():
            return None
        self._job = None
        self._thread.join()
        return job

    def wait(self, seconds: float, give_up=lambda: False) -> None:
        """Give a running job up to ``seconds`` to finish (at shutdown), unless ``give_up()``
        turns true meanwhile (a second stop signal: looked at every 0.1 s)."""
        job = self._job
        if job is None or job.done.is_set():
            return
        log.info("waiting up to %.0fs for the refit running on %s (a second stop signal "
                 "stops waiting)", seconds, self.address)
        deadline = time.monotonic() + seconds
        while not job.done.wait(min(0.1, max(deadline - time.monotonic(), 0.0))):
            if time.monotonic() >= deadline:
                return
            if give_up():
                log.warning("stop signal: not waiting for the refit running on %s",
                            self.address)
                return

    def close(self) -> None:
        """Close the cluster connection (a job still running then fails, unreported)."""
        try:
            self._stack.close()
        except Exception as exc:  # a cluster that will not close cleanly must not block exit
            log.warning("closing the dask connection: %s", exc)
        if self._thread is not None and self._client is not None:
            # Closed, the client fails the job at once.  A job still connecting (the
            # scheduler does not answer) is not waited for: refit.wait_at_exit was its time.
            self._thread.join(5.0)
