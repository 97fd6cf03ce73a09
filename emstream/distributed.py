"""Batch EM over dask collections: the core's E-step mapped over blocks, tree-summed.

``GaussianMixture.fit`` hands a dask array (or a dask data frame of numeric columns) to
:class:`DaskRows`.  Each EM iteration runs the core's E-step (:func:`emstream.em.e_step`) on
every block of rows where the block lives, adds the blocks' :class:`~emstream.em.EStepResult`
in a tree of ``+`` on the workers, and brings that one sum (a few kilobytes) back; the M-step
and the convergence test run on the client in :func:`emstream.em.run_em`, as for numpy data.
Nothing of EM is reimplemented here: only where the data sit changes.

- The blocks are persisted once, before the first iteration, when they take at most half of
  the cluster's memory (the workers' memory limits; the machine's available memory for dask's
  local schedulers); otherwise every iteration recomputes them from their source (out of core).
- k-means++ and the other initialisations run on a bounded random sample of rows brought to
  the client (at most 200,000, the rows numpy data would be initialised from): for the same
  ``random_state`` the sample, hence the start, equals numpy's on the same rows.
- Each iteration's tasks have names of their own (``emstream-e-step-<run>-<iteration>-<block>``).

Whatever dask would compute with runs the fit: the ``scheduler`` setting
(``dask.config.set(scheduler="synchronous")``, ``"threads"``, a ``distributed.Client``), else
the current distributed client, else the collection's default; :mod:`emstream.cluster` fits
and refits whole models on a cluster given by address.  dask is optional (``pip install
'emstream[dask]'``); fitting numpy data never imports it.

Example
-------
>>> import dask, dask.array as da, numpy as np
>>> from emstream import GaussianMixture
>>> rng = np.random.default_rng(0)
>>> X = np.r_[rng.normal(-4, 1, 3000), rng.normal(5, 1, 2000)][:, None]
>>> blocks = da.from_array(X, chunks=((1500, 2000, 1500), 1))
>>> with dask.config.set(scheduler="synchronous"):
...     gm = GaussianMixture(2, random_state=0).fit(blocks)
>>> np.sort(gm.means_.ravel()).round(1)
array([-4.,  5.])
>>> bool(np.allclose(gm.means_, GaussianMixture(2, random_state=0).fit(X).means_, rtol=1e-10))
True
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import operator
import os
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from functools import reduce

import numpy as np

from . import em
from .gaussian import MixtureParams
from .init import _MAX_INIT_ROWS
from .validation import MAX_ABS_VALUE

# Blocks are persisted when they take at most this share of the cluster's memory.
MEMORY_SHARE = 0.5
# Statistics of this many blocks are added in one task of the reduction tree.
SUM_FAN_IN = 16
INSTALL_HINT = "pip install 'emstream[dask]'"
# dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also pins glibc's mmap
# threshold at 128 KiB: every E-step temporary (~1 MiB by design) is then mmap'd and page-faulted
# afresh, and E-steps run 2-3x slower than in the client.  Workers of local:N clusters get 4 MiB
# for both (memory is still returned to the system); for other clusters see the README.
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": "4194304", "MALLOC_MMAP_THRESHOLD_": "4194304"}


class DaskMissingError(ImportError):
    """dask (or its ``distributed``/``dataframe`` parts) is not installed."""


def require(module: str):
    """Import a dask module, or raise :class:`DaskMissingError` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DaskMissingError(f"fitting on dask needs {module.split('.')[0]} "
                               f"({exc}); install it with: {INSTALL_HINT}") from None


def is_dask_collection(X) -> bool:
    """Whether ``X`` is a dask collection; never imports dask (none exists without it)."""
    dask = sys.modules.get("dask")
    return dask is not None and dask.is_dask_collection(X)


# ---------------------------------------------------------------------------- block tasks
def _as_rows(block) -> np.ndarray:
    """A block as C-contiguous float64 rows (no copy when it already is)."""
    return np.ascontiguousarray(block, dtype=np.float64)


def _block_facts(block: np.ndarray):
    """``(rows, rows with NaN/inf, first such row or -1, largest |value|)`` of one block."""
    if block.shape[0] == 0:
        return 0, 0, -1, 0.0
    bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
    largest = float(np.abs(block).max()) if bad.size == 0 else 0.0
    return block.shape[0], int(bad.size), int(bad[0]) if bad.size else -1, largest


def _take(block: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return block[rows]


def _every(block: np.ndarray, start: int, stride: int) -> np.ndarray:
    return block[start::stride]


def _add(*parts):
    """Sum of additive results (``EStepResult``), left to right."""
    return reduce(operator.add, parts)


# ---------------------------------------------------------------------------- memory
def _client_of(scheduler):
    """The distributed client dask would compute with, or None for a local scheduler."""
    base = require("dask.base")
    schedule = base.get_scheduler(scheduler=scheduler)
    client = getattr(schedule, "__self__", schedule)
    return client if hasattr(client, "scheduler_info") else None


def _check_open(client) -> None:
    """ConnectionError if the distributed ``client`` is closed (dask said ``KeyError:
    'workers'`` before a fit, or a FutureCancelledError "for reason: unknown" during it)."""
    if client is not None and getattr(client, "status", "running") in ("closing", "closed"):
        raise ConnectionError("the dask client is closed: open a new one (or use "
                              "emstream.distributed.connect) to fit on dask data") from None


def cluster_memory(scheduler=None) -> float:
    """Bytes the computation may hold: the sum of the workers' memory limits, or, for dask's
    local schedulers, the machine's available memory (``inf`` when no limit is known)."""
    client = _client_of(scheduler)
    _check_open(client)
    if client is not None:
        try:
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
        except TypeError:  # distributed < 2025: every worker is listed anyway
            workers = client.scheduler_info()["workers"].values()
        limits = [w.get("memory_limit") or 0 for w in workers]
        return float(sum(limits)) if limits and all(limits) else math.inf
    try:
        import psutil  # comes with distributed
        return float(psutil.virtual_memory().available)
    except ImportError:
        try:
            return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return math.inf


# ---------------------------------------------------------------------------- the data
class DaskRows:
    """Rows of a dask array or data frame, checked and ready for batch EM where they live.

    Validation matches :func:`emstream.validation.check_array` (2-D, numeric, finite, at most
    1e100 in magnitude, enough rows, the fitted number of features); it takes one pass over
    the blocks (after persisting them when their size is known).

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features), or dask.dataframe.DataFrame
        A data frame must have numeric columns only; blocks may have any, unequal, sizes
        (unknown ones are counted in the validation pass).
    n_features : int, optional
        Required number of columns (a warm-started fit's).
    min_samples : int
    why_min : str
        Explains ``min_samples`` in the error message.
    scheduler : optional
        Passed to dask's ``compute``/``persist``; None: dask's current choice.

    Attributes
    ----------
    shape : tuple of int
        ``(n_samples, n_features)``.
    block_rows : list of int
        Rows of each (non-empty) block.
    persisted : bool
        Whether the blocks are held in the cluster's memory.
    """

    def __init__(self, X, *, n_features: int | None = None, min_samples: int = 1,
                 why_min: str = "", scheduler=None):
        self._dask = require("dask")
        self._scheduler = scheduler
        self._run = uuid.uuid4().hex[:12]
        self._iteration = 0
        X = self._as_array(X)
        as_rows = self._dask.delayed(_as_rows, pure=True)
        blocks = [as_rows(block, dask_key_name=f"emstream-rows-{self._run}-{i}")
                  for i, block in enumerate(X.to_delayed().ravel())]
        width = int(X.shape[1])
        known = not any(math.isnan(c) for c in X.chunks[0])
        self.persisted = False
        if known:
            blocks = self._persist_if_it_fits(blocks, X.shape[0] * width * 8)
        facts = self._compute(*[self._dask.delayed(_block_facts)(b) for b in blocks])
        n_samples = self._check(facts, width, n_features, min_samples, why_min)
        if not known:
            blocks = self._persist_if_it_fits(blocks, n_samples * width * 8)
        kept = [i for i, f in enumerate(facts) if f[0] > 0]
        self._blocks = [blocks[i] for i in kept]
        self.block_rows = [int(facts[i][0]) for i in kept]
        self.shape = (n_samples, width)

    # -- set-up
    def _as_array(self, X):
        da = require("dask.array")
        if not isinstance(X, da.Array):
            dd = require("dask.dataframe")
            if isinstance(X, dd.Series):
                X = X.to_frame()
            if not isinstance(X, dd.DataFrame):
                raise ValueError(f"X must be a dask array or data frame (or a numpy array), "
                                 f"got {type(X).__name__}")
            pandas = require("pandas")
            bad = [str(c) for c, t in X.dtypes.items()
                   if not pandas.api.types.is_numeric_dtype(t)
                   and not pandas.api.types.is_bool_dtype(t)]
            if bad:
                raise ValueError(f"X must have numeric columns only; not numeric: "
                                 f"{', '.join(bad[:5])}; select numeric columns first")
            # (complex columns are numeric to pandas: cast to float64, their imaginary parts
            # were dropped with only numpy's warning, where numpy and pandas data are refused)
            complex_ = [str(c) for c, t in X.dtypes.items()
                        if pandas.api.types.is_complex_dtype(t)]
            if complex_:
                raise ValueError(f"Complex data not supported: column(s) {', '.join(complex_[:5])}"
                                 "; pass their real parts or their moduli")
            if any(t != np.float64 for t in X.dtypes):
                X = X.astype(np.float64)
            X = X.to_dask_array()
        if X.ndim == 1:
            raise ValueError(f"X must be 2-D of shape (n_samples, n_features), got a 1-D dask "
                             f"array of shape {X.shape}. Reshape your data: X.reshape(-1, 1) "
                             "for one feature")
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D of shape (n_samples, n_features), got {X.ndim}-D "
                             f"of shape {X.shape}")
        if math.isnan(X.shape[1]):
            raise ValueError("X has an unknown number of columns; call "
                             "X.compute_chunk_sizes() first")
        if X.shape[1] == 0:
            raise ValueError("X has 0 features; each sample needs at least one number")
        if X.dtype.kind not in "biuf":
            raise ValueError(f"X must be numeric, got dtype {X.dtype}")
        if X.dtype == bool:  # (as check_array takes a numpy one: 0 and 1; bool @ bool is bool)
            X = X.astype(np.float64)
        if X.numblocks[1] > 1:  # each task needs whole rows
            X = X.rechunk({1: -1})
        return X

    def _persist_if_it_fits(self, blocks, nbytes: float):
        if nbytes > MEMORY_SHARE * cluster_memory(self._scheduler):
            return blocks
        self.persisted = True
        return list(self._dask.persist(*blocks, scheduler=self._scheduler))

    def _check(self, facts, width, n_features, min_samples, why_min) -> int:
        n_samples = sum(f[0] for f in facts)
        if n_samples == 0:
            raise ValueError(f"X is empty (0 samples); pass at least {max(min_samples, 1)}")
        if n_features is not None and width != n_features:
            raise ValueError(f"X has {width} features, but GaussianMixture is expecting "
                             f"{n_features} features as input; pass rows with {n_features} "
                             "columns")
        if n_samples < min_samples:
            raise ValueError(f"X has {n_samples} samples, fewer than {min_samples}{why_min}")
        n_bad = sum(f[1] for f in facts)
        if n_bad:
            offsets = np.cumsum([0] + [f[0] for f in facts])
            first = next(offsets[i] + f[2] for i, f in enumerate(facts) if f[1])
            raise ValueError(f"X contains NaN or infinity in {n_bad} row(s), first at row "
                             f"{first}; drop or impute those rows first")
        if max(f[3] for f in facts) > MAX_ABS_VALUE:
            raise ValueError(f"X has values beyond ±{MAX_ABS_VALUE:g}, the model's limit (the "
                             "sums of their squares over many rows would overflow float64); "
                             "rescale the data (for example to other units) first")
        return int(n_samples)

    def _compute(self, *objects, **options):
        """``dask.compute`` on this data's scheduler; a client closed before or during it is
        a ConnectionError that says so."""
        try:
            return self._dask.compute(*objects, scheduler=self._scheduler, **options)
        except Exception:
            _check_open(_client_of(self._scheduler))
            raise

    # -- what batch EM asks for
    def e_step(self, params: MixtureParams) -> em.EStepResult:
        """The core's E-step on every block, summed in a tree on the workers.

        Parameters
        ----------
        params : MixtureParams

        Returns
        -------
        EStepResult
            As ``emstream.em.e_step`` over all rows (up to rounding: sums are grouped by block).
        """
        delayed = self._dask.delayed
        self._iteration += 1
        tag = f"{self._run}-{self._iteration}"
        shared = delayed(params, name=f"emstream-params-{tag}", traverse=False)
        e_step, add = delayed(em.e_step, pure=True), delayed(_add, pure=True)
        level = [e_step(block, shared, dask_key_name=f"emstream-e-step-{tag}-{i}")
                 for i, block in enumerate(self._blocks)]
        depth = 0
        while len(level) > 1:
            depth += 1
            level = [add(*level[i:i + SUM_FAN_IN], dask_key_name=f"emstream-sum-{tag}-{depth}-{i}")
                     for i in range(0, len(level), SUM_FAN_IN)]
        return self._compute(level[0], optimize_graph=False)[0]

    def spread_rows(self, count: int) -> np.ndarray:
        """Up to ``count`` rows spread evenly over all of them (every ``ceil(n / count)``-th),
        as numpy: what numpy data's ``X[::stride][:count]`` is (the rows
        :func:`emstream.resolution.grid_step` reads)."""
        n = self.shape[0]
        if n <= count:
            return self.first_rows(count)
        stride = -(-n // count)
        every = self._dask.delayed(_every, pure=True)
        parts, offset = [], 0
        for block, rows in zip(self._blocks, self.block_rows):
            start = -offset % stride  # the block's first row whose global index is a multiple
            if start < rows:
                parts.append(every(block, start, stride))
            offset += rows
        return np.concatenate(self._compute(*parts))[:count]

    def first_rows(self, count: int) -> np.ndarray:
        """The first ``count`` rows (or all), as numpy: what numpy data's ``X[:count]`` is."""
        taken, parts = 0, []
        for block, rows in zip(self._blocks, self.block_rows):
            if taken >= count:
                break
            parts.append(block)
            taken += rows
        return np.concatenate(self._compute(*parts))[:count]

    def sample_rows(self, rng: np.random.Generator) -> np.ndarray:
        """Rows to initialise from, as numpy: all of them, or 200,000 drawn uniformly.

        The draw is the one :func:`emstream.init.initial_stats` makes from numpy data of the
        same length, so the same generator picks the same rows.

        Returns
        -------
        ndarray of shape (min(n_samples, 200000), n_features)
        """
        n = self.shape[0]
        if n <= _MAX_INIT_ROWS:
            return np.concatenate(self._compute(*self._blocks))
        chosen = np.sort(rng.choice(n, _MAX_INIT_ROWS, replace=False))
        bounds = np.cumsum([0] + self.block_rows)
        cuts = np.searchsorted(chosen, bounds)
        delayed = self._dask.delayed
        parts = [delayed(_take)(block, chosen[cuts[i]:cuts[i + 1]] - bounds[i])
                 for i, block in enumerate(self._blocks) if cuts[i + 1] > cuts[i]]
        return np.concatenate(self._compute(*parts))


# ---------------------------------------------------------------------------- clusters
def _local_workers(address: str) -> int | None:
    """N for ``"local:N"``, None for a scheduler address; ValueError for a bad ``local:``."""
    if not address.startswith("local:"):
        return None
    count = address[len("local:"):]
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{address!r}: local:N wants N >= 1 worker processes, e.g. local:2")
    return int(count)


def _wait_for_a_worker(client, address: str, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the scheduler to have a worker: without one, every
    computation waited for ever, without a word (``emstream fit`` hung)."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise ConnectionError(f"the dask scheduler at {address} has no workers (none joined "
                              f"in {timeout:.0f} s)") from None


class _WorkerWatch:
    """Closes the client once its scheduler has had no worker for ``timeout`` seconds, or
    once the scheduler itself is lost.

    dask waits for a worker as long as it takes: a fit whose last worker died (killed, out of
    memory, its machine gone) waited for ever, without a word; and a lost scheduler failed the
    computation only when dask gave up reconnecting, 30 s later, as "cancelled for reason:
    unknown".  A thread asks the scheduler every ``poll`` seconds; closing the client ends the
    computation waiting on it, which :func:`connect` then reports as a :class:`ConnectionError`.
    """

    def __init__(self, client, address: str, timeout: float, poll: float = 1.0):
        self.client, self.address, self.timeout, self.poll = client, address, timeout, poll
        self.tripped = False
        self.lost = False  # (the scheduler itself, not its workers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="emstream-dask-workers",
                                        daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()

    @property
    def message(self) -> str:
        if self.lost:
            return (f"the dask scheduler at {self.address} was lost (the connection to it "
                    "closed), so the computation cannot go on")
        return (f"the dask scheduler at {self.address} lost its last worker: none for "
                f"{self.timeout:.0f} s, so the computation cannot go on")

    def _watch(self) -> None:
        alone_since = None
        while not self._stop.wait(self.poll):
            if self.client.status not in ("running", "newly-created"):
                # Reconnecting (or closed under it): the scheduler is gone.
                if self._stop.is_set():
                    return
                self.lost = self.tripped = True
                self.client.close()
                return
            try:
                workers = self.client.scheduler_info(n_workers=1)["workers"]
            except Exception:  # (closing, or the scheduler gone: the computation says so)
                return
            now = time.monotonic()
            if workers:
                alone_since = None
            elif alone_since is None:
                alone_since = now
            elif now - alone_since >= self.timeout and not self._stop.is_set():
                self.tripped = True
                self.client.close()
                return


def _not_all_exit(record: logging.LogRecord) -> bool:
    """Drops asyncio's report of a dask client task ended by ``AllExit``: the client closing
    while a computation waited (Ctrl-C), which ended ``emstream fit`` with a traceback."""
    exc = record.exc_info[1] if record.exc_info else None
    return type(exc).__name__ != "AllExit"


@contextmanager
def _watched(client, address: str, timeout: float):
    """Yield ``client`` while a :class:`_WorkerWatch` minds its workers; what fails after the
    watch closed the client is reported as the lost worker it is."""
    with _WorkerWatch(client, address, timeout) as watch:
        try:
            yield client
        except Exception as exc:
            if not watch.tripped and "scheduler-connection-lost" in str(exc):
                # (dask cancelled the computation before the watch's next look: a raw
                # FutureCancelledError, its reason on a second line)
                watch.lost = watch.tripped = True
            if watch.tripped:
                raise ConnectionError(watch.message) from None
            raise
    if watch.tripped:  # (a computation that ended as the client closed)
        raise ConnectionError(watch.message)


class _WhileConnected(logging.Filter):
    """Passes a client's log records while it is connected to its scheduler, but for those of
    a connection that failed (said once, by :func:`_watched`)."""

    def __init__(self, client):
        super().__init__()
        self.client = client

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:  # (the failed connection, or what it cancelled)
            if isinstance(exc, (OSError, asyncio.CancelledError)):
                return False
            exc = exc.__cause__ or exc.__context__
        return self.client.status in ("running", "newly-created")


def _probe_scheduler(address: str, timeout: float) -> None:
    """ConnectionError unless a dask scheduler at ``address`` answers dask's handshake and an
    ``identity`` request within ``timeout`` seconds.  (A Client on a port where another
    service listens hung for ever on one that waits for its client to speak (an HTTP
    server), and on one that greets first (SMTP) read the greeting as a message length:
    "MemoryError: Unable to allocate 6.78 EiB", then a minute's wait and a traceback.)  The
    probe runs on a loop of its own in a thread of its own (a caller's running loop, as in
    Jupyter, refuses ``asyncio.run``), with dask's security settings (``tls://``)."""
    from distributed.comm import connect as comm_connect
    from distributed.security import Security

    arguments = Security().get_connection_args("client")

    async def identity():
        comm = await comm_connect(address, timeout=timeout, **arguments)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    outcome = {}

    def probe():
        try:
            outcome["reply"] = asyncio.run(asyncio.wait_for(identity(), timeout))
        except BaseException as exc:  # (reported by the caller's thread)
            outcome["error"] = exc

    thread = threading.Thread(target=probe, name="emstream-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    exc = outcome.get("error")
    if thread.is_alive() or isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        raise ConnectionError(f"cannot reach the dask scheduler at {address}: no answer to "
                              f"dask's handshake within {timeout:g} s")
    if exc is not None:  # (whatever another protocol's bytes make of dask's reader)
        raise ConnectionError(f"cannot reach the dask scheduler at {address}: "
                              f"{type(exc).__name__}: {str(exc)[:200]} (no dask scheduler "
                              "there?)")
    reply = outcome.get("reply")
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise ConnectionError(f"{address} answers dask's handshake, but not as a scheduler "
                              f"({str(reply)[:80]})")


def scheduler_address_problem(value: str) -> str | None:
    """What makes ``value`` unusable as a dask scheduler's address, or None.

    A bare "tcp://" was accepted and failed at every refit, port 99999 waited 30 s to time
    out, and ``inproc://x``, ``tcp://h:8786/x``, ``tls://`` without dask's TLS settings and
    ``ucx://`` without ucx-py passed the configuration's check and failed at every refit.

    >>> scheduler_address_problem("tcp://10.0.0.5:8786") is None
    True
    >>> scheduler_address_problem("tcp://h:99999"), scheduler_address_problem("inproc://x")
    ('host and a port from 1 to 65535 wanted', 'an inproc:// address works inside one process only')
    """
    import importlib.util
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        return "host and a port from 1 to 65535 wanted"
    if parts.scheme == "inproc":
        return "an inproc:// address works inside one process only"
    if parts.scheme not in ("tcp", "tls", "ucx"):
        return "tcp://host:port wanted"
    if not parts.hostname or port is None or port <= 0:
        return "host and a port from 1 to 65535 wanted"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "nothing after host:port wanted"
    if parts.scheme == "tls" and importlib.util.find_spec("dask") is not None:
        import dask

        if not dask.config.get("distributed.comm.tls.client.cert", None):
            # (the Client failed with a TypeError, and its half-built self then waited 60 s
            # at exit to close)
            return ("tls:// needs dask's TLS settings (distributed.comm.tls.client.cert and "
                    ".key, and ca-file)")
    if parts.scheme == "ucx" and importlib.util.find_spec("ucp") is None:
        return "ucx:// needs ucx-py"
    return None


@contextmanager
def connect(address: str, *, timeout: float = 30.0):
    """A ``distributed.Client`` for the length of a ``with`` block.

    Parameters
    ----------
    address : str
        A scheduler's address (``tcp://host:8786``), or ``local:N`` for a
        ``distributed.LocalCluster`` of N single-threaded worker processes bound to 127.0.0.1
        (dashboard on a free port), closed when the block ends.
    timeout : float
        Seconds to wait for the scheduler, for its first worker, and, during the block, for a
        worker again once it has none (then :class:`ConnectionError`: dask itself waits for
        ever).

    Yields
    ------
    distributed.Client
        Not made the default client: pass it as ``scheduler=`` (or
        ``dask.config.set(scheduler=client)``).
    """
    n_workers = _local_workers(address)
    distributed = require("distributed")
    asyncio_log = logging.getLogger("asyncio")
    if _not_all_exit not in asyncio_log.filters:
        asyncio_log.addFilter(_not_all_exit)
    if n_workers is None:
        try:  # (a Client made of a malformed address waited 60 s at exit to close)
            distributed.comm.get_address_host_port(address)
            problem = scheduler_address_problem(address)
            if problem is not None:
                raise ValueError(problem)
        except ValueError as exc:
            raise ValueError(f"{address!r} is no dask scheduler address ({exc}): give "
                             "tcp://host:port, or local:N for N local workers") from None
        _probe_scheduler(address, timeout)
        try:
            client = distributed.Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"cannot reach the dask scheduler at {address}: {exc}") from None
        # (reconnecting to a lost scheduler, the client logs its failures, tracebacks of 35
        # lines, as it closes; what was lost is said once, as a ConnectionError)
        log = logging.getLogger("distributed.client")
        log.addFilter(quiet := _WhileConnected(client))
        try:
            with client:
                _wait_for_a_worker(client, address, timeout)
                with _watched(client, address, timeout):
                    yield client
        finally:
            log.removeFilter(quiet)
        return
    environ = dict(os.environ)  # a process LocalCluster edits the parent's environment
    os.environ.update(WORKER_MALLOC)  # the nanny prefers these to its configuration
    dask = require("dask")
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{name}": value
                          for name, value in WORKER_MALLOC.items()}):
        cluster = distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", silence_logs=50,
            preload=["emstream.local_worker"])  # (Ctrl-C is the client's, not the workers')
    try:
        with distributed.Client(cluster, set_as_default=False) as client, \
                _watched(client, address, timeout):
            yield client
    finally:
        cluster.close()
        os.environ.clear()
        os.environ.update(environ)
