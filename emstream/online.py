"""The online learner: stepwise EM on a stream, and the upkeep that keeps it sound on real data.

:class:`OnlineLearner` holds everything online EM knows about a stream and nothing about how the
stream is read: the running statistics and the step-size schedule (Cappé & Moulines 2009), the
warm-up and its provisional model, the outlier gate, Polyak averaging, and the checks that give
birth to and retire components.  :class:`emstream.GaussianMixture` is its scikit-learn face;
:class:`emstream.drift.DriftMonitor`, the river adapters and the daemon drive it through that
face.

What it does with each mini-batch:

1. **Score, then learn.**  One E-step scores every row under the current model and yields the
   statistics that are blended into the running ones with step ``γ`` (a mini-batch of ``b``
   points gets ``1 - Π(1 - γ_t)``), then the M-step runs.
2. **The gate.**  A row beyond the gate of every component is *far*.  Far rows are left out
   unless they recur (:func:`emstream.refit.recurring` over the learner's memory): a wild value
   or a short burst never shapes the model, but heavy tails or a region the model has not learned
   yet are learned like any other row, so no part of the stream is locked out.
3. **From the first mini-batch.**  Until ``warmup_size`` rows have arrived they are buffered;
   once there are ``2 (D + 1)`` rows per component a provisional model is fitted on the buffer
   (:func:`emstream.refit.search`), scores from then on, learns online, and is refitted on the
   whole buffer whenever it has doubled and when it is full: linear cost in the rows fed.
   With many features and few rows (``2 (D + 1)`` is more than ten per component) a first
   one of diagonal covariances comes at ten rows per component, until the rows allow full ones.
4. **Upkeep.**  Now and then (at doubling intervals, when a component starves, when far rows
   gather) the learner fits candidates on its window of recent rows plus its memory of far rows
   weighted to their rate: the current model, EM from it, fresh starts, and births (a component
   moved onto the far rows).  A candidate replaces the model only if it is better by more than
   EM's overfitting margin (:mod:`emstream.refit`), so a stationary stream reaches batch EM's
   quality whatever the warm-up saw, and a good model is left alone.
5. **Resolution.**  Variances never fall below the data's own resolution
   (:mod:`emstream.resolution`), so integer or quantised columns cannot collapse a component.

Example
-------
>>> import numpy as np
>>> from emstream.online import OnlineLearner, OnlineSettings
>>> rng = np.random.default_rng(0)
>>> learner = OnlineLearner(OnlineSettings(n_components=2, random_state=0))
>>> learner.learn(rng.normal(size=(30, 1))) is None        # nothing to score with yet
True
>>> step = learner.learn(rng.normal(size=(30, 1)))          # a provisional model scores
>>> step.log_prob.shape, learner.warming_up
((30,), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from . import em
from .gaussian import LoewnerFloor, MixtureParams
from .init import merge_components, split_component
from .refit import FitSettings, Sample, _excess_surprise, recurring, search, support_needed
from .resolution import finer, grid_step, variance_floor
from .ring import RingBuffer
from .stats import SufficientStats

# recent_counts weighs points by exp(-age / RECENT_POINTS): "the last thousand or so".
RECENT_POINTS = 1000.0
# outlier_gate="auto": the chi-square quantile with this upper tail.
AUTO_GATE_TAIL = 1e-15
# Far rows remembered for births (a few hundred are plenty to place and shape a component).
FAR_MEMORY = 1000
# Far rows recur if they came in ten separate episodes within this many points (a rate of
# 5e-4): rarer ones are flukes, kept out however long the stream.  The drift monitor's memory.
RECURRENCE_HORIZON = 20_000
# Split-and-merge proposals per check: the closest pairs of components, each merged.
MERGES = 3
# Provisional refits come when the rows buffered grow by this factor (logarithmically many; a
# provisional model is never fitted on fewer than 2/3 of the rows) ...
REFIT_GROWTH = 1.5
# ... and scheduled checks when the points seen grow by half while they keep finding better
# models, until LATE_CHECKS warm-ups' worth (where structure is found: on Shuttle, doubling
# lost 8 of 10 seeds' best models), then fourfold; after IDLE_CHECKS that changed nothing in
# a row (or a warm-up whose starts all agreed), light ones when the points seen grow tenfold:
# 5 checks over 10^7 points of a clean stream.
CHECK_GROWTH = 1.5
LATE_CHECKS = 64
IDLE_CHECKS = 3
LATE_GROWTH = 4.0
IDLE_GROWTH = 10.0
# Rows per component from which a provisional model of diagonal covariances is fitted while
# full ones need more (the support rule's ten points per component).
DIAGONAL_ROWS = 10
# While warming up, variances stay above the buffer's variance times (r / n)² · min(1, r / m),
# where r is the rows the first provisional model needs, n the rows buffered and m the number of
# independent values they are worth: n for independent rows, so that the prior fades as (r / n)³
# (by five times r rows it is 1% of the spread), and as (r / n)² for a feature that moves
# slowly (a series' first hundred rows are a few hours of it: a model of them must stay humble
# about the rest).  Evidence: with (r / n)² for all rows, sets that end inside the warm-up kept
# clusters far thinner than the spread too wide (iris, breast cancer: 0.13 and 0.21 nats per
# point per feature from batch EM, 0.04 and 0.01 now); with (r / n)³ for all rows, the NAB kit
# lost 0.3 points and its copy with holes 2.7, where this rule keeps the kit (62.0 against
# 61.9) and gains 0.7 with holes (means of three seeds).  For full covariances the (r / n)³
# that every feature gets is a matrix, (r / n)³ times the buffer's covariance (a Loewner
# floor): raised per feature, a variance widened each cluster across correlated features too
# (river's ImageSegments, 300 shuffled rows, 18 features: held out 0.7-3.8 nats per point per
# feature below batch EM over six shuffles; -0.2 to 2.2 as a matrix).
PROVISIONAL_PRIOR = 1.0
# No fixed strength suits every data set: clusters far apart in several dimensions are far
# thinner than the buffer's spread, and a prior of (r / n)³ of it keeps them too wide until the
# warm-up's end (three Gaussian clusters 30 sd apart in 12 dimensions, 160 rows: 0.09-0.17 nats
# per point per feature below batch EM held out on six sets; statsmodels' macrodata, 162 rows
# of 12 economic series: 0.19-0.25 on 4 shuffles of 5), while without it wine and star98
# overfit (beyond 0.05 on 3 and 4 shuffles of 10).  So while the prior is material (at least
# PRIOR_MATERIAL of the spread; at 1%, ImageSegments took the weak one at 450 rows, where it
# changes the fit little and fits of half the rows cannot tell, and one shuffle in ten ended
# 0.1 further from batch EM) and the rows are independent (every feature worth at least
# INDEPENDENT_WORTH: then alternate rows are honest held-out rows for each other), each
# provisional search also fits its starts under a prior WEAK_PRIOR as strong and lets the
# held-out judge choose (the clusters: -0.009 to +0.020 on five sets, the strong prior kept on
# the sixth; macrodata: one shuffle beyond, +0.06, and on the one where the weak prior alone
# overfit, 8.9 beyond, the strong one was kept).  A slowly moving series keeps its prior: its
# alternate rows are near copies.
WEAK_PRIOR = 1.0 / 16.0
PRIOR_MATERIAL = 0.05
INDEPENDENT_WORTH = 0.5
# m = n (1 - ρ) / (1 + ρ) for a lag-1 autocorrelation ρ, at most MAX_DEPENDENCE.
MAX_DEPENDENCE = 0.999
_TINY = float(np.finfo(float).tiny)


class BufferPrior(NamedTuple):
    """What the warm-up's prior takes from the rows buffered (see :func:`buffer_prior`)."""

    variance: np.ndarray  # (D,)
    worth: np.ndarray  # (D,) independent values per row
    basis: np.ndarray  # (D, r) eigenvectors of the covariance with positive eigenvalues
    spread: np.ndarray  # (r,) those eigenvalues


def buffer_prior(rows: np.ndarray) -> BufferPrior:
    """Per feature of ``rows`` (n, D) in arrival order: the variance, and the independent values
    a row is worth, ``(1 - ρ) / (1 + ρ)`` for the lag-1 autocorrelation ``ρ`` (1 for independent
    rows, near 0 for a slowly moving series).  ``ρ`` counts only beyond two of its standard
    errors under independence (``2 / √n``: shuffled rows show that much by chance), and at most
    ``MAX_DEPENDENCE``.  Also the covariance's eigen-decomposition, for the matrix form of the
    prior.

    >>> rng = np.random.default_rng(0)
    >>> walk, noise = np.cumsum(rng.normal(size=500)), rng.normal(size=500)
    >>> buffer_prior(np.c_[walk, noise]).worth.round(3).tolist()   # a row of the walk: 1/250
    [0.004, 1.0]
    """
    rows = _without_wild_rows(rows)
    n = max(rows.shape[0], 1)
    centred = rows - rows.mean(axis=0)
    power = np.einsum("ij,ij->j", centred, centred)
    lagged = np.einsum("ij,ij->j", centred[1:], centred[:-1])
    rho = np.divide(lagged, power, out=np.zeros_like(power), where=power > 0)
    rho[rho <= 2.0 / math.sqrt(n)] = 0.0
    np.minimum(rho, MAX_DEPENDENCE, out=rho)
    variance = power / n
    if rows.shape[1] == 1:  # (the matrix form is never built in 1-D: no decomposition)
        return BufferPrior(variance, (1.0 - rho) / (1.0 + rho), np.ones((1, 1)), variance)
    spread, basis = np.linalg.eigh(centred.T @ centred / n)
    kept = spread > 1e-12 * max(float(spread.max(initial=0.0)), _TINY)
    return BufferPrior(variance, (1.0 - rho) / (1.0 + rho), basis[:, kept], spread[kept])


# A row with a value beyond the inner 98% of its column by more than this many times that
# range is left out of the warm-up prior's spread.
WILD_RANGES = 10.0


def _without_wild_rows(rows: np.ndarray) -> np.ndarray:
    """``rows`` without those holding a value far beyond the bulk of its column: more than
    :data:`WILD_RANGES` times the range of the inner 98% of the column beyond it (order
    statistics, and at least the most extreme value on each side left out of that range, so
    one wild value among a few dozen rows cannot stretch the range that judges it).  One
    reading of 1e100 among readings near 30 made the spread, and every provisional
    component's variance, about 1e197.  A column with no such range
    (constant but for a few values) judges nothing; at least two rows are kept."""
    n = rows.shape[0]
    if n < 3:
        return rows
    low = max(1, int(0.01 * (n - 1)))  # (at least the most extreme value on each side out)
    high = n - 1 - low
    ordered = np.partition(rows, (low, high), axis=0)
    lo, hi = ordered[low], ordered[high]
    width = hi - lo
    margin = np.where(width > 0, WILD_RANGES * width, np.inf)
    inside = np.all((rows >= lo - margin) & (rows <= hi + margin), axis=1)
    return rows if inside.all() or np.count_nonzero(inside) < 2 else rows[inside]


def auto_gate(n_features: int) -> float:
    """Squared Mahalanobis distance a Gaussian point exceeds with probability 1e-15."""
    return _auto_gate(int(n_features))


def _cached(func):
    from functools import lru_cache

    return lru_cache(maxsize=64)(func)


@_cached
def _auto_gate(n_features: int) -> float:
    from scipy.special import chdtri  # scipy.stats would cost a second of import time

    return float(chdtri(n_features, AUTO_GATE_TAIL))


@_cached
def _support(n_features: int, horizon: float, n_components: int) -> float:
    return support_needed(n_features, horizon, n_components)


@_cached
def _recent_decay(n_points: int) -> float:
    return math.exp(-n_points / RECENT_POINTS)


# Points after which a mini-batch's blend weight is taken in closed form (every step below 0.004
# for step_decay 0.8, so the series in _log_survival converges in a few terms).
SERIES_FROM = 1000.0


def _diagonal_params(params: MixtureParams) -> MixtureParams:
    """Full covariances' diagonals, as a diagonal model (a provisional search's start)."""
    variances = np.diagonal(params.covariances, axis1=1, axis2=2)
    return MixtureParams.from_covariances(params.weights, params.means, variances.copy(), "diag")


def _full_from_diagonal(params: MixtureParams, stats: SufficientStats) -> tuple:
    """A diagonal model and its statistics as full ones with no correlation."""
    from .compare import full_covariances

    k, d = params.means.shape
    full = MixtureParams.from_covariances(
        params.weights, params.means, full_covariances(params.covariances, "diag", k, d), "full")
    return full, SufficientStats(stats.counts, stats.means,
                                 full_covariances(stats.scatter, "diag", k, d), "full")


def _log_survival(first: float, last: float, decay: float) -> float:
    """``Σ log(1 - x^-decay)`` over ``x = first, first + 1, ..., last`` (first >= SERIES_FROM).

    ``log(1 - u) = -Σ_m u^m / m`` turns it into sums of powers ``Σ x^-s`` (``s = m decay``),
    each summed by Euler–Maclaurin: the integral, the end points and three derivative terms
    (from x = 1000 on the sum agrees with the direct one to 1e-12 or better: tests/test_online.py).  Differences of powers are
    taken as ``first^a expm1(a log(last / first))``, so nothing cancels however short the batch.
    """
    log_first = math.log(first)
    log_ratio = math.log1p((last - first) / first)

    def drop(a: float) -> float:  # first^a - last^a
        return -math.exp(a * log_first) * math.expm1(a * log_ratio)

    total = 0.0
    for m in range(1, 200):
        s = m * decay
        g_first = math.exp(-s * log_first)
        integral = log_ratio if s == 1.0 else -drop(1.0 - s) / (1.0 - s)
        ends = 0.5 * g_first * (1.0 + math.exp(-s * log_ratio))
        rising = s * (s + 1.0) * (s + 2.0)
        corrections = (s / 12.0 * drop(-s - 1.0) - rising / 720.0 * drop(-s - 3.0)
                       + rising * (s + 3.0) * (s + 4.0) / 30240.0 * drop(-s - 5.0))
        term = (integral + ends + corrections) / m
        total += term
        if term <= 1e-18 * total:
            break
    return -total


@dataclass(frozen=True)
class OnlineSettings:
    """The hyper-parameters online EM needs (those of :class:`emstream.GaussianMixture`).

    ``n_fresh`` is the number of fresh k-means++ starts each search tries; ``window`` the recent
    rows kept for upkeep (default ``2 * warmup_size``, at least 2,000).
    """

    n_components: int
    covariance_type: str = "full"
    reg_covar: float = 1e-6
    tol: float = 1e-3
    max_iter: int = 100
    init_params: str = "k-means++"
    random_state: object = None
    step_decay: float = 0.8
    step_offset: float = 0.0
    step_floor: float | None = None
    warmup_size: int = 1000
    outlier_gate: object = "auto"
    averaging: bool = True
    variance_floor: str | None = "resolution"
    n_fresh: int = 2
    window: int | None = None

    @property
    def window_rows(self) -> int:
        return int(self.window or max(2000, 2 * self.warmup_size))


@dataclass
class Upkeep:
    """When the next checks are due, and what they did (part of the learner's state)."""

    next_check: float = math.inf  # points seen at the next scheduled check
    quiet_until: float = 0.0  # no unscheduled check before this many points
    pause: float = 0.0  # the quiet period after an unscheduled check that changed nothing
    far_since: int = 0  # far rows since the last check
    checks: int = 0
    replaced: int = 0
    idle: int = 0  # scheduled checks in a row that changed nothing
    events: list = field(default_factory=list)  # recent structural changes, newest last


class OnlineLearner:
    """Online EM over one stream.  See the module documentation.

    Parameters
    ----------
    settings : OnlineSettings

    Attributes
    ----------
    params : MixtureParams or None
        The published parameters (the Polyak average with ``averaging``, else the iterate).
    iterate : MixtureParams or None
        The parameters online EM continues from.
    stats : SufficientStats or None
        Running statistics as per-point averages; ``iterate`` is their M-step.
    t : float
        Points learned since the statistics were last set by a fit (the step schedule's clock).
    n_seen, n_updates, n_gated : int
        Points fed (warm-up included), online updates since the last fit, far points left out.
    recent_counts : ndarray of shape (K,)
        Responsibility of recent points per component, each weighted by ``exp(-age / 1000)``.
    step : ndarray of shape (D,) or None
        The data's resolution per feature (:func:`emstream.resolution.grid_step`).
    """

    def __init__(self, settings: OnlineSettings):
        self.settings = settings
        self.n_features = None
        self._params = self._average_pending = None
        self.iterate = self.stats = None
        self.t = 0.0
        self.n_seen = self.n_updates = self.n_gated = 0
        self.recent_counts = None
        self.average = None  # (points, weights, means, covariances) with averaging
        self.moved_online = False
        self.step = None
        self._floor_cache = None  # (step, its variance floor)
        self.buffer = []  # warm-up rows, until warmup_size
        self._buffer_prior = None  # BufferPrior of the rows of the last provisional fit
        self.provisional_rows = 0  # buffered rows at the last provisional fit
        self.adoptions = 0  # fits adopted as the model (callers see a new model by it)
        self.window = RingBuffer(settings.window_rows)
        self.window_times = RingBuffer(settings.window_rows)
        self.far = RingBuffer(FAR_MEMORY)
        self.far_times = RingBuffer(FAR_MEMORY)
        self.upkeep = Upkeep()
        # The last fit of the learner's own (warm-up, refit or upkeep): n_iter, converged,
        # lower_bound (the mean log-likelihood it reached).
        self.last_fit = None
        # The user's starting point, ``(rows, rng, floor) -> MixtureParams`` (an estimator's
        # weights_init/means_init/precisions_init): one more start of the first warm-up search.
        # Not state: it comes from the estimator's parameters.
        self.initial = None

    # ------------------------------------------------------------------ state
    @property
    def params(self) -> MixtureParams | None:
        """The published parameters: the iterate, or with averaging the average, whose
        precision factors are made when first asked for after a step."""
        if self._average_pending is not None:
            total, weights, means, covs = self._average_pending
            self._average_pending = None
            self._params = MixtureParams.from_covariances(weights / weights.sum(), means, covs,
                                                          self.iterate.covariance_type)
        return self._params

    @params.setter
    def params(self, value: MixtureParams | None) -> None:
        self._params, self._average_pending = value, None

    @property
    def fitted(self) -> bool:
        return self.iterate is not None

    @property
    def warming_up(self) -> bool:
        return bool(self.buffer) or self.iterate is None

    @property
    def buffered(self) -> int:
        return sum(len(b) for b in self.buffer)

    def gate(self) -> float | None:
        gate = self.settings.outlier_gate
        if gate == "auto":
            return auto_gate(self.n_features)
        return gate

    def floor(self, strength: float = PROVISIONAL_PRIOR) -> np.ndarray | LoewnerFloor | None:
        """Smallest variance per feature: the resolution's, and while warming up a weak prior
        (``strength`` scales it; see PROVISIONAL_PRIOR)."""
        floor = None
        if self.settings.variance_floor == "resolution" and self.step is not None:
            cached = self._floor_cache
            if cached is None or cached[0] is not self.step:  # (steps are replaced, not edited)
                cached = self._floor_cache = (self.step, variance_floor(self.step))
            floor = cached[1]
        if not self.buffer:
            return floor
        rows = self.buffered
        if self.buffer and rows < self.settings.warmup_size:
            prior = self._buffer_prior
            share = self._rows_needed() / max(rows, 1)
            spread = prior.variance * (strength * share * share
                                       * np.minimum(1.0, share / prior.worth))
            floor = spread if floor is None else np.maximum(floor, spread)
            if (self.settings.covariance_type == "full" and self.n_features > 1
                    and prior.spread.size):
                # The independent rows' share, (r / n)³, as a matrix: correlated features keep
                # their correlation (the per-feature floor above then binds only beyond it, on
                # a slowly moving feature).  In 1-D the per-feature floor already covers it.
                floor = LoewnerFloor(floor, prior.basis,
                                     prior.spread * (strength * share ** 3))
        return floor

    def memory(self) -> float:
        """How many points the running statistics effectively summarise."""
        s = self.settings
        gamma = (self.t + s.step_offset) ** -s.step_decay if self.t + s.step_offset > 0 else 1.0
        if s.step_floor is not None:
            gamma = max(gamma, s.step_floor)
        return float(min(self.t, 1.0 / gamma))

    def horizon(self) -> float:
        """Points over which far rows must recur to count as the stream's own: the last
        :data:`RECURRENCE_HORIZON` (far rows rarer than ten in that many are flukes)."""
        return float(max(RECURRENCE_HORIZON, self.settings.window_rows))

    def support(self) -> float:
        """Fewest points a component may hold over the learner's horizon."""
        return _support(self.n_features, self.horizon(), self.settings.n_components)

    def fit_settings(self, n_rows: float, n_fresh: int | None = None,
                     init_trials: int = 8) -> FitSettings:
        """Settings of a search on ``n_rows`` rows (``n_fresh`` fresh starts, default the
        settings', each the best of ``init_trials`` k-means++ seedings)."""
        s = self.settings
        return FitSettings(
            n_components=s.n_components, covariance_type=s.covariance_type,
            reg_covar=s.reg_covar, floor=self.floor(), gate=self.gate() or auto_gate(
                self.n_features), support=support_needed(self.n_features, n_rows,
                                                         s.n_components),
            tol=s.tol, max_iter=min(s.max_iter, 50), init_params=s.init_params,
            n_fresh=s.n_fresh if n_fresh is None else n_fresh, init_trials=init_trials)

    def rng(self, *salt: int) -> np.random.Generator:
        """A generator for fresh starts: from ``random_state`` and ``salt`` (what the search is
        for), so a resumed learner draws what an uninterrupted one would."""
        seed = self.settings.random_state
        if isinstance(seed, np.random.Generator):
            return seed
        if isinstance(seed, np.random.RandomState):
            return np.random.default_rng(seed.randint(np.iinfo(np.int32).max))
        if seed is None:
            return np.random.default_rng()
        return np.random.default_rng([int(seed), *map(int, salt)])

    # ------------------------------------------------------------------ adopting a fit
    def start_from(self, params: MixtureParams, stats: SufficientStats, n_points: float,
                   *, keep_counters: bool = True) -> None:
        """Take fitted parameters and their statistics (totals over ``n_points``) as the model;
        the step schedule restarts from ``n_points`` and the Polyak average from the fit."""
        self.iterate = self.params = params
        self.adoptions += 1
        self.n_features = params.n_features
        self.stats = stats.scaled(1.0 / max(stats.total, np.finfo(float).tiny))
        self.t = float(n_points)
        self._restart_average()
        self.moved_online = False
        self.n_updates = 0
        share = min(n_points, RECENT_POINTS) / max(n_points, 1.0)
        self.recent_counts = self.stats.counts * (stats.total * share)
        if not keep_counters:
            self.n_seen = self.n_gated = 0

    def reset_after_batch_fit(self, params, stats, n_points: int, rows: np.ndarray) -> None:
        """A user's batch ``fit`` of ``n_points`` (``rows``: them, or a sample of them): the
        new state online EM continues from."""
        self.buffer = []
        self.provisional_rows = 0
        self.step = grid_step(rows) if self.settings.variance_floor == "resolution" else None
        self.window.clear()
        self.window_times.clear()
        self.far.clear()
        self.far_times.clear()
        self.upkeep = Upkeep(next_check=CHECK_GROWTH * max(n_points, self.settings.warmup_size))
        self.last_fit = None  # the user's fit is the estimator's to report
        self.start_from(params, stats, n_points, keep_counters=False)

    # ------------------------------------------------------------------ learning
    def learn(self, X: np.ndarray, with_resp: bool = False) -> em.ScoredStep | None:
        """Score ``X`` under the current model, then learn it.

        Parameters
        ----------
        X : ndarray of shape (n, D), checked by the caller
        with_resp : bool
            Also return the responsibilities.

        Returns
        -------
        emstream.em.ScoredStep or None
            Scores under the model before this update (``gated``: far rows left out); None
            while there is no model yet.
        """
        if self.n_features is None:
            self.n_features = X.shape[1]
        first = self.n_seen
        self.n_seen += X.shape[0]
        scored = self._online_step(X, first, with_resp) if self.fitted else None
        if self.warming_up:
            self._buffer_rows(X)
        elif scored is not None:
            self._maybe_check()
        return scored

    def _online_step(self, X: np.ndarray, first: int, with_resp: bool) -> em.ScoredStep:
        gate = self.gate()
        scored = em.e_step_scored(X, self.iterate, gate=gate, with_resp=with_resp)
        if scored.gated.any():
            times = np.arange(first, first + X.shape[0], dtype=float)
            far = scored.gated
            self.far.extend(X[far])
            self.far_times.extend(times[far])
            self.upkeep.far_since += int(np.count_nonzero(far))
            if self._far_rows_recur():
                # Far rows keep coming: the stream's own tails (or a region not learned yet),
                # learned like the rest; a check gives them a component of their own if needed.
                learned = em.e_step_scored(X, self.iterate, with_resp=with_resp)
                scored = em.ScoredStep(learned.estimate, scored.log_prob,
                                       np.zeros(X.shape[0], dtype=bool), learned.resp)
        est = scored.estimate
        n_far = X.shape[0] - (0 if est is None else int(round(est.n_samples)))
        self.n_gated += n_far
        if not self.warming_up:
            if scored.gated.any():
                kept = ~scored.gated
                self.window.extend(X[kept])
                self.window_times.extend(
                    np.arange(first, first + X.shape[0], dtype=float)[kept])
            else:  # (only the rows the window keeps)
                tail = min(X.shape[0], self.window.capacity)
                self.window.extend(X[-tail:])
                self.window_times.extend(np.arange(first + X.shape[0] - tail,
                                                   first + X.shape[0], dtype=float))
        if est is None:
            return scored
        n_points = est.n_samples
        step = self._step_size(n_points)
        stats = self.stats.blend(est.stats, step, 1.0 / n_points)
        self.t += n_points
        self.stats = stats
        self.iterate = em.m_step(stats, reg_covar=self.settings.reg_covar, floor=self.floor())
        if self.settings.averaging:
            self._publish_average(n_points)
        else:
            self.params = self.iterate
        self.n_updates += 1
        self.recent_counts = self.recent_counts * _recent_decay(n_points) + est.stats.counts
        self.moved_online = True
        return scored

    def _far_rows_recur(self) -> bool:
        times = self.far_times.stored()
        recent = times[times > self.n_seen - self.horizon()]
        return recurring(recent, min(self.horizon(), float(self.n_seen)))

    def _step_size(self, n_points: int) -> float:
        """Blend weight of a mini-batch of ``n_points`` learned after ``self.t`` points."""
        s = self.settings
        floor = s.step_floor
        if floor is not None and (self.t + 1.0 + s.step_offset) ** -s.step_decay <= floor:
            # Every point of the batch steps by the floor (the schedule only decreases): the
            # product of (1 - floor) in closed form, instead of n powers and logarithms (10% of
            # a daemon's back-fill, where the floor binds after a few hundred thousand points).
            return -math.expm1(n_points * math.log1p(-floor))
        first = self.t + 1.0 + s.step_offset
        last = self.t + n_points + s.step_offset
        if first >= SERIES_FROM and (floor is None or last ** -s.step_decay > floor):
            # Far enough into the stream, no step above the floor: in closed form (~20 scalar
            # operations instead of n powers and logarithms: a fifth of a 1,000-row step).
            return -math.expm1(_log_survival(first, last, s.step_decay))
        # The same values as (t + arange(1, n + 1) + offset) ** -decay, in fewer passes:
        # t counts points, so arange from it is exact (every value an integer < 2**53).
        if self.t.is_integer() and self.t + n_points < 2.0**53:
            t = np.arange(self.t + 1.0, self.t + n_points + 1.0)
        else:
            t = np.arange(1, n_points + 1, dtype=float)
            t += self.t
        if s.step_offset:  # (adding 0.0 changes nothing)
            t += s.step_offset
        t **= -s.step_decay  # (``**`` has fast paths, e.g. 1/t for step_decay=1)
        gamma = t
        if floor is not None:
            np.maximum(gamma, floor, out=gamma)
        np.minimum(gamma, 1.0, out=gamma)
        np.negative(gamma, out=gamma)
        return -math.expm1(float(np.add.reduce(np.log1p(gamma, out=gamma))))

    def _restart_average(self) -> None:
        """The average starts at the iterate just adopted, which counts as the points it was
        fitted on: a fit summarises its rows as well as the iterates after it summarise theirs.
        (Started empty, the first 100-row step after a 1,000-row warm-up replaced the fit
        outright: on scikit-learn's digits, 1,437 rows, every one of ten shuffles ended
        0.005-0.008 nats per point per feature further from batch EM.)"""
        it = self.iterate
        self.average = ((self.t, it.weights, it.means, it.covariances)
                        if self.settings.averaging else None)

    def _publish_average(self, n_points: float) -> None:
        """Fold the new iterate into the average and publish it.

        The average of the fit and the iterates since, each weighted by the points it learned
        (Polyak–Ruppert), over at most the learner's memory: beyond it, an exponential average
        with that horizon, so on a drifting stream it lags by no more than the iterate does."""
        it = self.iterate
        if self.average is None:
            self.average = (0.0, it.weights, it.means, it.covariances)
        total, weights, means, covs = self.average
        total += n_points
        share = n_points / min(total, max(self.memory(), n_points))
        weights = weights + share * (it.weights - weights)
        means = means + share * (it.means - means)
        covs = covs + share * (it.covariances - covs)
        self.average = self._average_pending = (total, weights, means, covs)

    # ------------------------------------------------------------------ warm-up
    def _rows_needed(self) -> int:
        """Rows a provisional model of full covariances needs: ``2 (D + 1)`` per component."""
        k, d = self.settings.n_components, self.n_features
        return min(2 * k * (d + 1), self.settings.warmup_size)

    def first_model_rows(self) -> int:
        """Rows the first provisional model needs: ``2 (D + 1)`` per component, or, where that
        is more (many features, few rows), :data:`DIAGONAL_ROWS` per component for a first
        one of diagonal covariances (diagonal or spherical ones all along for those types:
        they waited for 2 (D + 1), 310 rows for 50 features, where a full model's first came
        after 30).  A tied model's one covariance needs ``2 (D + 1)`` rows in all."""
        first = DIAGONAL_ROWS * self.settings.n_components
        if self.settings.covariance_type == "tied":
            first = max(first, 2 * (self.n_features + 1))
        if self.initial is not None:
            return self._rows_needed()
        return min(self._rows_needed(), first)

    def _buffer_rows(self, X: np.ndarray) -> None:
        # A copy: callers may refill the array they passed (a reused read buffer).
        self.buffer.append(X.copy())
        rows = self.buffered
        needed = self._rows_needed()
        full = rows >= self.settings.warmup_size
        due = rows >= self.first_model_rows() and (
            self.provisional_rows == 0 or rows >= REFIT_GROWTH * self.provisional_rows
            or self.provisional_rows < needed <= rows)  # (a diagonal one: now a full one)
        if not (full or due):
            return
        diagonal = not full and rows < needed and self.settings.covariance_type == "full"
        data = np.concatenate(self.buffer)
        self.buffer = [data]
        self.step = grid_step(data) if self.settings.variance_floor == "resolution" else None
        self._buffer_prior = buffer_prior(data)
        sample = Sample.of(data, np.arange(self.n_seen - rows, self.n_seen, dtype=float))
        # The provisional model was fitted on these very rows: a start, not a rival.  (Two fresh
        # starts of four k-means++ seedings each: as many seedings as one batch fit's, and two
        # answers to compare.)
        starts = []
        if self.initial is not None and not self.fitted:  # (its own draws: salt 1)
            starts = [("init", self.initial(data, self.rng(1, rows), self.floor()))]
        if full and self.fitted:
            # The last fit of the warm-up also tries what the first check would: the closest
            # pair merged and the most surprised other component split.  (A broad component
            # over a tight cluster and a sparse tail, beside two over one cluster, is a local
            # optimum no EM leaves: WaterFlow's 1,014 rows, 1 shuffle in 4, ended 0.1 nats
            # per point below batch EM, the stream over before the first check.)
            starts += self.split_merge(data, 1)
        settings = self.fit_settings(rows, init_trials=4)
        current = self.iterate
        if diagonal:
            # Too few rows for full covariances (2 (D + 1) per component: 624 rows for 103
            # features and K = 3, and no point was scored before them): diagonal ones until
            # then, held as full ones with no correlation.
            settings = replace(settings, covariance_type="diag")
            current = None if current is None else _diagonal_params(current)
        found = search(sample, settings, self.rng(0, rows), current=current, starts=starts,
                       keep=False, floors=self._weaker_priors(rows, full))
        if found.replaced or not self.fitted:
            before = self.iterate
            params, stats = found.best.params, found.best.stats
            if diagonal:
                params, stats = _full_from_diagonal(params, stats)
            self.start_from(params, stats, rows)
            self._record_fit(found)
            order = _matching(before, self.iterate)  # each component keeps its label
            if order is not None:
                self.permute(order)
        self.provisional_rows = rows
        if full:
            self.buffer = []
            self.window.extend(data[-self.settings.window_rows:])
            self.window_times.extend(sample.times[-self.settings.window_rows:])
            # The provisional prior goes with the buffer: the same statistics, the data's floor.
            self.iterate = em.m_step(self.stats, reg_covar=self.settings.reg_covar,
                                     floor=self.floor())
            self.params = self.iterate
            self._restart_average()
            # Every start came to one solution: no structure left to look for, so the first
            # scheduled checks are light ones, far apart (a change brings full ones back).
            self.upkeep = Upkeep(next_check=CHECK_GROWTH * self.n_seen,
                                 idle=IDLE_CHECKS if found.agreed else 0,
                                 events=self.upkeep.events)

    def _weaker_priors(self, rows: int, full: bool) -> tuple:
        """Floors of a weaker warm-up prior for a provisional search to try (see WEAK_PRIOR)."""
        prior = self._buffer_prior
        share = self._rows_needed() / max(rows, 1)
        if (full or PROVISIONAL_PRIOR * share ** 3 < PRIOR_MATERIAL
                or float(prior.worth.min()) < INDEPENDENT_WORTH):
            return ()
        return (self.floor(PROVISIONAL_PRIOR * WEAK_PRIOR),)

    # ------------------------------------------------------------------ upkeep
    def _maybe_check(self) -> None:
        up = self.upkeep
        scheduled = self.n_seen >= up.next_check
        quiet = self.n_seen < up.quiet_until
        if quiet and not scheduled:
            return
        support = self.support()
        starving = not quiet and min(self.stats.counts.tolist()) * self.memory() < support
        far = not quiet and up.far_since >= support
        if not (scheduled or starving or far):
            return
        reason = "schedule" if scheduled else "starving" if starving else "far rows"
        replaced = self.check(reason)
        if scheduled or replaced:
            up.idle = 0 if replaced else up.idle + 1
        if scheduled:
            if up.idle >= IDLE_CHECKS:
                growth = IDLE_GROWTH
            elif self.n_seen >= LATE_CHECKS * self.settings.warmup_size:
                growth = LATE_GROWTH
            else:
                growth = CHECK_GROWTH
            up.next_check = growth * self.n_seen
        else:
            # Nothing to gain now: wait longer before asking again (reset by a change).
            up.pause = 0.0 if replaced else max(up.pause * 2.0, self.settings.window_rows / 2)
            up.quiet_until = self.n_seen + (self.settings.window_rows / 2 if replaced
                                            else up.pause)

    def check_sample(self) -> tuple[Sample, list]:
        """The rows a check fits (recent learned rows, and far rows weighted to their rate if
        they recur) and the births to try (each component in turn moved onto the far rows)."""
        X, times = self.window.recent(), self.window_times.recent()
        rows = Sample.of(X, times)
        far, far_times = self.far.recent(), self.far_times.recent()
        recent = far_times > self.n_seen - self.horizon()
        far, far_times = far[recent], far_times[recent]
        support = support_needed(self.n_features, rows.size, self.settings.n_components)
        if far.shape[0] < support or not recurring(far_times, min(self.horizon(),
                                                                    float(self.n_seen))):
            return rows, []
        # Far rows over their horizon stand for (horizon - far) learned points' worth of
        # stream; the window's rows for their own number: weigh far rows to that rate.
        span = self.n_seen - far_times.min()
        weight = len(X) / max(span - far.shape[0], 1.0)
        rows = Sample(np.concatenate([X, far]), np.r_[rows.weights, np.full(len(far), weight)],
                      np.r_[times, far_times])
        seed = SufficientStats.from_chunk(far, np.ones((1, len(far))),
                                          self.settings.covariance_type)
        births = []
        share = len(far) * weight / rows.size
        for k in range(self.settings.n_components):
            stats = self.stats
            counts, means, scatter = stats.counts.copy(), stats.means.copy(), stats.scatter.copy()
            counts[k] = share
            means[k] = seed.means[0]
            if stats.covariance_type != "tied":
                scatter[k] = seed.scatter[0] * (share / len(far))
            births.append((f"birth {k}", em.m_step(
                stats.replace(counts=counts, means=means, scatter=scatter),
                reg_covar=self.settings.reg_covar, floor=self.floor())))
        return rows, births

    def split_merge(self, X: np.ndarray, merges: int = MERGES) -> list:
        """Structural proposals of split-and-merge EM (Ueda et al. 2000) from the current
        model: for each of the ``merges`` closest pairs of components (Bhattacharyya
        distance), the pair merged and the other component that carries the most surprise on
        ``X`` split in two.  They leave local optima that EM alone cannot (one component over
        two clusters, two over one), which fresh starts on a few hundred heavy-tailed rows
        rarely reach."""
        from .compare import component_distances

        k = self.settings.n_components
        if k < 2 or X.shape[0] == 0:
            return []
        p = self.iterate
        scored = em.e_step_scored(X, p, with_resp=True)
        load = scored.resp.T @ _excess_surprise(scored.log_prob, np.ones(X.shape[0], bool),
                                                np.ones(X.shape[0]))
        distance = component_distances(p)
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        pairs.sort(key=lambda pair: distance[pair])
        moves = []
        for i, j in pairs[:merges]:
            keep, free = (i, j) if p.weights[i] >= p.weights[j] else (j, i)
            merged = merge_components(self.stats, keep, free)
            burden = load.copy()
            burden[[keep, free]] = -np.inf  # (a merged pair split again is no move)
            target = keep if k < 3 else int(np.argmax(burden))
            split = split_component(merged, target, free)
            moves.append(("split-merge", em.m_step(split, reg_covar=self.settings.reg_covar,
                                                   floor=self.floor())))
        return moves

    def check(self, reason: str) -> bool:
        """Fit candidates on recent rows and adopt a better one; whether the model changed.

        A scheduled check after :data:`IDLE_CHECKS` that changed nothing is light: the one
        split-and-merge proposal of the closest pair, no fresh start."""
        up = self.upkeep
        up.checks += 1
        up.far_since = 0
        light = reason == "schedule" and up.idle >= IDLE_CHECKS
        rows, births = self.check_sample()
        if rows.X.shape[0] < 2 * self.settings.n_components:
            # Too few rows to fit and judge candidates by: after a user's batch fit the window
            # starts empty, and ten far rows in a row made a check of none (IndexError).
            return False
        births = births + self.split_merge(self.window.recent(), 1 if light else MERGES)
        if self.step is not None:
            self.step = finer(self.step, grid_step(rows.X))
        # One quick fresh start: the proposals from the current model do most of the work.
        found = search(rows, self.fit_settings(rows.size, n_fresh=0 if light else 1,
                                               init_trials=2),
                       self.rng(1, up.checks),
                       current=self.iterate, starts=births, warm=False)
        if not found.replaced:
            return False
        self._replace(found, rows.size, reason)
        return True

    def _record_fit(self, found) -> None:
        best = found.best
        self.last_fit = {"n_iter": int(best.n_iter), "converged": bool(best.converged),
                         "lower_bound": float(best.lower_bound)}

    def _replace(self, found, n_points: float, reason: str) -> None:
        before = self.iterate
        best = found.best
        self.start_from(best.params, best.stats, n_points)
        self._record_fit(found)
        order = _matching(before, self.iterate)
        if order is not None:
            self.permute(order)
        self.upkeep.replaced += 1
        event = {"event": "upkeep", "reason": reason, "point": int(self.n_seen),
                 "candidate": best.name,
                 "log_likelihood_before": round(found.before, 6),
                 "log_likelihood_after": round(found.after, 6)}
        self.upkeep.events = (self.upkeep.events + [event])[-20:]

    def refit(self, X: np.ndarray, times: np.ndarray | None = None) -> dict:
        """Fit candidates on ``X`` (drift or scheduled refit) under the one rule of
        :mod:`emstream.refit`; adopt the best unless the current model is as good.

        Returns
        -------
        dict
            ``replaced`` (bool), ``candidate``, ``log_likelihood_before`` and ``_after`` (mean
            over the rows judged), ``iterations``.
        """
        if times is None:
            times = np.arange(self.n_seen - X.shape[0], self.n_seen, dtype=float)
        rows = Sample.of(X, times)
        if self.step is not None:
            self.step = finer(self.step, grid_step(X))
        self.upkeep.checks += 1
        found = search(rows, self.fit_settings(rows.size), self.rng(1, self.upkeep.checks),
                       current=self.iterate)
        if found.replaced:
            before = self.iterate
            self.start_from(found.best.params, found.best.stats, rows.size)
            self._record_fit(found)
            order = _matching(before, self.iterate)
            if order is not None:
                self.permute(order)
        return {"replaced": bool(found.replaced), "candidate": found.best.name,
                "log_likelihood_before": found.before, "log_likelihood_after": found.after,
                "iterations": int(found.best.n_iter)}

    # ------------------------------------------------------------------ relabelling
    def permute(self, order) -> None:
        """New component ``i`` is old component ``order[i]`` (parameters, statistics, counts)."""
        order = np.asarray(order)
        self.params = _permuted(self.params, order)
        self.iterate = self.params if self.iterate is self.params or self.iterate is None \
            else _permuted(self.iterate, order)
        s = self.stats
        tied = s.covariance_type == "tied"
        self.stats = SufficientStats(s.counts[order], s.means[order],
                                     s.scatter if tied else s.scatter[order], s.covariance_type)
        if self.average is not None:
            total, weights, means, covs = self.average
            self.average = (total, weights[order], means[order], covs if tied else covs[order])
        self.recent_counts = self.recent_counts[order]


def _permuted(p: MixtureParams, order: np.ndarray) -> MixtureParams:
    tied = p.covariance_type == "tied"
    return MixtureParams(p.weights[order], p.means[order],
                         p.covariances if tied else p.covariances[order],
                         p.precisions_cholesky if tied else p.precisions_cholesky[order],
                         p.covariance_type)


def _matching(before: MixtureParams | None, after: MixtureParams):
    """The order that gives each new component the label of the old one it matches (Hungarian
    assignment on the Bhattacharyya distance), or None if it is the identity."""
    if before is None:
        return None
    from .compare import full_covariances, matched_pairs

    k, d, kind = before.n_components, before.n_features, before.covariance_type
    # (The pairs only: the mixtures' divergence would cost three times as much.)
    pairs, _ = matched_pairs(before.means, full_covariances(before.covariances, kind, k, d),
                             after.means, full_covariances(after.covariances, kind, k, d))
    order = [j for _, j in pairs]
    return None if order == list(range(k)) else order
