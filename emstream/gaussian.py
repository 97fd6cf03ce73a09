"""Gaussian densities and covariances, one small function per covariance type.

Precisions are kept as Cholesky factors ``P`` with ``Σ⁻¹ = P Pᵀ`` (``P`` upper triangular, the
convention of scikit-learn's ``precisions_cholesky_``) so that log densities need no inverse and
no determinant: ``log N(x | μ, Σ) = -D/2 log 2π + Σ log diag P - ½ ‖Pᵀ(x - μ)‖²``.

Example
-------
>>> import numpy as np
>>> from emstream.gaussian import precision_cholesky, log_gaussian_chunk
>>> cov = np.array([[[4.0]]])
>>> pc, _ = precision_cholesky(cov, "full")
>>> pc
array([[[0.5]]])
>>> params = MixtureParams(np.array([1.0]), np.array([[0.0]]), cov, pc, "full")
>>> float(log_gaussian_chunk(np.array([[0.0]]), params)[0, 0])   # -½ log(2π·4)
-1.612085713764618
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .stats import all_above, centred_design, computed_once

LOG_2PI = float(np.log(2.0 * np.pi))
_TINY = float(np.finfo(float).tiny)
_SQRT_HALF = float(np.sqrt(0.5))
# Smallest variance kept, relative to the data's variance per feature (see covariances_from_stats).
_RELATIVE_VARIANCE_FLOOR = 1e-12
# A pooled within-component variance at or below this counts as none (see _floor_scale).
_COLLAPSED = _TINY / _RELATIVE_VARIANCE_FLOOR


@dataclass(frozen=True, eq=False)
class MixtureParams:
    """Parameters of a Gaussian mixture.

    Attributes
    ----------
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, D)
    covariances : ndarray, shaped by covariance type (see :mod:`emstream.stats`)
    precisions_cholesky : ndarray, same shape as ``covariances``
    covariance_type : {"full", "tied", "diag", "spherical"}
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str

    @property
    def n_components(self) -> int:
        return self.weights.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @computed_once
    def log_normaliser(self) -> np.ndarray:
        """``log π_k + log det P_k - D/2 log 2π`` per component, shape (K,)."""
        log_det = log_det_cholesky(self.precisions_cholesky, self.covariance_type,
                                   self.n_features)
        log_weights = np.log(np.maximum(self.weights, _TINY))
        log_weights += log_det
        log_weights -= 0.5 * self.n_features * LOG_2PI
        return log_weights

    @computed_once
    def half_precision_sqrt(self) -> np.ndarray:
        """For one feature: ``sqrt(precision_k / 2)``, shape (K,)."""
        flat = self.precisions_cholesky.reshape(-1)
        if flat.shape[0] != self.n_components:  # tied: one factor for every component
            flat = np.repeat(flat, self.n_components)
        return flat * _SQRT_HALF

    @computed_once
    def centre(self) -> np.ndarray:
        """Unweighted mean of the component means, shape (D,): the E-step's reference point."""
        # means.mean(axis=0) without its Python wrapper (the same sum, then the same division).
        return np.add.reduce(self.means, axis=0) / self.means.shape[0]

    @computed_once
    def whitening(self) -> tuple[np.ndarray, np.ndarray]:
        """For full/tied: ``(ref, A)`` with ``A @ [x - ref; 1]`` = every ``√½ Pₖᵀ(x - μₖ)`` stacked.

        Its squared norm is half the squared Mahalanobis distance, the term a log density
        subtracts.  ``ref`` (D,) is a point among the means, so that data far from the origin
        lose nothing to cancellation; ``A`` has shape (K*D, D+1) (tied: (D, D+1) per component,
        stacked).
        """
        k, d = self.n_components, self.n_features
        ref = self.centre
        pc = self.precisions_cholesky
        pcs = pc if self.covariance_type == "full" else np.broadcast_to(pc, (k, d, d))
        A = np.empty((k, d, d + 1))
        np.multiply(pcs.transpose(0, 2, 1), _SQRT_HALF, out=A[:, :, :d])
        # √½ Pₖᵀ(ref - μₖ), written in place by a stacked matmul (einsum's Python wrapper costs
        # more than the product here).
        np.matmul(A[:, :, :d], (ref - self.means)[:, :, None], out=A[:, :, d:])
        return ref, A.reshape(k * d, d + 1)

    def marginal(self, columns) -> "MixtureParams":
        """The mixture of the marginal distribution of ``columns`` (a Gaussian mixture too:
        same weights, the means' and covariances' sub-blocks).

        >>> import numpy as np
        >>> p = MixtureParams.from_covariances([1.0], [[1.0, 2.0]], [[[4.0, 1.0], [1.0, 9.0]]],
        ...                                    "full")
        >>> p.marginal([1]).means.tolist(), p.marginal([1]).covariances.tolist()
        ([[2.0]], [[[9.0]]])
        """
        idx = np.asarray(columns, dtype=np.intp)
        covs = self.covariances
        if self.covariance_type == "full":
            covs = covs[:, idx][:, :, idx]
        elif self.covariance_type == "tied":
            covs = covs[idx][:, idx]
        elif self.covariance_type == "diag":
            covs = covs[:, idx]
        return MixtureParams.from_covariances(self.weights, self.means[:, idx], covs,
                                              self.covariance_type)

    def regression(self, columns) -> np.ndarray:
        """Each component's regression of the other features on ``columns``: ``Σ_mo Σ_oo⁻¹``,
        shape (K, m, o) (zero for diag and spherical covariances, whose features are
        independent within a component; see :func:`expected_rows`)."""
        observed = list(columns)
        missing = [i for i in range(self.n_features) if i not in set(observed)]
        if self.covariance_type in ("diag", "spherical"):
            return np.zeros((self.n_components, len(missing), len(observed)))
        covs = self.covariances if self.covariance_type == "full" else np.broadcast_to(
            self.covariances, (self.n_components, self.n_features, self.n_features))
        # Σ_mo Σ_oo⁻¹, from Σ_oo⁻¹ Σ_om (Σ_oo symmetric positive definite)
        return np.linalg.solve(covs[:, observed][:, :, observed],
                               covs[:, observed][:, :, missing]).transpose(0, 2, 1)

    @classmethod
    def from_covariances(cls, weights, means, covariances, covariance_type) -> "MixtureParams":
        """Parameters with precision factors computed (and covariances repaired if needed)."""
        prec_chol, covariances = precision_cholesky(covariances, covariance_type)
        return cls(np.asarray(weights, dtype=float), np.asarray(means, dtype=float),
                   covariances, prec_chol, covariance_type)


@lru_cache(maxsize=64)
def _upper_mask(d: int) -> np.ndarray:
    """Where an upper-triangular d×d matrix may be non-zero."""
    return np.tri(d, dtype=bool).T.copy()


def _cholesky_with_jitter(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factor of ``cov``; adds the smallest diagonal jitter that makes it work.

    Returns the factor and the (possibly jittered) matrix it factors.
    """
    try:
        return np.linalg.cholesky(cov), cov
    except np.linalg.LinAlgError:
        pass
    diag = np.abs(np.diag(cov))
    scale = float(diag.mean()) if diag.any() else 1.0
    scale = max(scale, np.finfo(float).tiny)
    jitter = scale * 1e-12
    eye = np.eye(cov.shape[0])
    while True:
        candidate = cov + jitter * eye
        try:
            return np.linalg.cholesky(candidate), candidate
        except np.linalg.LinAlgError:
            jitter *= 10.0


def precision_cholesky(covariances: np.ndarray, covariance_type: str):
    """Cholesky factors of the precisions, and the covariances they belong to.

    A covariance that is not numerically positive definite (rounding, a constant column with
    ``reg_covar=0``, scales near the limits of float64) gets the smallest diagonal jitter that
    makes it so; the returned covariances include that jitter, so parameters stay consistent.

    Parameters
    ----------
    covariances : ndarray, shaped by covariance type
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    precisions_cholesky : ndarray, same shape
    covariances : ndarray, same shape
    """
    covariances = np.array(covariances, dtype=float)
    if covariance_type in ("full", "tied") and covariances.shape[-1] == 1:
        # One feature: the factor is 1/σ, no factorisation needed (and ~50 µs saved per step).
        prec, variances = _inverse_sqrt(covariances.reshape(-1))
        return prec.reshape(covariances.shape), variances.reshape(covariances.shape)
    if covariance_type in ("full", "tied"):
        stack = covariances if covariance_type == "full" else covariances[None]
        if _factor_each(*stack.shape[:2]):
            prec = _precision_cholesky_each(stack)
        else:
            prec = _precision_cholesky_stacked(stack)
        return (prec if covariance_type == "full" else prec[0]), covariances
    return _inverse_sqrt(covariances)


def _factor_each(n_components: int, n_features: int) -> bool:
    """Whether precision factors are faster one component at a time (LAPACK via scipy).

    numpy's stacked ``cholesky`` and ``inv`` make one call for all components but pay ~20 µs of
    wrappers, and their per-component cost grows quickly with the dimension; scipy's LAPACK
    calls cost ~6 µs per small component.  Measured by ``benchmarks/bench_factor.py``: one at
    a time wins for a few components of few features and for any number from 8 features up.
    """
    return n_features >= 8 or n_components <= n_features + 2


def _precision_cholesky_each(stack: np.ndarray) -> np.ndarray:
    """``L⁻ᵀ`` for each covariance ``L Lᵀ`` of a stack (K, D, D), one LAPACK call pair apiece.

    A covariance that is not positive definite is jittered in place (see
    :func:`_cholesky_with_jitter`).
    """
    from scipy.linalg.lapack import dpotrf, dtrtri  # loaded with scipy.cluster's k-means

    prec = np.empty_like(stack)
    for k, cov in enumerate(stack):
        low, info = dpotrf(cov, lower=1, clean=1)
        if info:
            low, stack[k] = _cholesky_with_jitter(cov)
        # L⁻¹ is lower triangular (dtrtri leaves the zeroed upper triangle as it is), so its
        # transpose is the upper-triangular P with P Pᵀ = Σ⁻¹.
        inverse, _ = dtrtri(low, lower=1)
        prec[k] = inverse.T
    return prec


def _precision_cholesky_stacked(stack: np.ndarray) -> np.ndarray:
    """:func:`_precision_cholesky_each` for many components: numpy's stacked routines."""
    try:
        chol = np.linalg.cholesky(stack)
    except np.linalg.LinAlgError:
        chol = np.empty_like(stack)
        for k, cov in enumerate(stack):
            chol[k], stack[k] = _cholesky_with_jitter(cov)
    inverse = np.linalg.inv(chol)
    # P = L⁻ᵀ is upper triangular with P Pᵀ = Σ⁻¹: the transposed lower triangle of L⁻¹,
    # copied into zeros (np.tril's result, without its ~10 µs of building a mask).
    prec = np.zeros(inverse.shape)
    np.copyto(prec, inverse.transpose(0, 2, 1), where=_upper_mask(chol.shape[-1]))
    return prec


def _inverse_sqrt(variances: np.ndarray):
    """``1/sqrt(v)`` of variances (a copy the caller owns), with non-positive ones repaired."""
    if not np.minimum.reduce(variances, axis=None) > _TINY:  # rare (NaN too): repair them
        variances = np.where(variances > _TINY, variances,
                             np.maximum(np.abs(variances).max(initial=0.0) * 1e-12,
                                        _TINY * 1e10))
    return 1.0 / np.sqrt(variances), variances


def covariances_from_precision_cholesky(prec_chol: np.ndarray, covariance_type: str):
    """Covariances ``(P Pᵀ)⁻¹`` of given precision factors (any triangular ``P``)."""
    if covariance_type in ("full", "tied"):
        from scipy import linalg  # only for user-given initial precisions: keep imports light

        precisions = precisions_from_cholesky(prec_chol, covariance_type)
        stack = precisions if covariance_type == "full" else precisions[None]
        eye = np.eye(stack.shape[-1])
        covs = np.array([linalg.cho_solve(linalg.cho_factor(p, check_finite=False), eye)
                         for p in stack])
        return covs if covariance_type == "full" else covs[0]
    return 1.0 / prec_chol**2


def precision_cholesky_from_precisions(precisions: np.ndarray, covariance_type: str):
    """Cholesky factors ``P`` (upper, ``P Pᵀ = precision``) of given precisions."""
    precisions = np.asarray(precisions, dtype=float)
    if covariance_type in ("full", "tied"):
        from scipy import linalg  # only for user-given initial precisions: keep imports light

        stack = precisions if covariance_type == "full" else precisions[None]
        out = np.empty_like(stack)
        for k, prec in enumerate(stack):
            # prec = U Uᵀ with U upper: flip the lower Cholesky factor of the reversed matrix.
            rev = prec[::-1, ::-1]
            low = linalg.cholesky(rev, lower=True, check_finite=False)
            out[k] = low[::-1, ::-1]
        return out if covariance_type == "full" else out[0]
    return np.sqrt(precisions)


def precisions_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """``P Pᵀ`` for each factor (the ``precisions_`` attribute)."""
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", prec_chol, prec_chol)
    if covariance_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol**2


def log_det_cholesky(prec_chol: np.ndarray, covariance_type: str, n_features: int):
    """``log det P`` = ½ log det Σ⁻¹, per component (a scalar for tied)."""
    if covariance_type == "full":
        return np.add.reduce(np.log(prec_chol.diagonal(0, 1, 2)), axis=1)
    if covariance_type == "tied":
        return float(np.log(np.diag(prec_chol)).sum())
    if covariance_type == "diag":
        return np.log(prec_chol).sum(axis=1)
    return n_features * np.log(prec_chol)


def data_variance(stats) -> np.ndarray:
    """Per-feature variance of all the data the statistics summarise, shape (D,).

    Within-component scatter plus the spread of the component means about their weighted
    centre (for spherical statistics, the average over features, repeated).
    """
    total = max(stats.total, _TINY)
    counts, means = stats.counts, stats.means
    # np.dot and in-place steps: this runs in every M-step, on a handful of numbers.
    deviation = means - np.dot(counts, means) / total
    deviation *= deviation
    spread = np.dot(counts, deviation)  # between the components
    kind = stats.covariance_type
    if kind == "full":
        spread += np.add.reduce(stats.scatter.diagonal(0, 1, 2), axis=0)
    elif kind == "tied":
        spread += np.diag(stats.scatter)
    elif kind == "diag":
        spread += stats.scatter.sum(axis=0)
    else:
        spread = np.full(stats.n_features, (stats.scatter.sum() + spread.sum()) / stats.n_features)
    spread /= total
    return spread


def _floor_scale(stats) -> np.ndarray:
    """Per feature: the variance the relative floor is a share of, shape (D,).

    The pooled within-component variance; where every component has collapsed (no spread
    within any), the data's variance.  (The data's variance alone counts the spread *between*
    components too: clusters at 0 and 1e7 with unit spread all came out with variance 25.)
    """
    total = max(stats.total, _TINY)
    kind = stats.covariance_type
    if kind == "full":
        within = np.add.reduce(stats.scatter.diagonal(0, 1, 2), axis=0)
    elif kind == "tied":
        within = np.diag(stats.scatter).copy()
    elif kind == "diag":
        within = stats.scatter.sum(axis=0)
    else:
        within = np.full(stats.n_features, stats.scatter.sum() / stats.n_features)
    within /= total
    # Collapsed everywhere (or NaN) where 1e-12 of it would not be a normal float: a spread of
    # 1e-304, left by points repeated exactly, made a singular covariance whose precision
    # overflowed (reg_covar=0, no resolution floor).
    if not np.minimum.reduce(within) > _COLLAPSED:
        within = np.where(within > _COLLAPSED, within, data_variance(stats))
    return within


@dataclass(frozen=True, eq=False)
class LoewnerFloor:
    """A floor on full covariances: each kept above ``M = basis · diag(values) · basisᵀ`` in
    the Loewner order (``Σ - M`` positive semi-definite on ``M``'s range), then its variances
    above ``diagonal``.

    A per-feature floor raises a variance whatever the correlations; on correlated features
    (a colour channel and the brightness it is part of) that widens a cluster most in the
    direction where it is thinnest.  A floor shaped like the data's covariance widens every
    direction in proportion to the data's own spread there.

    Attributes
    ----------
    diagonal : ndarray of shape (D,) or None
        Smallest variance per feature, applied after the matrix floor.
    basis : ndarray of shape (D, r)
        Orthonormal directions of ``M``'s range.
    values : ndarray of shape (r,)
        ``M``'s positive eigenvalues.

    Examples
    --------
    >>> floor = LoewnerFloor(None, np.eye(2), np.array([1.0, 1.0]))
    >>> floor.lift(np.array([[[4.0, 0.0], [0.0, 0.25]]])).round(6).tolist()
    [[[4.0, 0.0], [0.0, 1.0]]]
    """

    diagonal: np.ndarray | None
    basis: np.ndarray
    values: np.ndarray

    def lift(self, covs: np.ndarray) -> np.ndarray:
        """Each covariance (K, D, D) raised above the matrix: in the coordinates where ``M`` is
        the identity, its eigenvalues below 1 are raised to 1, its eigenvectors kept."""
        root = np.sqrt(self.values)
        whiten = self.basis.T / root[:, None]  # (r, D)
        unwhiten = self.basis * root  # (D, r)
        with np.errstate(over="ignore", invalid="ignore"):
            whitened = whiten @ covs @ whiten.T
        finite = np.isfinite(whitened).all(axis=(1, 2))
        if not finite.all():
            # A covariance beyond 1e300 times the floor (data at 1e10 after a floor made on
            # data at 1e-150) overflows when whitened (then eigh failed): it lies far above
            # the floor, and only the per-feature floor that follows applies to it.
            lifted = covs.copy()
            if finite.any():
                lifted[finite] = self.lift(covs[finite])
            return lifted
        eigenvalues, vectors = np.linalg.eigh(whitened)
        lift = np.maximum(1.0 - eigenvalues, 0.0)
        if not lift.any():
            return covs
        directions = unwhiten @ vectors  # (K, D, r)
        return covs + (directions * lift[:, None, :]) @ directions.transpose(0, 2, 1)


def covariances_from_stats(stats, reg_covar: float,
                           floor: np.ndarray | LoewnerFloor | None = None) -> np.ndarray:
    """The M-step for covariances: centred scatter over counts, plus ``reg_covar`` on the diagonal.

    Variances are also kept above ``1e-12`` of the pooled within-component variance per feature
    (the data's variance if no component has any spread), so that a component collapsing on one
    repeated value (possible with ``reg_covar=0`` or data on scales where ``reg_covar`` is
    negligible) keeps a finite precision; on ordinary data this floor never binds, however far
    apart the clusters.  ``floor`` raises that minimum per feature (the data's resolution, see
    :mod:`emstream.resolution`).

    Parameters
    ----------
    stats : SufficientStats
    reg_covar : float
        Non-negative regularisation added to the diagonal, as in scikit-learn.
    floor : ndarray of shape (D,) or LoewnerFloor, optional
        Smallest variance of each feature (after ``reg_covar``); a :class:`LoewnerFloor` also
        keeps full covariances above a matrix (other kinds keep its diagonal).

    Returns
    -------
    ndarray shaped by covariance type (see :mod:`emstream.stats`)
    """
    kind = stats.covariance_type
    counts = stats.counts
    if not all_above(counts, _TINY):  # rare: an empty component
        counts = np.maximum(counts, _TINY)
    n_features = stats.n_features
    matrix = None
    if isinstance(floor, LoewnerFloor):
        matrix = floor
        floor = floor.diagonal
        if kind != "full":  # (its variances: the whole floor for diagonal shapes)
            spread = (matrix.basis * matrix.basis) @ matrix.values
            floor = spread if floor is None else np.maximum(floor, spread)
    relative = _floor_scale(stats)
    relative *= _RELATIVE_VARIANCE_FLOOR
    floor = relative if floor is None else np.maximum(relative, floor)
    if kind == "full":
        covs = stats.scatter / counts[:, None, None]
        # The diagonals as one writable view: reg_covar and the floor go on in place.
        diagonal = covs.reshape(covs.shape[0], -1)[:, ::n_features + 1]
        diagonal += reg_covar
        if matrix is not None and reg_covar < matrix.values.max():
            # (Otherwise reg_covar alone keeps every covariance above the matrix: data on a
            # scale far below reg_covar, where whitening by the matrix would overflow.)
            covs = matrix.lift(covs)
            diagonal = covs.reshape(covs.shape[0], -1)[:, ::n_features + 1]
        np.maximum(diagonal, floor, out=diagonal)
    elif kind == "tied":
        covs = stats.scatter / max(stats.total, _TINY)
        covs = covs + reg_covar * np.eye(n_features)
        np.fill_diagonal(covs, np.maximum(np.diag(covs), floor))
    elif kind == "diag":
        covs = np.maximum(stats.scatter / counts[:, None] + reg_covar, floor)
    else:
        covs = np.maximum(stats.scatter / (counts * n_features) + reg_covar, floor.mean())
    return covs


def expected_rows(rows: np.ndarray, columns, params: MixtureParams, marginal=None,
                  regression=None) -> np.ndarray:
    """Rows (n, D) whose features other than ``columns`` are replaced by their expectation
    under the mixture given the values in ``columns``: each component's conditional mean,
    weighted by its responsibility for those values.  A row no component gives a density
    (every log-weight -inf) is weighted by the mixture's weights; an expectation beyond the
    float range is the mixture's mean.  ``marginal`` (``params.marginal(columns)``) and
    ``regression`` (``params.regression(columns)``) may be given, computed once for many calls.

    >>> p = MixtureParams.from_covariances([1.0], [[0.0, 0.0]], [[[1.0, 0.8], [0.8, 1.0]]],
    ...                                    "full")
    >>> expected_rows(np.array([[2.0, 0.0]]), [0], p).round(6).tolist()
    [[2.0, 1.6]]
    """
    observed = list(columns)
    missing = [i for i in range(params.n_features) if i not in set(observed)]
    marginal = params.marginal(observed) if marginal is None else marginal
    regression = params.regression(observed) if regression is None else regression
    given = rows[:, observed]
    with np.errstate(all="ignore"):
        joint = log_gaussian_chunk(given, marginal, with_weights=True)  # (K, n)
        weights = np.exp(joint - joint.max(axis=0))
        total = weights.sum(axis=0)
        lost = ~(np.isfinite(weights).all(axis=0) & (total > 0))
        weights[:, lost], total[lost] = params.weights[:, None], 1.0
        offsets = given[None, :, :] - params.means[:, None, observed]  # (K, n, o)
        conditional = params.means[:, None, missing] + np.einsum("kmo,kno->knm", regression,
                                                                 offsets)
        filled = np.einsum("kn,knm->nm", weights / total, conditional)
    out = rows.copy()
    out[:, missing] = np.where(np.isfinite(filled), filled,
                               (params.weights @ params.means)[missing])
    return out


def log_gaussian_chunk(X: np.ndarray, params: MixtureParams, *, with_weights: bool = False,
                       out: np.ndarray | None = None, design: np.ndarray | None = None
                       ) -> np.ndarray:
    """``log N(x_i | μ_k, Σ_k)`` (or ``log π_k N(x_i | μ_k, Σ_k)``) for a chunk, component-major.

    Parameters
    ----------
    X : ndarray of shape (n, D)
        A chunk small enough that ``K * D * n`` floats stay in cache.
    params : MixtureParams
    with_weights : bool
        Add ``log π_k`` (the E-step's joint log-probability, at no extra pass).
    out : ndarray of shape (K, >= n), optional
        Work buffer to write into (reusing one across chunks saves page faults).
    design : ndarray of shape (>= D + 1, n), optional
        :func:`emstream.stats.centred_design` of ``X`` about ``params.centre``, if the caller
        has it (full and tied use its first D + 1 rows).

    Returns
    -------
    ndarray of shape (K, n)
    """
    kind = params.covariance_type
    means = params.means
    const = params.log_normaliser
    if not with_weights:
        const = const - np.log(np.maximum(params.weights, np.finfo(float).tiny))
    if means.shape[1] == 1:
        # Every covariance type is one variance per component here: four passes over (K, n).
        y = None if out is None else out[:, :X.shape[0]]
        y = np.subtract(X.T, means, out=y)  # (1, n) - (K, 1)
        with np.errstate(over="ignore"):  # (a distance beyond floats: -inf, see em.py)
            y *= params.half_precision_sqrt[:, None]
            np.square(y, out=y)
        return np.subtract(const[:, None], y, out=y)
    with np.errstate(over="ignore"):
        half = _half_distances(X, params, kind, out, design)
    # half = ½ (x - μ)ᵀ Σ⁻¹ (x - μ)
    return np.subtract(const[:, None], half, out=half)


def _half_distances(X, params: MixtureParams, kind: str, out, design) -> np.ndarray:
    """½ (x - μₖ)ᵀ Σₖ⁻¹ (x - μₖ) for D > 1, shape (K, n) (inf where it overflows)."""
    means, pc = params.means, params.precisions_cholesky
    n_components, n_features = means.shape
    if kind in ("full", "tied"):
        # One matrix product serves every component: rows √½ Pₖᵀ(x - μₖ), taken about a
        # point among the means so that data far from the origin lose nothing to cancellation.
        ref, A = params.whitening
        xa = centred_design(X, ref) if design is None else design[:n_features + 1]
        y = (A @ xa).reshape(n_components, n_features, -1)
        # einsum fuses the square and the sum over features: 3x faster than doing both.
        half = np.einsum("kdn,kdn->kn", y, y, out=None if out is None else out[:, :X.shape[0]])
    else:
        # (K, D, n): direct differences, exact for data far from the origin.
        diff = X.T[None, :, :] - means[:, :, None]
        np.square(diff, out=diff)
        half_precision = np.square(pc)
        half_precision *= 0.5
        if kind == "diag":
            half = np.matmul(half_precision[:, None, :], diff)[:, 0, :]
        else:
            half = diff.sum(axis=1)
            half *= half_precision[:, None]
    return half


def log_distances(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log (x - μₖ)ᵀ Σₖ⁻¹ (x - μₖ)``, shape (K, n), for rows whose distance overflows.

    Each difference is scaled by its largest entry before the precision factor is applied and
    the scale comes back as a logarithm, so distances beyond the float range (a value of 1e60
    in a series whose spread is 1e-100) can still be compared across components.  A slow path:
    per component, for the few rows the E-step cannot place.

    >>> params = MixtureParams.from_covariances([.5, .5], [[0.0], [10.0]], [[[1e-200]], [[1.0]]],
    ...                                         "full")
    >>> int(np.argmin(log_distances(np.array([[1e150]]), params)[:, 0]))
    1
    """
    pc = params.precisions_cholesky
    kind = params.covariance_type
    out = np.empty((params.n_components, X.shape[0]))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for k in range(params.n_components):
            w = X - params.means[k]
            m = np.max(np.abs(w), axis=1, keepdims=True)
            w = w / np.where(m > 0, m, 1.0)
            factor = pc if kind == "tied" else pc[k]
            y = w @ factor if kind in ("full", "tied") else w * factor
            top = np.max(np.abs(y), axis=1, keepdims=True)
            y = y / np.where(top > 0, top, 1.0)
            out[k] = 2.0 * (np.log(m[:, 0]) + np.log(top[:, 0])) + np.log(
                np.einsum("nd,nd->n", y, y))
    return np.where(np.isnan(out), np.inf, out)
