"""The shared EM core: one E-step, one M-step, one batch loop.

Everything that fits or scores a mixture goes through these functions: batch EM, online EM
and scoring today, and every later caller (adapters, out-of-core refits, the daemon) too.  The E-step walks the data in chunks of rows,
works in component-major layout ``(K, rows)`` so that reductions over components are cheap
element-wise operations, stays in the log domain, and returns additive statistics.

Example
-------
>>> import numpy as np
>>> from emstream.em import e_step, m_step
>>> from emstream.gaussian import MixtureParams
>>> X = np.array([[0.0], [0.2], [10.0], [10.2]])
>>> params = MixtureParams.from_covariances([.5, .5], [[0.0], [10.0]], [[[1.0]], [[1.0]]], "full")
>>> est = e_step(X, params)
>>> new = m_step(est.stats, reg_covar=0.0)
>>> new.means.ravel().round(3), new.covariances.ravel().round(3)
(array([ 0.1, 10.1]), array([0.01, 0.01]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from ._blas import single_thread_blas
from .gaussian import MixtureParams, covariances_from_stats, log_distances, log_gaussian_chunk
from .stats import SufficientStats, moments_design

# Below exp(-700) a term is < 1e-304 of the largest one: clamping there changes no sum and keeps
# exp out of the subnormal range, which is several times slower.
_LOG_FLOOR = -700.0
# Floats per temporary (K * D * rows) in a chunk: small enough to stay in cache.
_CHUNK_ELEMENTS = 1 << 17


@lru_cache(maxsize=256)
def chunk_rows(n_components: int, n_features: int) -> int:
    """Rows per chunk so that ``(K, D, rows)`` temporaries stay near 1 MiB (in L2)."""
    return int(min(32768, max(256, _CHUNK_ELEMENTS // (n_components * max(n_features, 1)))))


def _chunks(n: int, rows: int):
    for start in range(0, n, rows):
        yield slice(start, min(start + rows, n))


def log_joint_chunk(X: np.ndarray, params: MixtureParams, out=None, design=None) -> np.ndarray:
    """``log π_k + log N(x_i | μ_k, Σ_k)``, shape (K, n)."""
    return log_gaussian_chunk(X, params, with_weights=True, out=out, design=design)


def _unnormalised_posterior(X: np.ndarray, params: MixtureParams, out=None, gate=None,
                            design=None):
    """``exp(log p(x_i, k) - max_k)`` in place, with the max and the column sums.

    ``design`` is the chunk's :func:`~emstream.stats.centred_design` about ``params.centre``,
    if the caller has it.  With ``gate`` (a squared Mahalanobis distance), also says which rows
    lie beyond it from every component: ``log p(x, k) = log_normaliser_k - ½ d²_k``, so the
    test needs no second pass over the data.

    Returns
    -------
    joint : ndarray of shape (K, n)
        Posteriors up to a per-row factor.
    top : ndarray of shape (n,)
    total : ndarray of shape (n,)
        ``Σ_k joint``, so ``log p(x_i) = top + log total`` and ``p(k | x_i) = joint / total``.
    gated : ndarray of shape (n,) of bool, or None without a gate
    """
    # ufunc reductions are called directly below: the ndarray methods add a Python wrapper,
    # which costs as much as the work itself on a small mini-batch.
    lp = log_joint_chunk(X, params, out, design)
    top = np.maximum.reduce(lp, axis=0)
    gated = None
    if gate is not None:
        const = params.log_normaliser
        # Every row's -½ min_k d²_k = max_k (lp_k - const_k) is at least top - max(const), and
        # rounding is monotone, so when min(top) - max(const) clears the gate no row is gated
        # (the usual case) and the per-row test below would only confirm it.
        if np.minimum.reduce(top) - np.maximum.reduce(const) >= -0.5 * gate:
            gated = np.zeros(X.shape[0], dtype=bool)
        else:
            nearest = np.maximum.reduce(lp - const[:, None], axis=0)  # -½ min_k d²_k
            gated = nearest >= -0.5 * gate
            np.logical_not(gated, out=gated)  # NaN-safe: an overflowed row is gated too
    # One cheap test in the common case (a finite sum); a large-but-finite overflow of the sum
    # only sends us to the exact test.
    lost = None if math.isfinite(np.add.reduce(top)) else ~np.isfinite(top)
    if lost is not None and lost.any():
        # A row every component finds infinitely improbable (its distance overflows: a value
        # far beyond everything seen): log p(x) = -inf, rather than NaN, and it belongs to the
        # component nearest to it, its distances compared in logs.  (Shared equally, one value
        # of 1e60 in a series of spread 1e-100 moved every mean to 3e56 with the gate off.)
        columns = np.flatnonzero(lost)
        distance = log_distances(X[columns], params)
        nearest = distance <= distance.min(axis=0)
        lp[:, columns] = 0.0
        top[lost] = 0.0
        lp -= top
        np.maximum(lp, _LOG_FLOOR, out=lp)
        np.exp(lp, out=lp)
        # (exactly 0 for the others, not exp(-700): times a squared distance beyond 1e300 the
        # floor's share still swamped their own scatter)
        lp[:, columns] = nearest
        total = np.add.reduce(lp, axis=0)
        top[lost] = -np.inf
        return lp, top, total, gated
    lp -= top
    np.maximum(lp, _LOG_FLOOR, out=lp)
    np.exp(lp, out=lp)
    total = np.add.reduce(lp, axis=0)
    return lp, top, total, gated


def posterior_chunk(X: np.ndarray, params: MixtureParams):
    """Log-likelihood of each row and responsibilities, for one chunk.

    Parameters
    ----------
    X : ndarray of shape (n, D)
    params : MixtureParams

    Returns
    -------
    log_prob : ndarray of shape (n,)
        ``log p(x_i)``.
    resp : ndarray of shape (K, n)
        ``p(k | x_i)``; columns sum to 1.
    """
    joint, top, total, _ = _unnormalised_posterior(X, params)
    joint /= total
    return top + np.log(total), joint


@dataclass(frozen=True, eq=False)
class EStepResult:
    """What one pass of the E-step over some rows yields; additive like its statistics.

    Attributes
    ----------
    stats : SufficientStats
    log_likelihood : float
        ``Σ_i log p(x_i)`` under the parameters of the pass (weighted, if the rows were).
    n_samples : int or float
        Rows summarised (the sum of their weights, if they were weighted).
    worst_point : ndarray of shape (D,)
        The row the model explains worst (lowest ``log p(x)``): where a dead component is re-seeded.
    worst_log_prob : float
    """

    stats: SufficientStats
    log_likelihood: float
    n_samples: int
    worst_point: np.ndarray
    worst_log_prob: float

    def __add__(self, other: "EStepResult") -> "EStepResult":
        worst = self if self.worst_log_prob <= other.worst_log_prob else other
        return EStepResult(self.stats + other.stats, self.log_likelihood + other.log_likelihood,
                           self.n_samples + other.n_samples, worst.worst_point,
                           worst.worst_log_prob)


def e_step(X: np.ndarray, params: MixtureParams, *, rows: int | None = None) -> EStepResult:
    """Expected sufficient statistics of ``X`` under ``params``.

    Parameters
    ----------
    X : ndarray of shape (n, D), n >= 1
    params : MixtureParams
    rows : int, optional
        Rows per chunk (default from :func:`chunk_rows`).

    Returns
    -------
    EStepResult
    """
    rows = rows or chunk_rows(params.n_components, params.n_features)
    with single_thread_blas(X.shape[0]):
        return _e_step(X, params, rows)


def _e_step(X: np.ndarray, params: MixtureParams, rows: int) -> EStepResult:
    result = None
    buffer = np.empty((params.n_components, min(rows, X.shape[0])))
    for part in _chunks(X.shape[0], rows):
        piece, _, _ = _estimate_chunk(X[part], params, buffer)
        result = piece if result is None else result + piece
    return result


def _estimate_chunk(chunk: np.ndarray, params: MixtureParams, buffer, gate=None, resp=None,
                    weights=None):
    """The E-step of one chunk: statistics of its rows within ``gate``, and each row's log p(x).

    ``resp``, if given (shape (n, K)), receives the responsibilities of every row; ``weights``
    (shape (n,)), if given, weighs each row's share of the statistics and of the
    log-likelihood (a row of weight 0 adds nothing).
    Returns ``(EStepResult or None if every row is gated, log_prob, gated or None)``.
    """
    kind = params.covariance_type
    # One design [x - ref; 1; products] serves the E-step (full, tied) and the moments.
    design = moments_design(chunk, params.centre, kind)
    joint, top, total, gated = _unnormalised_posterior(chunk, params, buffer, gate, design)
    np.multiply(joint, 1.0 / total, out=joint)  # now the responsibilities p(k | x_i)
    if resp is not None:
        resp[:] = joint.T
    log_prob = np.log(total)
    log_prob += top
    n_gated = 0 if gated is None else np.count_nonzero(gated)
    if weights is not None:
        return _estimate_weighted(chunk, params, joint, log_prob, gated, weights, design)
    if n_gated:
        if n_gated == gated.shape[0]:
            return None, log_prob, gated
        joint[:, gated] = 0.0  # a gated row adds nothing to any statistic
        learned = np.flatnonzero(~gated)
        worst = int(learned[np.argmin(log_prob[learned])])
        log_likelihood, n_samples = float(log_prob[learned].sum()), learned.size
    else:
        worst = int(log_prob.argmin())
        log_likelihood, n_samples = float(np.add.reduce(log_prob)), chunk.shape[0]
    stats = SufficientStats.from_chunk(chunk, joint, kind, params.means, ref=params.centre,
                                       design=design)
    return (EStepResult(stats, log_likelihood, n_samples, chunk[worst].copy(),
                        float(log_prob[worst])), log_prob, gated)


def _estimate_weighted(chunk, params, resp, log_prob, gated, weights, design):
    """:func:`_estimate_chunk`'s statistics with a weight per row (gated rows weigh 0)."""
    weights = np.asarray(weights, dtype=float)
    if gated is not None:
        weights = np.where(gated, 0.0, weights)
    used = np.flatnonzero(weights > 0)
    if used.size == 0:
        return None, log_prob, gated
    resp *= weights
    worst = int(used[np.argmin(log_prob[used])])
    stats = SufficientStats.from_chunk(chunk, resp, params.covariance_type, params.means,
                                       ref=params.centre, design=design)
    return (EStepResult(stats, float(np.dot(weights[used], log_prob[used])),
                        float(weights.sum()), chunk[worst].copy(), float(log_prob[worst])),
            log_prob, gated)


@dataclass(frozen=True, eq=False)
class ScoredStep:
    """What :func:`e_step_scored` yields: statistics of the learnable rows, and every row's score.

    Attributes
    ----------
    estimate : EStepResult or None
        Over the rows within the gate only; ``None`` if every row was gated.
    log_prob : ndarray of shape (n,)
        ``log p(x_i)`` under the parameters of the pass (before anything is learned).
    gated : ndarray of shape (n,) of bool
        Rows whose squared Mahalanobis distance to every component exceeds the gate.
    resp : ndarray of shape (n, K) or None
        ``p(k | x_i)`` of every row, if asked for.
    """

    estimate: EStepResult | None
    log_prob: np.ndarray
    gated: np.ndarray
    resp: np.ndarray | None


def e_step_scored(X: np.ndarray, params: MixtureParams, *, gate: float | None = None,
                  with_resp: bool = False, weights: np.ndarray | None = None) -> ScoredStep:
    """The E-step of an online update, which also scores and gates every row (one pass).

    Parameters
    ----------
    X : ndarray of shape (n, D)
    params : MixtureParams
    gate : float or None
        Rows farther than this squared Mahalanobis distance from every component are scored
        but left out of the statistics.
    with_resp : bool
        Also return the responsibilities.
    weights : ndarray of shape (n,), optional
        Weight of each row in the statistics and the log-likelihood (``n_samples`` is then
        their sum): for samples that stand for more (or less) of the stream than one point.

    Returns
    -------
    ScoredStep

    Examples
    --------
    >>> import numpy as np
    >>> params = MixtureParams.from_covariances([1.0], [[0.0]], [[[1.0]]], "full")
    >>> step = e_step_scored(np.array([[0.5], [1000.0]]), params, gate=64.0)
    >>> step.gated, step.estimate.n_samples, float(step.estimate.stats.means[0, 0])
    (array([False,  True]), 1, 0.5)
    """
    n = X.shape[0]
    rows = chunk_rows(params.n_components, params.n_features)
    if n <= rows:  # one chunk (a typical mini-batch): its own arrays are the answer
        resp = np.empty((n, params.n_components)) if with_resp else None
        with single_thread_blas(n):
            result, log_prob, gated = _estimate_chunk(X, params, None, gate, resp, weights)
        return ScoredStep(result, log_prob, np.zeros(n, dtype=bool) if gated is None else gated,
                          resp)
    log_prob = np.empty(n)
    gated = np.zeros(n, dtype=bool)
    resp = np.empty((n, params.n_components)) if with_resp else None
    result = None
    buffer = np.empty((params.n_components, min(rows, n)))
    with single_thread_blas(n):
        for part in _chunks(n, rows):
            piece, log_prob[part], chunk_gated = _estimate_chunk(
                X[part], params, buffer, gate, None if resp is None else resp[part],
                None if weights is None else weights[part])
            if chunk_gated is not None:
                gated[part] = chunk_gated
            if piece is not None:
                result = piece if result is None else result + piece
    return ScoredStep(result, log_prob, gated, resp)


def score_samples(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log p(x_i)`` for every row, shape (n,)."""
    out = np.empty(X.shape[0])
    rows = chunk_rows(params.n_components, params.n_features)
    buffer = np.empty((params.n_components, min(rows, X.shape[0])))
    with single_thread_blas(X.shape[0]):
        for part in _chunks(X.shape[0], rows):
            _, top, total, _ = _unnormalised_posterior(X[part], params, buffer)
            np.log(total, out=out[part])
            out[part] += top
    return out


def posterior(X: np.ndarray, params: MixtureParams):
    """``log p(x_i)`` and ``p(k | x_i)`` together (one pass), shapes (n,) and (n, K)."""
    log_prob = np.empty(X.shape[0])
    resp = np.empty((X.shape[0], params.n_components))
    with single_thread_blas(X.shape[0]):
        for part in _chunks(X.shape[0], chunk_rows(params.n_components, params.n_features)):
            log_prob[part], chunk_resp = posterior_chunk(X[part], params)
            resp[part] = chunk_resp.T
    return log_prob, resp


def predict_proba(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """Responsibilities ``p(k | x_i)``, shape (n, K)."""
    out = np.empty((X.shape[0], params.n_components))
    with single_thread_blas(X.shape[0]):
        for part in _chunks(X.shape[0], chunk_rows(params.n_components, params.n_features)):
            out[part] = posterior_chunk(X[part], params)[1].T
    return out


def predict(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """Most probable component of every row, shape (n,)."""
    out = np.empty(X.shape[0], dtype=np.intp)
    with single_thread_blas(X.shape[0]):
        for part in _chunks(X.shape[0], chunk_rows(params.n_components, params.n_features)):
            out[part] = log_joint_chunk(X[part], params).argmax(axis=0)
    return out


def m_step(stats: SufficientStats, *, reg_covar: float,
           floor: np.ndarray | None = None) -> MixtureParams:
    """Parameters that maximise the expected complete-data log-likelihood given ``stats``.

    Parameters
    ----------
    stats : SufficientStats
    reg_covar : float
        Added to the diagonal of every covariance.
    floor : ndarray of shape (D,), optional
        Smallest variance per feature (see :func:`emstream.gaussian.covariances_from_stats`).

    Returns
    -------
    MixtureParams
    """
    total = stats.total
    if total > 0:
        weights = stats.counts / total
    else:
        weights = np.full(stats.n_components, 1.0 / stats.n_components)
    covariances = covariances_from_stats(stats, reg_covar, floor)
    # Factorising K small matrices threads only from a few hundred features up.
    with single_thread_blas(None if stats.n_features > 256 else 0):
        return MixtureParams.from_covariances(weights, stats.means.copy(), covariances,
                                              stats.covariance_type)


@dataclass(frozen=True, eq=False)
class EMResult:
    """Outcome of :func:`run_em`: final parameters and the statistics they were computed from."""

    params: MixtureParams
    stats: SufficientStats
    lower_bound: float
    n_iter: int
    converged: bool
    n_reseeded: int


def run_em(expectation: Callable[[MixtureParams], EStepResult], params: MixtureParams, *,
           reg_covar: float, tol: float, max_iter: int, lower_bound: float = -np.inf,
           reseed: Callable | None = None, on_iteration: Callable | None = None,
           floor: np.ndarray | None = None) -> EMResult:
    """Batch EM: E-step over all data, M-step, until the average log-likelihood gains < ``tol``.

    Parameters
    ----------
    expectation : callable ``params -> EStepResult``
        One pass of the E-step over the whole data set (numpy chunks, Dask blocks, ...).
    params : MixtureParams
        Starting point.
    reg_covar, tol, max_iter :
        As in :class:`emstream.GaussianMixture`.
    floor : ndarray of shape (D,), optional
        Smallest variance per feature, for every M-step.
    lower_bound : float
        Average log-likelihood of the starting point if known (a warm start), else ``-inf``.
    reseed : callable ``(stats, EStepResult) -> (stats, n)``, optional
        Re-seeds dead components in the statistics; an iteration that re-seeds never counts
        as converged.
    on_iteration : callable ``(n_iter, lower_bound) -> None``, optional
        Progress hook.

    Returns
    -------
    EMResult
        ``params == m_step(stats)``; ``lower_bound`` is the average log-likelihood of the data
        under the parameters of the last E-step (scikit-learn's ``lower_bound_``).
    """
    converged = False
    stats = None
    n_reseeded = 0
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        previous = lower_bound
        est = expectation(params)
        lower_bound = est.log_likelihood / est.n_samples
        stats = est.stats
        reseeded = 0
        if reseed is not None:
            stats, reseeded = reseed(stats, est)
            n_reseeded += reseeded
        params = m_step(stats, reg_covar=reg_covar, floor=floor)
        if on_iteration is not None:
            on_iteration(n_iter, lower_bound)
        if not reseeded and abs(lower_bound - previous) < tol:
            converged = True
            break
    return EMResult(params, stats, float(lower_bound), n_iter, converged, n_reseeded)
