"""How far apart two Gaussian mixtures are, and which components correspond.

Components are matched by the Hungarian assignment (scipy) on the Bhattacharyya distance
between component Gaussians; the mixtures as a whole are compared by the Cauchy–Schwarz
divergence, which has a closed form for Gaussian mixtures, is symmetric, and is 0 exactly when
the two densities are equal (so a relabelled copy is at distance 0).

Example
-------
>>> import numpy as np
>>> from emstream.compare import match_components
>>> w = np.array([0.3, 0.7]); m = np.array([[0.0], [5.0]]); c = np.ones((2, 1, 1))
>>> match = match_components(w, m, c, w[::-1], m[::-1], c[::-1])
>>> match.pairs, round(match.divergence, 12)
([(0, 1), (1, 0)], 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gaussian import LOG_2PI


def full_covariances(covariances: np.ndarray, covariance_type: str, n_components: int,
                     n_features: int) -> np.ndarray:
    """Covariances of any type as a (K, D, D) stack."""
    if covariance_type == "full":
        return np.asarray(covariances)
    if covariance_type == "tied":
        return np.broadcast_to(covariances, (n_components, n_features, n_features)).copy()
    if covariance_type == "diag":
        return np.stack([np.diag(v) for v in covariances])
    return np.asarray(covariances)[:, None, None] * np.eye(n_features)


def _ridged(covs: np.ndarray) -> np.ndarray:
    """Covariances (K, D, D) plus a ridge of 1e-9 of each one's mean variance: positive
    definite again where a component collapsed onto a line at a scale that swallows
    ``reg_covar`` (values near 1e99 whose variance is 1e151: 1e-6 is lost in it)."""
    covs = np.asarray(covs, dtype=float)
    d = covs.shape[-1]
    scale = np.maximum(np.trace(covs, axis1=-2, axis2=-1) / d, np.finfo(float).tiny)
    return covs + 1e-9 * scale[:, None, None] * np.eye(d)


def _robustly(measure, means_a, covs_a, means_b, covs_b) -> np.ndarray:
    """``measure`` of the components as they are, or, if some covariance is numerically
    singular (a factorisation fails or a value comes out non-finite), of the ridged ones
    (:func:`_ridged`); the usual case is computed exactly as before."""
    try:
        with np.errstate(all="ignore"):
            out = measure(means_a, covs_a, means_b, covs_b)
        if np.all(np.isfinite(out)):
            return out
    except np.linalg.LinAlgError:
        pass
    with np.errstate(all="ignore"):  # (components too far apart still overflow: inf is said)
        return measure(means_a, _ridged(covs_a), means_b, _ridged(covs_b))


def _log_overlap(means_a, covs_a, means_b, covs_b) -> np.ndarray:
    """``log ∫ N(x|a_i) N(x|b_j) dx = log N(μ_a_i | μ_b_j, Σ_a_i + Σ_b_j)``, shape (Ka, Kb)."""
    return _robustly(_log_overlap_of, means_a, covs_a, means_b, covs_b)


def _log_overlap_of(means_a, covs_a, means_b, covs_b) -> np.ndarray:
    out = np.empty((len(means_a), len(means_b)))
    d = means_a.shape[1]
    for i, (ma, ca) in enumerate(zip(means_a, covs_a)):
        for j, (mb, cb) in enumerate(zip(means_b, covs_b)):
            chol = np.linalg.cholesky(ca + cb)
            z = np.linalg.solve(chol, ma - mb)
            out[i, j] = -0.5 * (d * LOG_2PI + z @ z) - np.log(np.diag(chol)).sum()
    return out


def bhattacharyya(means_a, covs_a, means_b, covs_b) -> np.ndarray:
    """Bhattacharyya distance between every pair of components, shape (Ka, Kb); finite even
    for numerically singular covariances (see :func:`_robustly`)."""
    return np.maximum(_robustly(_bhattacharyya_of, means_a, covs_a, means_b, covs_b), 0.0)


def _bhattacharyya_of(means_a, covs_a, means_b, covs_b) -> np.ndarray:
    # Every pair at once: numpy's linalg runs the same LAPACK routine on each matrix of a
    # stack, at a fifth of the time of a Python loop over the pairs for K = 3 (matching runs
    # at every refit, and at every refresh of the warm-up's provisional model).
    avg = 0.5 * (covs_a[:, None] + covs_b[None, :])  # (Ka, Kb, D, D)
    diff = means_a[:, None, :] - means_b[None, :, :]  # (Ka, Kb, D)
    quad = np.einsum("abi,abi->ab", diff, np.linalg.solve(avg, diff[..., None])[..., 0])
    log_det_a, log_det_b = np.linalg.slogdet(covs_a)[1], np.linalg.slogdet(covs_b)[1]
    return 0.125 * quad + 0.5 * (np.linalg.slogdet(avg)[1]
                                 - 0.5 * (log_det_a[:, None] + log_det_b[None, :]))


def cauchy_schwarz(weights_a, means_a, covs_a, weights_b, means_b, covs_b) -> float:
    """Cauchy–Schwarz divergence ``-log(∫pq / sqrt(∫p² ∫q²))`` >= 0 between two mixtures."""
    def log_inner(wa, ma, ca, wb, mb, cb):
        terms = _log_overlap(ma, ca, mb, cb) + np.log(wa)[:, None] + np.log(wb)[None, :]
        from scipy.special import logsumexp

        return logsumexp(terms)

    wa, wb = np.maximum(weights_a, 1e-300), np.maximum(weights_b, 1e-300)
    cross = log_inner(wa, means_a, covs_a, wb, means_b, covs_b)
    self_a = log_inner(wa, means_a, covs_a, wa, means_a, covs_a)
    self_b = log_inner(wb, means_b, covs_b, wb, means_b, covs_b)
    return float(max(0.5 * (self_a + self_b) - cross, 0.0))


@dataclass(frozen=True)
class Match:
    """Components of mixture A matched to those of B.

    Attributes
    ----------
    pairs : list of (i, j)
        Component i of A corresponds to component j of B, sorted by i.
    distances : ndarray of shape (len(pairs),)
        Bhattacharyya distance of each pair.
    unmatched_a, unmatched_b : list of int
        Components left over when the two mixtures have different sizes.
    divergence : float
        Cauchy–Schwarz divergence between the two mixtures (0 for equal densities).
    """

    pairs: list
    distances: np.ndarray
    unmatched_a: list
    unmatched_b: list
    divergence: float

    @property
    def is_permutation(self) -> bool:
        """True when the pairing relabels components (some i matched to j != i)."""
        return any(i != j for i, j in self.pairs)


def component_distances(params) -> np.ndarray:
    """Bhattacharyya distance between every two components of one mixture
    (:class:`emstream.gaussian.MixtureParams`, any covariance type), shape (K, K)."""
    k, d = params.n_components, params.n_features
    covs = full_covariances(params.covariances, params.covariance_type, k, d)
    return bhattacharyya(params.means, covs, params.means, covs)


def matched_pairs(means_a, covs_a, means_b, covs_b) -> tuple[list, np.ndarray]:
    """Hungarian matching of components (full (K, D, D) covariances) on the Bhattacharyya
    distance: the pairs ``(i, j)`` sorted by i, and the distance matrix (Ka, Kb)."""
    cost = bhattacharyya(means_a, covs_a, means_b, covs_b)
    # (scipy.optimize takes 0.25 s to import: only when components are matched)
    from scipy.optimize import linear_sum_assignment

    # A distance that overflowed (variances of 1e-300 beside means 1e10 apart) is as far as
    # any: the matching stays defined (NaN made linear_sum_assignment raise).
    far = np.finfo(float).max / max(cost.size, 1)
    rows, cols = linear_sum_assignment(np.nan_to_num(cost, nan=far, posinf=far))
    return sorted(zip(rows.tolist(), cols.tolist())), cost


def match_components(weights_a, means_a, covs_a, weights_b, means_b, covs_b) -> Match:
    """Hungarian matching of components (full (K, D, D) covariances) and the overall divergence."""
    pairs, cost = matched_pairs(means_a, covs_a, means_b, covs_b)
    distances = np.array([cost[i, j] for i, j in pairs])
    matched_a = {i for i, _ in pairs}
    matched_b = {j for _, j in pairs}
    return Match(pairs, distances,
                 [i for i in range(len(means_a)) if i not in matched_a],
                 [j for j in range(len(means_b)) if j not in matched_b],
                 cauchy_schwarz(weights_a, means_a, covs_a, weights_b, means_b, covs_b))
