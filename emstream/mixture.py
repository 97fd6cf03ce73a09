"""GaussianMixture: scikit-learn's estimator, plus online EM, over the shared core."""

from __future__ import annotations

import inspect
import logging
import operator
import warnings

import numpy as np

from . import distributed, em
from ._blas import single_thread_blas
from .exceptions import (
    ConvergenceWarning,
    InitialValuesError,
    NotFittedError,
    sklearn_compatible,
)
from .gaussian import (
    MixtureParams,
    covariances_from_precision_cholesky,
    precision_cholesky_from_precisions,
    precisions_from_cholesky,
)
from .init import INIT_METHODS, initial_stats, reseed_dead_components
from .online import OnlineLearner, OnlineSettings, auto_gate  # noqa: F401 (auto_gate: API)
from .resolution import ROWS as RESOLUTION_ROWS
from .resolution import grid_step, variance_floor
from .stats import COVARIANCE_TYPES, scatter_shape
from .validation import (MAX_ABS_VALUE, _as_float_array, check_array, check_bool, check_float,
                         check_int)

logger = logging.getLogger("emstream")
VARIANCE_FLOORS = ("resolution", None)
# Bounds on the hyper-parameters, checked at fit time and on loading a checkpoint (one place, so
# that whatever fits can be saved and loaded again): beyond them a refit would run for ever, a
# warm-up would hold more rows than fit in memory, or reg_covar would exceed any variance of
# values within ±MAX_ABS_VALUE (1e200: with it a covariance stays below the 1e201 a checkpoint
# holds).  A seed is any non-negative integer below 2**128 (numpy's seed sequences take 128
# bits of entropy).
MAX_COMPONENTS = 10_000
MAX_N_INIT = 1000
MAX_ITER = 1_000_000
MAX_WARMUP = 10_000_000
MAX_REG_COVAR = MAX_ABS_VALUE**2
SEED_LIMIT = 2**128


def feature_names(X) -> np.ndarray | None:
    """A data frame's column names as an object array, if every one is text (as
    scikit-learn keeps them); None for arrays, or frames with other names."""
    columns = getattr(X, "columns", None)
    if columns is None or isinstance(X, np.ndarray):
        return None
    try:
        names = list(columns)
    except TypeError:  # (a dask Delayed's "columns" is another Delayed: the rows' check
        return None  # then says what X should be)
    if not names or not any(isinstance(name, str) for name in names):
        return None
    if not all(isinstance(name, str) for name in names):
        # (as scikit-learn: kept silently as unnamed, a later frame's order went unchecked)
        kinds = sorted({type(name).__name__ for name in names})
        raise TypeError(f"Feature names are only supported if all input features have string "
                        f"names, but your input has {kinds} as feature name / column name "
                        "types; convert them all to str (X.columns = X.columns.astype(str))")
    return np.asarray(names, dtype=object)


def _batch_rows(X, checks: dict):
    """Rows for batch EM, checked: numpy as is, a dask collection where it lives."""
    if distributed.is_dask_collection(X):
        return distributed.DaskRows(X, **checks)
    return check_array(X, estimator="GaussianMixture", **checks)


class GaussianMixture:
    """Gaussian mixture fitted by batch EM (``fit``) or online EM (``partial_fit``).

    A drop-in for :class:`sklearn.mixture.GaussianMixture` (same parameters, methods and fitted
    attributes) whose statistics stay exact for data far from the origin, and which also learns
    from a stream: ``partial_fit`` runs stepwise EM (Cappé & Moulines 2009; Liang & Klein 2009)
    on each mini-batch, blending its expected statistics into running ones with a step size
    ``γ``, then re-estimating the parameters.  ``fit(X)`` with ``warm_start=True`` refits by batch
    EM from wherever the stream left the model, through the same E-step and M-step.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Batch EM stops when the average log-likelihood gains less than ``tol``.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance (in the data's units).
    max_iter : int, default=100
        Most batch-EM iterations per initialisation.  0: ``fit`` publishes the initialisation
        itself (``partial_fit`` and ``refit`` then refuse to run).
    n_init : int, default=1
        Batch fits from this many initialisations; the best log-likelihood is kept.
    init_params : {"k-means++", "kmeans", "random", "random_from_data"}, default="k-means++"
    weights_init : array-like of shape (K,), optional
    means_init : array-like of shape (K, D), optional
    precisions_init : array-like, optional
        Shaped like ``covariances_`` for the covariance type.  The three give ``fit`` its start
        (what is not given comes from ``init_params``); for ``partial_fit`` they are one more
        start of the warm-up's first search, which keeps whichever start is best on held-out
        rows.
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None
    warm_start : bool, default=False
        ``fit`` starts from the current parameters (batch or online) instead of re-initialising.
    verbose : int, default=0
        Log batch-EM progress to the ``emstream`` logger every ``verbose_interval`` iterations.
    verbose_interval : int, default=10
    step_decay : float in (0.5, 1], default=0.8
        ``α`` in the per-point step size ``γ_t = max((t + step_offset)^-α, step_floor)``, where
        ``t`` counts the points learned since the statistics were last set by a batch fit (the
        batch fit's own points included).  A mini-batch of ``b`` points is blended with
        ``1 - Π(1 - γ_t)`` over its points, so the result barely depends on how the stream is
        cut into mini-batches.  0.8 ends one pass over a stationary stream of 10⁶ points within
        2e-5 of batch EM's held-out log-likelihood (0.7: within 7e-5).
    step_offset : float >= 0, default=0
        ``t0`` above: delays the decay of the step size.
    step_floor : float in (0, 1) or None, default=None
        Lower bound on the per-point step size, for forgetting old data (``1/step_floor`` is
        roughly the memory, in points).  ``None`` converges on stationary data.
    warmup_size : int, default=1000
        ``partial_fit`` buffers this many points and fits them (k-means++ starts and EM with
        the guards of :mod:`emstream.refit`) before the buffer is dropped.  Long before that,
        once there are ``2 (D + 1)`` rows per component, a provisional model is fitted on the
        buffer: it scores, predicts and learns online, and is refitted on the buffer each time
        the buffer doubles (linear cost in the points fed); with many features (``2 (D + 1)``
        above ten), a first one of diagonal covariances from ten rows per component.
    outlier_gate : float > 0, "auto" or None, default="auto"
        Online EM leaves out of the statistics a point whose squared Mahalanobis distance to
        *every* component exceeds this gate (it is still scored, and counted in ``n_gated_``),
        so one wild value or a short burst cannot damage the model; far points that keep
        recurring (heavy tails, a region the model has not learned yet) are learned like any
        other, and the learner's upkeep gives them a component if they need one.  ``"auto"``:
        the distance a Gaussian point exceeds with probability 1e-15 (64.4 in 1-D, i.e. 8σ;
        93.7 in 10-D).  ``None`` learns every point.  Batch ``fit`` never gates.
    averaging : bool, default=True
        Publish (as ``means_`` etc., and for ``score``/``predict``) the average of the online
        iterates, each weighted by the points it learned, over the learner's memory (the
        Polyak–Ruppert average from the last fit, which counts as its rows, becoming an
        exponential average once that is longer than the memory); online EM itself goes on
        from the last iterate.  It halves the iterates' noise where it matters most (many
        features, a few thousand points: on river's ImageSegments the worst of eight one-pass
        gaps to batch EM fell from 0.062 to 0.037 nats per feature) and lags a drifting stream
        by no more than the iterate does (means moving 3σ per 10⁶ points: worst gap 0.38%
        against 0.15%; after a 3σ jump and its refit, closer to the new optimum, 0.02–0.12%
        against 0.11–0.26% 2,000 points on).
        ``score`` of a monitored stream (``partial_fit_scored``) uses the iterate.
    variance_floor : {"resolution", None}, default="resolution"
        ``"resolution"``: no variance falls below ``δ²/12`` per feature, where ``δ`` is the step
        of the grid the feature's values lie on (1 for integers, 0.01 for readings with two
        decimals; negligible for continuous data; :mod:`emstream.resolution`), so a component
        cannot collapse onto a repeated value of a quantised column.  ``None``: only
        ``reg_covar`` (scikit-learn's behaviour).

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
    means_ : ndarray of shape (K, D)
    covariances_ : ndarray, (K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical
    precisions_ : ndarray, same shape
    precisions_cholesky_ : ndarray, same shape
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Average log-likelihood of the last batch fit's data.
    lower_bounds_ : list of float
        ``lower_bound_`` after each iteration of the best batch run.
    n_features_in_ : int
    feature_names_in_ : ndarray of str, shape (n_features,)
        The column names of the data frame the model first learned (only if it was one, with
        text names, as scikit-learn keeps them); a frame with other names or order is then
        refused.
    n_seen_ : int
        Observations passed to ``partial_fit`` since the last ``fit`` (warm-up and gated points
        included).
    n_updates_ : int
        Online mini-batch updates since the statistics were last set by a batch fit.
    n_gated_ : int
        Points ``partial_fit`` scored but did not learn because of ``outlier_gate``.
    recent_counts_ : ndarray of shape (K,)
        Responsibility mass of recent points per component, each point weighted by
        ``exp(-age / 1000)`` (age in points): which components the stream feeds now.

    Examples
    --------
    >>> import numpy as np
    >>> from emstream import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(-4, 1, 3000), rng.normal(5, 1, 2000)][:, None]
    >>> gm = GaussianMixture(2, random_state=0).fit(X)
    >>> np.sort(gm.means_.ravel()).round(1)
    array([-4.,  5.])
    >>> online = GaussianMixture(2, random_state=0)
    >>> for batch in np.array_split(rng.permutation(X), 50):
    ...     _ = online.partial_fit(batch)
    >>> np.sort(online.means_.ravel()).round(1)
    array([-4.,  5.])
    """

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="k-means++", weights_init=None,
                 means_init=None, precisions_init=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, step_decay=0.8, step_offset=0.0,
                 step_floor=None, warmup_size=1000, outlier_gate="auto", averaging=True,
                 variance_floor="resolution"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.step_decay = step_decay
        self.step_offset = step_offset
        self.step_floor = step_floor
        self.warmup_size = warmup_size
        self.outlier_gate = outlier_gate
        self.averaging = averaging
        self.variance_floor = variance_floor

    # ------------------------------------------------------------------ scikit-learn protocol
    @classmethod
    def _param_names(cls) -> list[str]:
        names = cls.__dict__.get("_param_names_cache")
        if names is None:
            names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
            cls._param_names_cache = names
        return names

    @classmethod
    def _param_getter(cls):
        """``self -> tuple of every constructor parameter``, in one C call."""
        getter = cls.__dict__.get("_param_getter_cache")
        if getter is None:
            getter = operator.attrgetter(*cls._param_names())
            cls._param_getter_cache = getter
        return getter

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters, as scikit-learn's ``get_params``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "GaussianMixture":
        """Set constructor parameters, as scikit-learn's ``set_params``."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for GaussianMixture; valid "
                                 f"parameters are {sorted(valid)}")
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self):
        """Tags for scikit-learn's Pipeline, GridSearchCV and clone (a density estimator)."""
        from sklearn.base import BaseEstimator, DensityMixin

        class _Tagged(DensityMixin, BaseEstimator):
            pass

        return _Tagged().__sklearn_tags__()

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in
                    inspect.signature(type(self).__init__).parameters.values()}
        shown = []
        for name in self._param_names():
            value = getattr(self, name)
            default = defaults[name]
            if isinstance(value, np.ndarray) or isinstance(default, np.ndarray) or (
                    value is not default and value != default):
                shown.append(f"{name}={value!r}" if name != "n_components" else repr(value))
        return f"GaussianMixture({', '.join(shown)})"

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        # partial_fit validates on every call: skip the work while no parameter was reassigned
        # (the very same objects are still in place; any assignment triggers a full check).
        current = self._param_getter()(self)
        previous = getattr(self, "_validated", None)
        if previous is not None and all(map(operator.is_, current, previous)):
            return
        self._check_params()
        self._validated = current

    def _check_params(self) -> None:
        check_int(self.n_components, "n_components", 1, MAX_COMPONENTS)
        for name in ("covariance_type", "init_params", "variance_floor", "outlier_gate"):
            if isinstance(getattr(self, name), np.ndarray):  # ("in" would compare elementwise)
                raise ValueError(f"{name} must be a single value, got an array")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got "
                             f"{self.covariance_type!r}")
        check_float(self.tol, "tol", 0.0)
        check_float(self.reg_covar, "reg_covar", 0.0, MAX_REG_COVAR)
        check_int(self.max_iter, "max_iter", 0, MAX_ITER)
        check_int(self.n_init, "n_init", 1, MAX_N_INIT)
        if self.init_params not in INIT_METHODS:
            raise ValueError(f"init_params must be one of {INIT_METHODS}, got "
                             f"{self.init_params!r}")
        if not isinstance(self.verbose, (bool, np.bool_)):  # (True is verbose, as in sklearn)
            check_int(self.verbose, "verbose", 0)
        check_int(self.verbose_interval, "verbose_interval", 1)
        check_float(self.step_decay, "step_decay", 0.5, 1.0, low_open=True)
        check_float(self.step_offset, "step_offset", 0.0)
        if self.step_floor is not None:
            check_float(self.step_floor, "step_floor", 0.0, 1.0, low_open=True, high_open=True)
        check_int(self.warmup_size, "warmup_size", 1, MAX_WARMUP)
        check_bool(self.warm_start, "warm_start")
        check_bool(self.averaging, "averaging")
        if self.variance_floor not in VARIANCE_FLOORS:
            raise ValueError(f"variance_floor must be 'resolution' or None, got "
                             f"{self.variance_floor!r}")
        if not (self.outlier_gate is None or self.outlier_gate == "auto"):
            try:
                check_float(self.outlier_gate, "outlier_gate", 0.0, low_open=True)
            except ValueError:
                # (the number's own message left out the two other choices)
                raise ValueError(f'outlier_gate must be a finite number > 0, "auto" or None, '
                                 f'got {self.outlier_gate!r}') from None
        if not (self.random_state is None
                or isinstance(self.random_state, (np.random.Generator, np.random.RandomState))
                or (isinstance(self.random_state, (int, np.integer))
                    and not isinstance(self.random_state, bool)
                    and 0 <= self.random_state < SEED_LIMIT)):
            raise ValueError("random_state must be None, a non-negative int below 2**128, a "
                             f"numpy Generator or RandomState, got {self.random_state!r}")

    def _checked_inits(self, n_features: int):
        """User-given initial weights, means and precision factors, validated (None if absent)."""
        k, kind = self.n_components, self.covariance_type
        weights = means = prec_chol = None
        if self.weights_init is not None:
            weights = _as_float_array(self.weights_init, "weights_init")
            if weights.shape != (k,):
                raise ValueError(f"weights_init must have shape ({k},), got {weights.shape}")
            if not np.all(np.isfinite(weights)):
                raise ValueError("weights_init must hold finite values in [0, 1], got NaN or "
                                 "infinity")
            if weights.min() < 0 or weights.max() > 1:
                raise ValueError("weights_init must hold finite values in [0, 1], got values "
                                 f"from {float(weights.min())!r} to {float(weights.max())!r}")
            if not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6):
                raise ValueError(f"weights_init must sum to 1, got {float(weights.sum())!r}")
        if self.means_init is not None:
            means = _as_float_array(self.means_init, "means_init")
            if means.shape != (k, n_features):
                raise ValueError(f"means_init must have shape ({k}, {n_features}), got "
                                 f"{means.shape}")
            if not np.all(np.isfinite(means)):
                raise ValueError("means_init must be finite")
            if np.abs(means).max(initial=0.0) > MAX_ABS_VALUE:  # (no data lies there)
                raise ValueError(f"means_init must lie within ±{MAX_ABS_VALUE:g}, as data do")
        if self.precisions_init is not None:
            prec = _as_float_array(self.precisions_init, "precisions_init")
            shape = scatter_shape(kind, k, n_features)
            if prec.shape != shape:
                raise ValueError(f"precisions_init for covariance_type={kind!r} must have shape "
                                 f"{shape}, got {prec.shape}")
            if not np.all(np.isfinite(prec)):
                raise ValueError("precisions_init must be finite")
            if kind in ("full", "tied"):
                stack = prec if kind == "full" else prec[None]
                if not np.allclose(stack, np.swapaxes(stack, 1, 2)):
                    raise ValueError(f"precisions_init must be symmetric (covariance_type="
                                     f"{kind!r})")
                try:
                    prec_chol = precision_cholesky_from_precisions(prec, kind)
                except np.linalg.LinAlgError:
                    raise ValueError(f"precisions_init must be positive definite "
                                     f"(covariance_type={kind!r})") from None
            else:
                if prec.min() <= 0:
                    raise ValueError(f"precisions_init must be positive (covariance_type="
                                     f"{kind!r})")
                prec_chol = np.sqrt(prec)
            # (a precision of 1e-320 is positive and finite, but its covariance is not)
            with np.errstate(over="ignore", divide="ignore"):
                covariances = covariances_from_precision_cholesky(prec_chol, kind)
            if not np.all(np.isfinite(covariances)):
                raise ValueError("precisions_init is too small: the covariances it stands for "
                                 "overflow")
        return weights, means, prec_chol

    # ------------------------------------------------------------------ state
    def _is_fitted(self) -> bool:
        return "_fitted_params" in self.__dict__ or self.__dict__.get("_pending") is not None

    def _check_fitted(self) -> None:
        if self._is_fitted():
            return
        learner = getattr(self, "_online", None)
        if learner is not None and learner.buffered:
            raise sklearn_compatible(NotFittedError)(
                f"This GaussianMixture has seen {learner.buffered} points, fewer than the "
                f"{learner.first_model_rows()} its first provisional model needs; call "
                "partial_fit with more data, or fit(X)")
        raise sklearn_compatible(NotFittedError)(
            "This GaussianMixture is not fitted yet; call fit(X) or partial_fit(X) before "
            "using it")

    def _check_settings_unchanged(self, action: str) -> None:
        """The fitted state must have the shape the current settings describe."""
        if not self._is_fitted():
            return
        pending = self.__dict__.get("_pending")
        params = pending.iterate if pending is not None else self.__dict__["_fitted_params"]
        fitted = (params.n_components, params.covariance_type)
        if fitted != (self.n_components, self.covariance_type):
            raise ValueError(
                f"{action} cannot continue a model fitted with n_components={fitted[0]}, "
                f"covariance_type={fitted[1]!r} under n_components={self.n_components}, "
                f"covariance_type={self.covariance_type!r}; call fit(X) with "
                "warm_start=False to start afresh")

    def _check_X(self, X, *, min_samples: int = 1, why: str = "",
                 learning: bool = False) -> np.ndarray:
        """``X`` checked (:func:`~emstream.validation.check_array`) and its column names against
        the fitted ones (the first rows ever learned set them)."""
        learner = self.__dict__.get("_online")
        # (n_seen counts from the last fit: right after fit it is 0, and the names are fit's)
        first = learning and (learner is None or learner.n_seen == 0) and not self._is_fitted()
        self._check_feature_names(X, reset=first)
        width = getattr(self, "n_features_in_", None)
        if width is None and learning and learner is not None:
            # (the warm-up's rows so far: another width would break the buffer for good)
            width = learner.n_features
        return check_array(X, n_features=width, min_samples=min_samples, why_min=why,
                           estimator="GaussianMixture")

    def _check_feature_names(self, X, *, reset: bool) -> None:
        """As scikit-learn does: a data frame's column names are kept as ``feature_names_in_``
        when the model first learns; later, other names (columns swapped, renamed) are a
        ValueError, and names on one side only a warning."""
        names = feature_names(X)
        if reset:
            self.__dict__.pop("feature_names_in_", None)
            if names is not None:
                self.feature_names_in_ = names
            return
        fitted = self.__dict__.get("feature_names_in_")
        if fitted is None and names is None:
            return
        if fitted is None or names is None:
            has = "has feature names" if fitted is None else "does not have valid feature names"
            was = "without" if fitted is None else "with"
            warnings.warn(f"X {has}, but GaussianMixture was fitted {was} feature names",
                          UserWarning, stacklevel=3)
            return
        if len(names) != len(fitted) or not all(names == fitted):
            unseen = [n for n in names if n not in set(fitted)]
            missing = [n for n in fitted if n not in set(names)]
            detail = "".join(f"\n- {n}" for n in unseen[:5])
            raise ValueError(
                "The feature names should match those that were passed during fit.\n"
                + (f"Feature names unseen at fit time:{detail}\n" if unseen else "")
                + ("Feature names seen at fit time, yet now missing:"
                   + "".join(f"\n- {n}" for n in missing[:5]) + "\n" if missing else "")
                + ("Feature names must be in the same order as they were in fit.\n"
                   if not unseen and not missing else ""))

    def _set_params(self, params: MixtureParams) -> None:
        self.__dict__["_fitted_params"] = params
        self.__dict__["_pending"] = None

    @property
    def _params(self) -> MixtureParams:
        """The published parameters: a batch fit's, or the online learner's, taken from it
        when first asked for after an online step (with averaging, making the average's
        precision factors costs about as much as the step; a stream that is only learned
        from never pays it)."""
        learner = self.__dict__.get("_pending")
        if learner is not None:
            self._set_params(learner.params)
        try:
            return self.__dict__["_fitted_params"]
        except KeyError:
            raise AttributeError("'GaussianMixture' object has no attribute '_params'") from None

    @property
    def weights_(self) -> np.ndarray:
        """Mixing weights, shape (K,)."""
        return self._fitted("weights_").weights

    @property
    def means_(self) -> np.ndarray:
        """Component means, shape (K, D)."""
        return self._fitted("means_").means

    @property
    def covariances_(self) -> np.ndarray:
        """Covariances, shaped by ``covariance_type`` (see the class documentation)."""
        return self._fitted("covariances_").covariances

    @property
    def precisions_cholesky_(self) -> np.ndarray:
        """Cholesky factors of the precisions, shaped like ``covariances_``."""
        return self._fitted("precisions_cholesky_").precisions_cholesky

    def _fitted(self, name: str) -> MixtureParams:
        try:
            return self._params
        except AttributeError:
            raise AttributeError(f"'GaussianMixture' object has no attribute {name!r}") from None

    @property
    def precisions_(self) -> np.ndarray:
        """``P Pᵀ`` of the current parameters, computed when first asked for (online EM
        changes the parameters on every mini-batch, and few callers ever look)."""
        params = self._fitted("precisions_") if self._is_fitted() else None
        if params is None:
            raise AttributeError("'GaussianMixture' object has no attribute 'precisions_'")
        cached = self.__dict__.get("_precisions")
        if cached is None or cached[0] is not params:
            cached = (params, precisions_from_cholesky(params.precisions_cholesky,
                                                       params.covariance_type))
            self._precisions = cached
        return cached[1]

    def _rng(self) -> np.random.Generator:
        seed = self.random_state
        if isinstance(seed, np.random.Generator):
            return seed
        if isinstance(seed, np.random.RandomState):
            return np.random.default_rng(seed.randint(np.iinfo(np.int32).max))
        return np.random.default_rng(seed)

    # ------------------------------------------------------------------ the online learner
    def _online_settings(self) -> OnlineSettings:
        """The learner's settings from the current parameters (rebuilt only when they change)."""
        cached = self.__dict__.get("_settings_cache")
        validated = self.__dict__.get("_validated")
        if cached is not None and cached[0] is validated:
            return cached[1]  # (validation just saw the very same parameter objects)
        current = self._param_getter()(self)
        if cached is not None and all(map(operator.is_, current, cached[0])):
            return cached[1]
        # Checked first (once per change): a monitor asks for the learner before partial_fit
        # checks, and SeriesDetector(warmup_size="a") failed here with int()'s own message.
        self._validate_params()
        validated = self.__dict__.get("_validated")
        # Numbers as Python's: a checkpoint stores float64, so a numpy float32 setting learned
        # with here would make a resumed model differ from one never saved (by 1e-9).
        gate = self.outlier_gate
        settings = OnlineSettings(
            n_components=int(self.n_components), covariance_type=self.covariance_type,
            reg_covar=float(self.reg_covar), tol=float(self.tol),
            max_iter=int(self.max_iter), init_params=self.init_params,
            random_state=self.random_state, step_decay=float(self.step_decay),
            step_offset=float(self.step_offset),
            step_floor=None if self.step_floor is None else float(self.step_floor),
            warmup_size=int(self.warmup_size),
            outlier_gate=gate if gate is None or isinstance(gate, str) else float(gate),
            averaging=bool(self.averaging), variance_floor=self.variance_floor,
            n_fresh=max(2, int(self.n_init)))
        self._settings_cache = (validated if validated is not None and all(
            map(operator.is_, current, validated)) else current, settings)
        return settings

    def _learner(self) -> OnlineLearner:
        """The online learner, created on first use; its settings follow the parameters."""
        learner = self.__dict__.get("_online")
        settings = self._online_settings()
        if learner is None:
            learner = self._online = OnlineLearner(settings)
        elif learner.settings is not settings:
            learner.settings = settings
        given = (self.weights_init, self.means_init, self.precisions_init)
        learner.initial = None if all(v is None for v in given) else self._initial_params
        return learner

    def _publish(self, learner: OnlineLearner) -> None:
        """Mirror the learner's published parameters (taken from it when first asked for) and
        its last own fit as attributes."""
        if learner.fitted:
            self.__dict__["_pending"] = learner
            self.n_features_in_ = learner.n_features
        if learner.last_fit is not None and learner.last_fit is not self.__dict__.get(
                "_last_fit"):
            self._last_fit = learner.last_fit
            self.n_iter_ = learner.last_fit["n_iter"]
            self.converged_ = learner.last_fit["converged"]
            self.lower_bound_ = learner.last_fit["lower_bound"]

    @property
    def n_seen_(self) -> int:
        """Observations passed to ``partial_fit`` since the last ``fit``."""
        return self._fitted_learner("n_seen_").n_seen

    @property
    def n_updates_(self) -> int:
        """Online mini-batch updates since the statistics were last set by a fit."""
        return self._fitted_learner("n_updates_").n_updates

    @property
    def n_gated_(self) -> int:
        """Points scored but not learned because of ``outlier_gate``."""
        return self._fitted_learner("n_gated_").n_gated

    @property
    def recent_counts_(self) -> np.ndarray:
        """Responsibility of recent points per component (weights ``exp(-age / 1000)``)."""
        return self._fitted_learner("recent_counts_").recent_counts

    def _fitted_learner(self, name: str) -> OnlineLearner:
        learner = self.__dict__.get("_online")
        if learner is None or not self._is_fitted():
            raise AttributeError(f"'GaussianMixture' object has no attribute {name!r}")
        return learner

    # ------------------------------------------------------------------ batch EM
    def fit(self, X, y=None) -> "GaussianMixture":
        """Fit by batch EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), n_samples >= n_components
            Or a dask array or data frame: EM then runs on its blocks where they live
            (:mod:`emstream.distributed`).
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        continuing = self.warm_start and self._is_fitted()
        if continuing:
            self._check_settings_unchanged("a warm-started fit")
        checks = dict(n_features=self.n_features_in_ if continuing else None,
                      min_samples=self.n_components,
                      why_min=f" (n_components={self.n_components}); pass more samples or "
                              "ask for fewer components")
        self._check_feature_names(X, reset=not continuing)
        X = _batch_rows(X, checks)
        self._fit_batch(X, continuing)
        return self

    def _floor_for(self, X) -> np.ndarray | None:
        """The resolution floor of ``X`` (from rows spread over it, numpy or dask alike)."""
        if self.variance_floor != "resolution":
            return None
        rows = X.spread_rows(RESOLUTION_ROWS) if isinstance(X, distributed.DaskRows) else X
        return variance_floor(grid_step(rows))

    def _fit_batch(self, X, continuing: bool) -> None:
        rng = self._rng()
        floor = self._floor_for(X)
        if continuing:
            learner = self._learner()
            bound = self.lower_bound_ if not learner.moved_online else -np.inf
            starts = [(lambda: self._params, bound)]
        else:
            starts = [(lambda: self._initial_params(X, rng, floor), -np.inf)] * self.n_init
        best, trace = self._best_batch_run(X, starts, floor)
        if not best.converged and self.max_iter > 0:  # max_iter=0 asks for the start itself
            warnings.warn(sklearn_compatible(ConvergenceWarning)(
                f"Batch EM did not converge within max_iter={self.max_iter} iterations "
                f"(tol={self.tol}); raise max_iter or tol"), stacklevel=3)
        self.converged_ = best.converged
        self.n_iter_ = best.n_iter
        self.lower_bound_ = best.lower_bound
        self.lower_bounds_ = trace
        self.n_features_in_ = best.params.n_features
        learner = self._learner()
        rows = X.spread_rows(RESOLUTION_ROWS) if isinstance(X, distributed.DaskRows) else X
        learner.reset_after_batch_fit(best.params, best.stats, X.shape[0], rows)
        self._set_params(learner.params)

    def _best_batch_run(self, X, starts, floor):
        """Batch EM on ``X`` from each ``(make_start, lower_bound)``; the best run and its trace."""

        def expectation(params):
            if isinstance(X, distributed.DaskRows):
                return X.e_step(params)
            return em.e_step(X, params)

        def reseed(stats, est):
            return reseed_dead_components(stats, est.worst_point, n_points=est.n_samples)

        trace = []

        def progress(n_iter, lower_bound):
            trace.append(lower_bound)
            if self.verbose and n_iter % self.verbose_interval == 0:
                logger.info("EM iteration %d: average log-likelihood %.8g", n_iter, lower_bound)

        best = best_trace = None
        with single_thread_blas(X.shape[0]):
            for make_start, lower_bound in starts:
                if self.max_iter == 0:
                    result = self._unfitted_run(expectation, make_start())
                else:
                    result = em.run_em(expectation, make_start(), reg_covar=self.reg_covar,
                                       tol=self.tol, max_iter=self.max_iter,
                                       lower_bound=lower_bound, reseed=reseed,
                                       on_iteration=progress, floor=floor)
                if best is None or result.lower_bound > best.lower_bound:
                    best, best_trace = result, list(trace)
                trace.clear()
        return best, best_trace

    @staticmethod
    def _unfitted_run(expectation, start: MixtureParams) -> em.EMResult:
        """``max_iter=0``: the starting parameters themselves, as scikit-learn publishes them
        (``n_iter_=0``, ``lower_bound_=-inf``).  One E-step gives online EM the statistics to
        continue from.  Of several such starts (``n_init``), the first is kept."""
        stats = expectation(start).stats
        return em.EMResult(start, stats, -np.inf, 0, False, 0)

    def _require_iterations(self, action: str) -> None:
        if self.max_iter == 0:
            raise ValueError(f"{action} fits the data by EM, which max_iter=0 forbids; set "
                             "max_iter >= 1 (max_iter=0 is for fit(X) returning its start)")

    def refit(self, X) -> "GaussianMixture":
        """Refit on recent rows, keeping component labels; online EM goes on from there.

        Candidates are fitted on ``X`` by EM (:func:`emstream.refit.search`): from the current
        parameters and from fresh ``init_params`` starts, with far rows that do not recur left
        out and no component left on fewer than a handful of points; the best replaces the
        model only if it explains ``X`` better than the model does, by more than EM's
        overfitting margin, so a refit cannot make the model worse on recent data.  Each new
        component takes the label of the old component it matches (Hungarian assignment on the
        Bhattacharyya distance).  The step-size schedule restarts from ``len(X)`` points and
        the Polyak average, if any, restarts from the refit; ``n_seen_`` keeps counting.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), n_samples >= n_components
            In arrival order.  Or a dask array or data frame: batch EM then runs on the
            cluster from the current parameters and from a fresh start, the better kept.

        Returns
        -------
        self
        """
        self._validate_params()
        self._require_iterations("refit")
        self._check_fitted()
        self._check_settings_unchanged("refit")
        # A frame's names are checked (swapped columns were refitted as they came); arrays, as
        # a drift monitor's collected rows, have none to check and are not warned about.
        if feature_names(X) is not None:
            self._check_feature_names(X, reset=False)
        checks = dict(n_features=self.n_features_in_, min_samples=self.n_components,
                      why_min=f" (n_components={self.n_components})")
        X = _batch_rows(X, checks)
        learner = self._learner()
        if isinstance(X, distributed.DaskRows):
            self._refit_on_cluster(X, learner)
        else:
            with single_thread_blas(X.shape[0]):
                self.last_refit_ = learner.refit(X)
        self._publish(learner)
        return self

    def _refit_on_cluster(self, X, learner: OnlineLearner) -> None:
        """Batch EM over a dask collection from the current state and a fresh start."""
        rng = self._rng()
        floor = learner.floor()

        def fresh():
            return self._initial_params(X, rng, floor)

        starts = [(lambda: learner.iterate, -np.inf), (fresh, -np.inf)]
        best, trace = self._best_batch_run(X, starts, floor)
        before = learner.iterate
        learner.start_from(best.params, best.stats, X.shape[0])
        from .online import _matching

        order = _matching(before, learner.iterate)
        if order is not None:
            learner.permute(order)
        self.n_iter_, self.lower_bound_, self.lower_bounds_ = (best.n_iter, best.lower_bound,
                                                               trace)
        self.last_refit_ = {"replaced": True, "candidate": "cluster",
                            "log_likelihood_after": best.lower_bound,
                            "iterations": best.n_iter}

    def _initial_params(self, X, rng: np.random.Generator, floor=None) -> MixtureParams:
        weights, means, prec_chol = self._checked_inits(X.shape[1])
        kind = self.covariance_type
        if weights is None or means is None or prec_chol is None:
            rows = X.sample_rows(rng) if isinstance(X, distributed.DaskRows) else X
            stats = initial_stats(rows, self.n_components, kind, self.init_params, rng)
            base = em.m_step(stats, reg_covar=self.reg_covar, floor=floor)
        else:
            base = None
        if prec_chol is not None:
            covariances = covariances_from_precision_cholesky(prec_chol, kind)
        else:
            covariances, prec_chol = base.covariances, base.precisions_cholesky
        return MixtureParams(base.weights if weights is None else weights,
                             base.means if means is None else means, covariances, prec_chol,
                             kind)

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit by batch EM, then label ``X``; equals ``fit(X).predict(X)``.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.fit(X).predict(X)

    # ------------------------------------------------------------------ online EM
    def partial_fit(self, X, y=None) -> "GaussianMixture":
        """Learn one mini-batch by online EM (see ``warmup_size`` for the first points).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), any n_samples >= 1
        y : ignored

        Returns
        -------
        self
        """
        self.partial_fit_scored(X)
        return self

    def partial_fit_scored(self, X, *, with_resp: bool = False):
        """Score ``X`` under the current model, then learn it (one E-step serves both).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        with_resp : bool
            Also return the responsibilities ``p(k | x)``.

        Returns
        -------
        emstream.em.ScoredStep or None
            ``log_prob`` (n_samples,), ``gated`` (n_samples,) and ``resp`` (n_samples, K) of
            the model *before* this update; ``None`` while there is no model yet (the first
            ``2 (D + 1)`` rows per component, at most ten with many features).

        Examples
        --------
        >>> import numpy as np
        >>> gm = GaussianMixture(1).fit(np.random.default_rng(0).normal(size=(500, 1)))
        >>> step = gm.partial_fit_scored(np.array([[0.1], [1e4]]))
        >>> step.gated.tolist(), gm.n_gated_
        ([False, True], 1)
        """
        self._validate_params()
        return self._partial_fit_checked(self._check_X(X, learning=True), with_resp)

    def _partial_fit_checked(self, X: np.ndarray, with_resp: bool = False):
        """:meth:`partial_fit_scored` for rows ``check_array`` already passed (the monitor
        checks them first; a second check would cost a pass over the data per batch)."""
        self._validate_params()
        self._require_iterations("partial_fit")
        if self.warmup_size < self.n_components:
            raise ValueError(f"warmup_size ({self.warmup_size}) must be at least n_components "
                             f"({self.n_components}) to initialise the components")
        self._check_settings_unchanged("partial_fit")
        learner = self._learner()
        if learner.initial is not None:
            try:  # (now, not at the first provisional fit; and after set_params too)
                self._checked_inits(X.shape[1])
            except ValueError as exc:
                raise InitialValuesError(str(exc)) from None
        with single_thread_blas(X.shape[0]):
            scored = learner.learn(X, with_resp)
        self._publish(learner)
        return scored

    def _gate(self) -> float | None:
        """The squared Mahalanobis distance beyond which points are not learned."""
        return self._learner().gate()

    def _memory(self) -> float:
        return self._learner().memory()

    # ------------------------------------------------------------------ inference
    def score_samples(self, X) -> np.ndarray:
        """Log-density ``log p(x)`` of each sample, shape (n_samples,)."""
        self._check_fitted()
        return em.score_samples(self._check_X(X), self._params)

    def score(self, X, y=None) -> float:
        """Average log-likelihood of ``X``."""
        return float(self.score_samples(X).mean())

    def predict(self, X) -> np.ndarray:
        """Most probable component of each sample, shape (n_samples,)."""
        self._check_fitted()
        return em.predict(self._check_X(X), self._params)

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component, shape (n_samples, n_components)."""
        self._check_fitted()
        return em.predict_proba(self._check_X(X), self._params)

    def permute_components(self, order) -> "GaussianMixture":
        """Relabel components: new component ``i`` is old component ``order[i]``.

        Parameters, running statistics and counters move together, so nothing but the labels
        changes (used to keep labels stable across refits).
        """
        self._check_fitted()
        order = np.asarray(order)
        # Integers only: [True, False] sorts as [0, 1] but indexes as a mask (it dropped a
        # component, silently), and floats do not index at all.
        if (order.dtype.kind not in "iu" or order.ndim != 1
                or sorted(order.tolist()) != list(range(self._params.n_components))):
            raise ValueError(f"order must be a permutation of the integers 0.."
                             f"{self._params.n_components - 1}, got {order.tolist()!r}")
        learner = self._learner()
        learner.permute(order)
        self._set_params(learner.params)
        return self

    def posterior(self, X):
        """Log-density and component probabilities of each sample, in one pass.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            ``score_samples(X)``.
        resp : ndarray of shape (n_samples, n_components)
            ``predict_proba(X)``.
        """
        self._check_fitted()
        return em.posterior(self._check_X(X), self._params)

    def _n_parameters(self) -> int:
        k, d = self.means_.shape
        cov = {"full": k * d * (d + 1) / 2, "diag": k * d, "tied": d * (d + 1) / 2,
               "spherical": k}[self._params.covariance_type]
        return int(cov + k * d + k - 1)

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        total = self._total_log_likelihood(X)
        return -2 * total[0] + self._n_parameters() * np.log(total[1])

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        return -2 * self._total_log_likelihood(X)[0] + 2 * self._n_parameters()

    def _total_log_likelihood(self, X) -> tuple[float, int]:
        """``Σ log p(x)`` over ``X``, and its rows.  (X is checked once: checked, then scored,
        a data frame's names were checked again on the bare array, and the fitted frame
        warned that it had none.)"""
        log_prob = self.score_samples(X)
        return float(log_prob.sum()), log_prob.shape[0]

    def sample(self, n_samples: int = 1):
        """Draw samples from the fitted mixture.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component of each sample.
        """
        self._check_fitted()
        check_int(n_samples, "n_samples", 1)
        rng = self._rng()
        counts = rng.multinomial(n_samples, self.weights_ / self.weights_.sum())
        kind, d = self._params.covariance_type, self.means_.shape[1]
        parts = []
        for k, (mean, count) in enumerate(zip(self.means_, counts)):
            if kind == "full":
                cov = self.covariances_[k]
            elif kind == "tied":
                cov = self.covariances_
            elif kind == "diag":
                cov = np.diag(self.covariances_[k])
            else:
                cov = self.covariances_[k] * np.eye(d)
            parts.append(rng.multivariate_normal(mean, cov, int(count), method="cholesky"))
        X = np.vstack(parts)
        y = np.repeat(np.arange(self._params.n_components), counts)
        return X, y
