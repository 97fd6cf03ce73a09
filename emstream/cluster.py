"""Whole models fitted and refitted on a dask cluster, from a service or the daemon.

:func:`fit_on_scheduler` batch-fits a copy of a model on a cluster given by address (the
blocks' E-steps where they live, :mod:`emstream.distributed`); :func:`refit_on_client` is the
daemon's background refit.  The models passed in are never changed.  Workers need emstream
installed (the same version).
"""

from __future__ import annotations

import copy

from .distributed import connect, is_dask_collection, require
from .mixture import GaussianMixture
from .validation import check_array

# Fewest rows per block when numpy data are shipped to a cluster.
MIN_BLOCK_ROWS = 100_000


def fit_on_scheduler(model, X, address: str, *, timeout: float = 30.0):
    """Batch-fit a model on a dask cluster and return it; the model passed in is unchanged.

    For a refit from a service: ``fit_on_scheduler(model.set_params(warm_start=True), window,
    "tcp://host:8786")`` continues from the model's current state, like ``model.fit(window)``
    does in-process, and gives the same result up to rounding.  Workers need emstream
    installed.

    Parameters
    ----------
    model : GaussianMixture or dict
        The model to refit (a copy is fitted), or constructor parameters of a new one.
    X : ndarray of shape (n_samples, n_features), or a dask array or data frame
        numpy rows are shipped to the cluster once, in one block per worker thread (at least
        100,000 rows each); a dask collection's graph runs on the cluster.
    address : str
        ``tcp://host:port`` of a running ``dask scheduler``, or ``local:N`` (see
        :func:`emstream.distributed.connect`).
    timeout : float
        Seconds to wait for the scheduler.

    Returns
    -------
    GaussianMixture
        Fitted by batch EM through the same core as ``fit``.

    Examples
    --------
    >>> from emstream.cluster import fit_on_scheduler
    >>> gm = fit_on_scheduler({"n_components": 3}, X, "tcp://10.0.0.5:8786")  # doctest: +SKIP
    """
    fitted = GaussianMixture(**model) if isinstance(model, dict) else copy.deepcopy(model)
    with connect(address, timeout=timeout) as client:
        X = _blocks_for(X, client)
        with require("dask").config.set(scheduler=client):
            fitted.fit(X)
    return fitted


def refit_on_client(model, X, client):
    """:meth:`GaussianMixture.refit` of a copy of ``model``, on a connected client's cluster
    when ``X`` is a dask collection; ``model`` itself is unchanged.

    The daemon's background refits use this.  A numpy window (recent rows, in arrival order) is
    refitted by one task on a worker, by the refit's own rule (:mod:`emstream.refit`:
    candidates judged on held-out rows, far rows that do not recur left out, the current model
    kept unless beaten), which needs the rows and their order in one place; a dask collection
    is refitted across the cluster by batch EM from the current state and a fresh start, the
    better kept.  Labels are matched to ``model``'s either way.

    Parameters
    ----------
    model : GaussianMixture
        Fitted.
    X : ndarray of shape (n_samples, n_features), or a dask array or data frame
    client : distributed.Client
        For example from :func:`emstream.distributed.connect`.

    Returns
    -------
    GaussianMixture

    Examples
    --------
    >>> with connect("local:2") as client:                     # doctest: +SKIP
    ...     refitted = refit_on_client(model, recent_rows, client)
    """
    if not is_dask_collection(X):
        return client.submit(_refitted_copy, model, check_array(X), pure=False).result()
    refitted = copy.deepcopy(model)
    with require("dask").config.set(scheduler=client):
        refitted.refit(X)
    return refitted


def _refitted_copy(model, X):
    """A worker's task: a refitted copy of ``model`` (the caller's stays as it was)."""
    return copy.deepcopy(model).refit(X)


def _blocks_for(X, client):
    """numpy rows as a dask array of one block per worker thread (>= MIN_BLOCK_ROWS each)."""
    if is_dask_collection(X):
        return X
    X = check_array(X)
    threads = max(1, sum(client.nthreads().values()))
    rows = max(MIN_BLOCK_ROWS, -(-X.shape[0] // threads))
    return require("dask.array").from_array(X, chunks=(rows, X.shape[1]))
