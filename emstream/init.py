"""Starting points for EM and re-seeding of components that died.

Initialisation returns *statistics* (one-hot responsibilities from a clustering of the data), so
the first parameters come out of the same M-step as every later one.

Example
-------
>>> import numpy as np
>>> from emstream.init import initial_stats
>>> X = np.r_[np.zeros(50), np.ones(50) * 10][:, None] + np.linspace(0, 1, 100)[:, None]
>>> stats = initial_stats(X, 2, "diag", "k-means++", np.random.default_rng(0))
>>> sorted(stats.counts.tolist())
[50.0, 50.0]
"""

from __future__ import annotations

import warnings

import numpy as np

from .stats import SufficientStats, none_below

INIT_METHODS = ("k-means++", "kmeans", "random", "random_from_data")
# k-means on more rows than this adds nothing to a starting point but time.
_MAX_INIT_ROWS = 200_000
# k-means trials (several seedings) run on at most this many rows.
_MAX_TRIAL_ROWS = 20_000
_TINY_COUNT = float(np.finfo(float).tiny)


def kmeans_plusplus(X: np.ndarray, n_components: int, rng: np.random.Generator,
                    *, lloyd_iterations: int = 10, n_trials: int = 8) -> np.ndarray:
    """Centres by k-means: k-means++ seeding (scipy) refined by Lloyd's algorithm.

    The best of ``n_trials`` seedings (lowest inertia after two Lloyd steps) is refined, as
    scikit-learn's ``KMeans`` keeps its best run: a single seeding lands in a poor k-means solution
    often enough to send EM to a worse local optimum (measured on the seed series: 16 of 100 seeds
    with one trial, 0 of 200 with eight).

    Parameters
    ----------
    X : ndarray of shape (n, D)
    n_components : int
    rng : numpy.random.Generator
    lloyd_iterations : int
        Lloyd iterations after each seeding (at least 1).
    n_trials : int

    Returns
    -------
    ndarray of shape (K, D)
        With fewer distinct rows than ``K``, every distinct row is used and the rest repeat.
    """
    from scipy.cluster import vq  # deferred: half of emstream's import time otherwise

    distinct = few_distinct_rows(X, n_components)
    if distinct is not None:
        reps = np.resize(np.arange(distinct.shape[0]), n_components)
        return distinct[reps].copy()
    if X.shape[0] > _MAX_TRIAL_ROWS:
        X = X[np.sort(rng.choice(X.shape[0], _MAX_TRIAL_ROWS, replace=False))]
    best, best_inertia = None, np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about clusters that end empty; handled later
        # Trials are short (two Lloyd steps); only the best one is refined to the end.
        for _ in range(n_trials):
            centres, _ = vq.kmeans2(X, n_components, iter=2, minit="++", rng=rng,
                                    missing="warn", check_finite=False)
            centres = np.asarray(centres, dtype=float).reshape(n_components, X.shape[1])
            _, dist = vq.vq(X, centres, check_finite=False)
            inertia = float(np.dot(dist, dist))
            if inertia < best_inertia:
                best, best_inertia = centres, inertia
        if lloyd_iterations > 2:
            best, _ = vq.kmeans2(X, best, iter=lloyd_iterations - 2, minit="matrix",
                                 missing="warn", check_finite=False)
    return np.asarray(best, dtype=float).reshape(n_components, X.shape[1])


def few_distinct_rows(X: np.ndarray, at_least: int) -> np.ndarray | None:
    """Every distinct row of X if it has fewer than ``at_least``, else None (the usual case)."""
    head = X[: max(4 * at_least, 64)]
    # A set of the first rows usually settles it: 5x cheaper than np.unique on rows.  Equal
    # values are equal rows here (0.0 and -0.0 too), so a count this high is a count of rows
    # np.unique would find distinct as well.
    if len(set(map(tuple, head.tolist()))) >= at_least:
        return None
    found = np.unique(X, axis=0)
    return found if found.shape[0] < at_least else None


def _one_hot(labels: np.ndarray, n_components: int) -> np.ndarray:
    resp = np.zeros((n_components, labels.shape[0]))
    resp[labels, np.arange(labels.shape[0])] = 1.0
    return resp


def initial_stats(X: np.ndarray, n_components: int, covariance_type: str, method: str,
                  rng: np.random.Generator, *, n_trials: int = 8) -> SufficientStats:
    """Statistics of a first clustering of ``X``: the M-step turns them into starting parameters.

    Parameters
    ----------
    X : ndarray of shape (n, D), n >= 1
    n_components : int
    covariance_type : str
    method : {"k-means++", "kmeans", "random", "random_from_data"}
        ``k-means++``: the best of several k-means++ seedings, each refined by 10 Lloyd
        iterations; every row is then assigned to its nearest centre.
        ``kmeans``: the same with Lloyd's algorithm run up to 100 iterations.  ``random``: random soft
        responsibilities (as scikit-learn).  ``random_from_data``: random rows as centres.
    rng : numpy.random.Generator
    n_trials : int
        k-means++ seedings tried (the best refined), for "k-means++" and "kmeans".

    Returns
    -------
    SufficientStats
        Components that would start with fewer than two points get the pooled within-cluster
        scatter, so no component starts as a spike on a single (possibly repeated) value.
    """
    from scipy.cluster import vq  # deferred: half of emstream's import time otherwise

    if X.shape[0] > _MAX_INIT_ROWS:
        X = X[np.sort(rng.choice(X.shape[0], _MAX_INIT_ROWS, replace=False))]
    if method == "random":
        resp = rng.uniform(size=(n_components, X.shape[0]))
        resp /= resp.sum(axis=0)
        return SufficientStats.from_chunk(X, resp, covariance_type)
    if method == "random_from_data":
        centres = X[rng.choice(X.shape[0], n_components, replace=X.shape[0] < n_components)]
    else:
        centres = kmeans_plusplus(X, n_components, rng,
                                  lloyd_iterations=100 if method == "kmeans" else 10,
                                  n_trials=n_trials)
    labels, _ = vq.vq(X, centres, check_finite=False)
    stats = SufficientStats.from_chunk(X, _one_hot(labels, n_components), covariance_type,
                                       centres)
    return _widen_small_clusters(stats, centres, X)


def _widen_small_clusters(stats: SufficientStats, centres: np.ndarray,
                          X: np.ndarray) -> SufficientStats:
    counts = stats.counts
    small = counts < 2
    if not small.any():
        return stats
    pooled = _pooled_scatter_per_point(stats, ~small)
    if not np.any(pooled):
        pooled = _pooled_scatter_per_point(
            SufficientStats.from_chunk(X, np.ones((1, X.shape[0])), stats.covariance_type),
            np.ones(1, dtype=bool))
    new_counts = np.where(small, 1.0, counts)
    means = np.where(small[:, None] & (counts == 0)[:, None], centres, stats.means)
    scatter = stats.scatter.copy()
    if stats.covariance_type != "tied":
        scatter[small] = pooled
    return stats.replace(counts=new_counts, means=means, scatter=scatter)


def _pooled_scatter_per_point(stats: SufficientStats, which: np.ndarray) -> np.ndarray:
    """Scatter of one point's worth of the pooled within-component covariance of ``which``."""
    total = stats.counts[which].sum()
    if total <= 0:
        return np.zeros(stats.scatter.shape[1:])
    if stats.covariance_type == "tied":
        return stats.scatter / total
    return stats.scatter[which].sum(axis=0) / total


def reseed_dead_components(stats: SufficientStats, point: np.ndarray, *, n_points: float,
                           min_points: float = 1e-2):
    """Move one dead component onto ``point`` (the worst-explained row).

    A component is dead when it holds less than ``min_points`` points' worth of responsibility.
    It is reborn with one point's worth of weight, centred on ``point``, with the pooled
    covariance of the live components.

    Parameters
    ----------
    stats : SufficientStats
        Totals (``n_points`` points) or averages (``total == 1``) alike.
    point : ndarray of shape (D,)
    n_points : float
        How many points ``stats`` summarise (for averages: the effective memory of online EM).

    Returns
    -------
    stats : SufficientStats
    n_reseeded : int
        0 or 1.
    """
    total = stats.total
    if total <= 0 or n_points <= 0:
        return stats, 0
    per_point = total / n_points
    if none_below(stats.counts, min_points * per_point):
        return stats, 0  # the common case: nothing dead
    dead = np.flatnonzero(stats.counts < min_points * per_point)
    if dead.size == 0 or dead.size == stats.n_components:
        return stats, 0
    k = int(dead[0])
    live = np.ones(stats.n_components, dtype=bool)
    live[dead] = False
    pooled = _pooled_scatter_per_point(stats, live)
    counts = stats.counts.copy()
    means = stats.means.copy()
    scatter = stats.scatter.copy()
    counts[k] = per_point
    means[k] = point
    if stats.covariance_type != "tied":
        scatter[k] = pooled * per_point
    return stats.replace(counts=counts, means=means, scatter=scatter), 1


def split_component(stats: SufficientStats, k: int, into: int) -> SufficientStats:
    """Move component ``into`` onto half of component ``k``: ``k`` split along its main axis.

    The two halves get half of ``k``'s weight each, means ``½√λ`` on either side of its mean
    along its principal axis (variance ``λ``), and ``k``'s covariance with that variance
    quartered, so EM starts them apart and lets the data decide (the split move of Ueda et
    al.'s split-and-merge EM).  Tied statistics keep their shared scatter; only the means split.

    Parameters
    ----------
    stats : SufficientStats
        Totals or averages.
    k, into : int
        Distinct components: the one split, and the one (dead or unsupported) that takes half.

    Returns
    -------
    SufficientStats
    """
    kind = stats.covariance_type
    counts, means, scatter = stats.counts.copy(), stats.means.copy(), stats.scatter.copy()
    half = 0.5 * counts[k]
    per_point = 1.0 / counts[k] if counts[k] > 0 else 0.0
    d = stats.n_features
    if kind == "full":
        cov = scatter[k] * per_point
        values, vectors = np.linalg.eigh(cov)
        axis, variance = vectors[:, -1], max(float(values[-1]), 0.0)
        shrunk = cov - 0.75 * variance * np.outer(axis, axis)
    elif kind == "diag":
        cov = scatter[k] * per_point
        j = int(np.argmax(cov))
        axis, variance = np.eye(d)[j], float(cov[j])
        shrunk = cov.copy()
        shrunk[j] *= 0.25
    elif kind == "spherical":
        variance = float(scatter[k] * per_point) / d
        axis = np.full(d, 1.0 / np.sqrt(d))
        shrunk = scatter[k] * per_point * (1.0 - 0.75 / d)
    else:  # tied: the shared scatter's main axis, scatter unchanged
        values, vectors = np.linalg.eigh(scatter / max(stats.total, _TINY_COUNT))
        axis, variance = vectors[:, -1], max(float(values[-1]), 0.0)
        shrunk = None
    shift = 0.5 * np.sqrt(variance) * axis
    centre = means[k].copy()
    counts[k] = counts[into] = half
    means[k], means[into] = centre - shift, centre + shift
    if shrunk is not None:
        scatter[k] = scatter[into] = shrunk * half
    return stats.replace(counts=counts, means=means, scatter=scatter)


def merge_components(stats: SufficientStats, i: int, j: int) -> SufficientStats:
    """Fold component ``j`` into component ``i`` (the statistics of their union, Chan-style);
    ``j`` is left empty for a split to reuse.

    Parameters
    ----------
    stats : SufficientStats
        Per-component scatter (full, diag, spherical) or tied.
    i, j : int
        Distinct components.

    Returns
    -------
    SufficientStats
    """
    counts, means, scatter = stats.counts.copy(), stats.means.copy(), stats.scatter.copy()
    n_i, n_j = counts[i], counts[j]
    n = n_i + n_j
    if n > 0:
        delta = means[j] - means[i]
        means[i] = means[i] + delta * (n_j / n)
        between = n_i * n_j / n
        kind = stats.covariance_type
        if kind == "full":
            scatter[i] = scatter[i] + scatter[j] + between * np.outer(delta, delta)
        elif kind == "diag":
            scatter[i] = scatter[i] + scatter[j] + between * delta * delta
        elif kind == "spherical":
            scatter[i] = scatter[i] + scatter[j] + between * float(delta @ delta)
        else:
            scatter = scatter + between * np.outer(delta, delta)
    counts[i], counts[j] = n, 0.0
    if stats.covariance_type != "tied":
        scatter[j] = 0.0
    return stats.replace(counts=counts, means=means, scatter=scatter)
