"""Expected complete-data sufficient statistics of a Gaussian mixture.

The statistics of a set of points under fixed responsibilities ``r_ik`` are, per component,
the total responsibility ``n_k = Σ_i r_ik``, the weighted mean ``m_k = Σ_i r_ik x_i / n_k`` and
the centred scatter ``S_k = Σ_i r_ik (x_i - m_k)(x_i - m_k)ᵀ``.  Keeping means and *centred*
scatter (rather than raw moments ``Σ r x xᵀ``) keeps them exact for data far from the origin;
two sets are merged with Chan's parallel update, so the statistics of a data set are the sum of the
statistics of its chunks, whichever machine computed them.

The scatter has the shape of the covariance it estimates (as in scikit-learn's ``covariances_``):

============  ===============  ==============================================
type          ``scatter``      meaning
============  ===============  ==============================================
``full``      ``(K, D, D)``    per-component scatter matrix
``tied``      ``(D, D)``       within-component scatter summed over components
``diag``      ``(K, D)``       per-component, per-feature scatter
``spherical`` ``(K,)``         per-component scatter summed over features
============  ===============  ==============================================

Example
-------
>>> import numpy as np
>>> from emstream.stats import SufficientStats
>>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
>>> resp = np.ones((1, 4))                       # one component owns every point
>>> a = SufficientStats.from_chunk(X[:2], resp[:, :2], "full")
>>> b = SufficientStats.from_chunk(X[2:], resp[:, 2:], "full")
>>> whole = a + b
>>> whole.counts, whole.means, whole.scatter
(array([4.]), array([[1.5]]), array([[[5.]]]))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
# Chunks this small take the exact two-pass route directly (it is as cheap there).
_SMALL_CHUNK = 64
# Largest (offset / spread)² tolerated in moments about a shared reference point (~2e-10 lost).
_MAX_CANCELLATION = 1e6
_TINY = float(np.finfo(float).tiny)


def all_above(values: np.ndarray, bound: float) -> bool:
    """``bool((values > bound).all())`` for a handful of values (one per component).

    Comparisons in Python on ``tolist()`` are exact and, for three values, took 0.45 µs against
    2.4 µs for ``np.minimum.reduce`` (several run on every online step); NaN is above nothing,
    as in numpy.
    """
    for value in values.tolist():
        if not value > bound:
            return False
    return True


def none_below(values: np.ndarray, bound: float) -> bool:
    """``not (values < bound).any()`` for a handful of values (NaN is below nothing)."""
    for value in values.tolist():
        if value < bound:
            return False
    return True


class computed_once:
    """``functools.cached_property`` without its lock, for values derived from frozen fields.

    Statistics and parameters are replaced, never changed, on every online step, so each
    derived value is computed once per step; the lock (Python < 3.12) cost about a
    microsecond each time.  Concurrent first uses may compute a value twice: harmless.
    """

    def __init__(self, func):
        self.func = func
        self.__doc__ = func.__doc__

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = self.func(instance)
        instance.__dict__[self.name] = value  # found before this descriptor from now on
        return value


def scatter_shape(covariance_type: str, n_components: int, n_features: int) -> tuple[int, ...]:
    """Shape of the scatter (and of the covariances) for a covariance type."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]


@lru_cache(maxsize=64)
def _symmetric_gather(d: int) -> np.ndarray:
    """For each (i, j) of a d×d matrix, row-major: its column in the upper-triangle layout."""
    upper = np.triu_indices(d)
    where = np.empty((d, d), dtype=np.intp)
    where[upper] = np.arange(upper[0].size)
    where[upper[1], upper[0]] = where[upper]
    return where.reshape(-1)


def centred_design(X, ref, products: str | None = None) -> np.ndarray:
    """The rows ``[x - ref; 1; products]`` of a chunk, shape (D + 1 + W, n).

    The E-step of full and tied mixtures multiplies the first D + 1 rows by the whitening
    matrix (:attr:`MixtureParams.whitening`); :func:`shifted_moments` multiplies all of them by
    the responsibilities.  One design serves both.

    Parameters
    ----------
    X : ndarray of shape (n, D)
    ref : ndarray of shape (D,)
    products : {None, "full", "diag"}
        Also the products ``(x_i - ref_i)(x_j - ref_j)``: the upper triangle (W = D(D+1)/2),
        the squares (W = D), or none (W = 0).
    """
    n, d = X.shape
    width = {None: 0, "full": d * (d + 1) // 2, "diag": d}[products]
    rows = np.empty((d + 1 + width, n))
    xs = np.subtract(X.T, ref[:, None], out=rows[:d])
    rows[d] = 1.0
    if products == "full":
        start = d + 1
        for i in range(d):
            np.multiply(xs[i], xs[i:], out=rows[start:start + d - i])
            start += d - i
    elif products == "diag":
        np.multiply(xs, xs, out=rows[d + 1:])
    return rows


def moments_design(X, ref, covariance_type: str) -> np.ndarray | None:
    """The :func:`centred_design` that :meth:`SufficientStats.from_chunk` uses for these rows.

    None for chunks of fewer than 64 rows, whose moments are taken exactly about each
    component's own mean instead.
    """
    if X.shape[0] < _SMALL_CHUNK:
        return None
    return centred_design(X, ref, "full" if covariance_type in ("full", "tied") else "diag")


def shifted_moments(X, resp, ref, full, design=None):
    """Zeroth, first and second moments about one point ``ref``, in one matrix product.

    Plain sums, so moments of successive chunks about the same ``ref`` simply add up.

    Parameters
    ----------
    X : ndarray of shape (n, D)
    resp : ndarray of shape (K, n)
    ref : ndarray of shape (D,)
    full : bool
        Full second moments (K, D, D), else their diagonal (K, D).
    design : ndarray, optional
        ``centred_design(X, ref, "full" if full else "diag")``, if the caller has it already.

    Returns
    -------
    counts : (K,), first : (K, D), second : (K, D, D) or (K, D)
    """
    d = X.shape[1]
    if design is None:
        design = centred_design(X, ref, "full" if full else "diag")
    sums = resp @ design.T
    if full:
        # Both triangles from the upper one, in one gather.
        second = sums[:, d + 1:].take(_symmetric_gather(d), axis=1).reshape(-1, d, d)
    else:
        second = sums[:, d + 1:]
    return sums[:, d], sums[:, :d], second


def centred_moments(X, resp, full):
    """Moments about each component's own weighted mean: exact, two passes per component.

    Same parameters as :func:`shifted_moments`.  Returns ``counts, first, second, centres``:
    the moments about ``centres`` (the weighted means as first computed; ``first`` holds the
    rounding residual, so :meth:`SufficientStats.from_moments` gives the exact result).
    """
    n_components, n_features = resp.shape[0], X.shape[1]
    counts = resp.sum(axis=1)
    safe = np.where(counts > 0, counts, 1.0)
    centres = np.where((counts > 0)[:, None], (resp @ X) / safe[:, None], X[0])
    first = np.empty((n_components, n_features))
    second = np.empty((n_components,) + ((n_features,) * (2 if full else 1)))
    for k in range(n_components):
        diff = X - centres[k]
        weighted = diff * resp[k][:, None]
        first[k] = weighted.sum(axis=0)
        second[k] = weighted.T @ diff if full else np.einsum("nd,nd->d", weighted, diff)
    if full and n_features > 1:  # the product's rounding can leave it asymmetric
        second = 0.5 * (second + second.transpose(0, 2, 1))
    return counts, first, second, centres


@dataclass(frozen=True, eq=False)
class SufficientStats:
    """Additive statistics of a Gaussian mixture, stored as counts, means and centred scatter.

    Parameters
    ----------
    counts : ndarray of shape (K,)
        Total responsibility of each component (a number of points, or a fraction of one
        when the statistics are averages, as in online EM).
    means : ndarray of shape (K, D)
        Responsibility-weighted mean of each component; arbitrary where ``counts`` is 0.
    scatter : ndarray
        Centred scatter, shaped as in the module table.
    covariance_type : {"full", "tied", "diag", "spherical"}
    """

    counts: np.ndarray
    means: np.ndarray
    scatter: np.ndarray
    covariance_type: str

    @property
    def n_components(self) -> int:
        return self.counts.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @computed_once
    def total(self) -> float:
        """Total responsibility over all components (the number of points summarised)."""
        return float(np.add.reduce(self.counts))

    @classmethod
    def zeros(cls, n_components: int, n_features: int, covariance_type: str) -> "SufficientStats":
        """Statistics of no data: the identity of ``+``."""
        return cls(
            np.zeros(n_components),
            np.zeros((n_components, n_features)),
            np.zeros(scatter_shape(covariance_type, n_components, n_features)),
            covariance_type,
        )

    @classmethod
    def from_moments(cls, counts, first, second, centres, covariance_type) -> "SufficientStats":
        """Statistics from moments taken about per-component centres.

        Parameters
        ----------
        counts : ndarray of shape (K,)
            ``Σ_i r_ik``.
        first : ndarray of shape (K, D)
            ``Σ_i r_ik (x_i - c_k)``.
        second : ndarray of shape (K, D, D) for full/tied, (K, D) for diag/spherical
            ``Σ_i r_ik (x_i - c_k)(x_i - c_k)ᵀ`` (its diagonal for diag/spherical); symmetric
            bit for bit.
        centres : ndarray of shape (K, D)
            The ``c_k``; choose them near the data of component k (the current means) so
            that no precision is lost to cancellation.
        """
        counts = np.asarray(counts, dtype=float)
        every = all_above(counts, _TINY)  # the common case: fewer small operations
        if not every:
            held = counts > _TINY
        safe = (counts if every else np.where(held, counts, 1.0))[:, None]
        shift = first / safe
        if covariance_type in ("full", "tied"):
            # first firstᵀ / n as g gᵀ with g = first / √n: symmetric bit for bit, as the
            # scatter must be (``second`` is), without symmetrising afterwards.
            g = first / np.sqrt(safe)
            scatter = second - g[:, :, None] * g[:, None, :]
            if not every:
                scatter[~held] = 0.0
            if covariance_type == "tied":
                scatter = scatter.sum(axis=0)
        else:
            scatter = np.maximum(second - first * shift, 0.0)
            if not every:
                scatter[~held] = 0.0
            if covariance_type == "spherical":
                scatter = scatter.sum(axis=1)
        if not every:
            shift[~held] = 0.0
        return cls(counts, centres + shift, scatter, covariance_type)

    @classmethod
    def from_chunk(cls, X, resp, covariance_type, centres=None, ref=None,
                   design=None) -> "SufficientStats":
        """Statistics of the rows of ``X`` under responsibilities ``resp``.

        Moments are taken about one reference point with one matrix product; a component whose
        data sit so far from that point (relative to its spread) that cancellation would cost
        more than ~1e-10 of its scatter is recomputed about its own centre instead.

        Parameters
        ----------
        X : ndarray of shape (n, D)
        resp : ndarray of shape (K, n)
            Responsibilities in component-major layout (the E-step's layout).
        covariance_type : str
        centres : ndarray of shape (K, D), optional
            The current means: moments are taken about their average; default: about the
            column means of ``X``.
        ref : ndarray of shape (D,), optional
            ``centres.mean(axis=0)`` if the caller has it already.
        design : ndarray, optional
            ``moments_design(X, ref, covariance_type)``, if the caller has it already (the
            E-step); it must be taken about ``ref``, which is then required.
        """
        if design is not None and ref is None:
            raise ValueError("a design is taken about a reference point: pass ref as well")
        X = np.asarray(X, dtype=float)
        full = covariance_type in ("full", "tied")
        kind = "full" if full else "diag"
        if X.shape[0] < _SMALL_CHUNK:
            exact = cls.from_moments(*centred_moments(X, resp, full), kind)
            return exact.collapse(covariance_type)
        if ref is None:
            ref = X.mean(axis=0) if centres is None else np.asarray(centres).mean(axis=0)
        moments = shifted_moments(X, resp, ref, full, design)
        stats = cls.from_moments(*moments, ref, kind)  # ref broadcasts over the components
        far = stats.lossy_about(ref)
        if np.count_nonzero(far):
            exact = centred_moments(X, resp[far], full)
            stats = stats.splice(far, cls.from_moments(*exact, kind))
        return stats.collapse(covariance_type)

    def lossy_about(self, ref: np.ndarray) -> np.ndarray:
        """Components whose moments, taken about ``ref``, lost more than ~1e-10 of their scatter.

        The scatter is ``second - first²/n``; its relative rounding error is about
        ``eps * (offset / spread)²``, where ``offset`` is the component mean's distance from
        ``ref``.  For per-component (full or diag) scatter; returns a mask of shape (K,).
        """
        spread = self.scatter.diagonal(0, 1, 2) if self.scatter.ndim == 3 else self.scatter
        offset2 = np.subtract(self.means, ref)
        np.square(offset2, out=offset2)
        offset2 *= self.counts[:, None]
        lossy = offset2 > _MAX_CANCELLATION * spread
        if not np.count_nonzero(lossy):  # the usual case, in one cheap call
            return np.zeros(lossy.shape[0], dtype=bool)
        lossy = lossy[:, 0] if lossy.shape[1] == 1 else np.logical_or.reduce(lossy, axis=1)
        if not all_above(self.counts, 0.0):
            lossy &= self.counts > 0
        return lossy

    def splice(self, which: np.ndarray, other: "SufficientStats") -> "SufficientStats":
        """Copy with the components ``which`` replaced by ``other``'s (per-component scatter)."""
        counts, means, scatter = self.counts.copy(), self.means.copy(), self.scatter.copy()
        counts[which], means[which], scatter[which] = other.counts, other.means, other.scatter
        return SufficientStats(counts, means, scatter, self.covariance_type)

    def collapse(self, covariance_type: str) -> "SufficientStats":
        """Per-component full (diag) scatter reduced to the shape of tied (spherical)."""
        if covariance_type == "tied" and self.scatter.ndim == 3:
            return SufficientStats(self.counts, self.means, self.scatter.sum(axis=0), "tied")
        if covariance_type == "spherical" and self.scatter.ndim == 2:
            return SufficientStats(self.counts, self.means, self.scatter.sum(axis=1),
                                   "spherical")
        if covariance_type == self.covariance_type:
            return self
        return SufficientStats(self.counts, self.means, self.scatter, covariance_type)

    def __add__(self, other: "SufficientStats") -> "SufficientStats":
        """Statistics of the union of two data sets (Chan, Golub & LeVeque's pairwise update)."""
        if not isinstance(other, SufficientStats):
            return NotImplemented
        if (other.covariance_type != self.covariance_type
                or other.means.shape != self.means.shape):
            raise ValueError(
                f"cannot add statistics of {self.covariance_type} {self.means.shape} and "
                f"{other.covariance_type} {other.means.shape}"
            )
        n_a, n_b = self.counts, other.counts
        n = n_a + n_b
        held = n > 0
        frac_b = np.divide(n_b, n, out=np.zeros_like(n), where=held)
        delta = other.means - self.means
        means = np.where((n_a > 0)[:, None], self.means + delta * frac_b[:, None], other.means)
        # n_a n_b / n: the weight of the between-halves term of the scatter.
        between = n_a * frac_b
        kind = self.covariance_type
        if kind == "full":
            extra = between[:, None, None] * (delta[:, :, None] * delta[:, None, :])
        elif kind == "tied":
            shifted = delta * np.sqrt(between)[:, None]  # (g gᵀ: symmetric bit for bit)
            extra = shifted.T @ shifted
        elif kind == "diag":
            extra = between[:, None] * delta**2
        else:
            extra = between * np.einsum("kd,kd->k", delta, delta)
        return SufficientStats(n, means, self.scatter + other.scatter + extra, kind)

    def scaled(self, factor: float) -> "SufficientStats":
        """Statistics with every point's weight multiplied by ``factor`` (means unchanged)."""
        return SufficientStats(self.counts * factor, self.means, self.scatter * factor,
                               self.covariance_type)

    def blend(self, other: "SufficientStats", step: float,
              other_scale: float = 1.0) -> "SufficientStats":
        """``(1 - step) * self + step * other_scale * other``: online EM's stochastic update.

        The same result as ``self.scaled(1 - step) + other.scaled(step * other_scale)``, in
        fewer operations (it runs once per mini-batch); ``other_scale`` turns a mini-batch's
        totals into the per-point averages online EM blends.
        """
        weight = step * other_scale
        if other.covariance_type != self.covariance_type or other.means.shape != self.means.shape:
            return self.scaled(1.0 - step) + other.scaled(weight)  # raises the clear error
        n_a = self.counts * (1.0 - step)
        n_b = other.counts * weight
        n = n_a + n_b
        if not (all_above(n_a, 0.0) and all_above(n, 0.0)):
            return self.scaled(1.0 - step) + other.scaled(weight)  # empty components
        frac_b = n_b / n
        delta = other.means - self.means
        means = self.means + delta * frac_b[:, None]
        between = n_a * frac_b
        scatter = self.scatter * (1.0 - step) + other.scatter * weight
        kind = self.covariance_type
        if kind == "full":
            scatter += between[:, None, None] * (delta[:, :, None] * delta[:, None, :])
        elif kind == "tied":
            # (as g gᵀ, g = δ √between: symmetric bit for bit, which (δ between)ᵀ δ was not)
            shifted = delta * np.sqrt(between)[:, None]
            scatter += shifted.T @ shifted
        elif kind == "diag":
            scatter += between[:, None] * delta**2
        else:
            scatter += between * (delta * delta).sum(axis=1)
        return SufficientStats(n, means, scatter, kind)

    def replace(self, **changes) -> "SufficientStats":
        """A copy with some fields replaced."""
        fields = dict(counts=self.counts, means=self.means, scatter=self.scatter,
                      covariance_type=self.covariance_type)
        fields.update(changes)
        return SufficientStats(**fields)
