"""A GaussianMixture's complete state as plain JSON-compatible data, and back.

Everything needed to resume exactly is kept: hyper-parameters, the last batch fit's outcome, and
the online learner's state (parameters, running statistics, step-size position, counters, the
warm-up buffer, the window of recent rows, the far rows and the upkeep schedule).  Floats are
Python floats (JSON round-trips them exactly), arrays are nested lists.  :func:`from_dict`
validates every field (type, shape, finiteness, range, positive definiteness), so a damaged or
crafted state is refused with a ``ValueError`` naming the field, never half-loaded.  States
written by schema 1 (before the learner had a window and an upkeep) still load.

Example
-------
>>> import numpy as np
>>> from emstream import GaussianMixture
>>> from emstream.state import to_dict, from_dict
>>> X = np.random.default_rng(0).normal(size=(200, 1))
>>> gm = GaussianMixture(2, random_state=0).fit(X)
>>> twin = from_dict(to_dict(gm))
>>> bool(np.array_equal(twin.means_, gm.means_))
True
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .gaussian import MixtureParams
from .mixture import SEED_LIMIT, GaussianMixture
from .online import FAR_MEMORY, Upkeep, buffer_prior
from .stats import SufficientStats, scatter_shape
from .validation import MAX_ABS_VALUE

SCHEMA = "emstream.GaussianMixture/2"
OLD_SCHEMAS = ("emstream.GaussianMixture/1",)
_ARRAY_PARAMS = ("weights_init", "means_init", "precisions_init")
# Parameters added after schema 1 was first written, with the behaviour older states had.
_ADDED_PARAMS = {"outlier_gate": None, "averaging": False, "variance_floor": None}
# Largest count a state may hold (points, iterations, updates): far beyond any real stream.
_MAX_COUNT = 2**62
# Largest magnitude of a stored value: the parser's and check_array's bound.
_MAX_VALUE = MAX_ABS_VALUE
# Largest second moment (covariance, scatter): values within ±MAX_ABS_VALUE vary by up to
# (2 * MAX_ABS_VALUE)**2 = 4e200; the rest is room for reg_covar.  Learning from such values
# keeps every second moment below it (they are averages), so what loads can be saved and loaded.
_MAX_SECOND = 10 * MAX_ABS_VALUE**2
# Most events kept in the upkeep's record.
_MAX_EVENTS = 20


def _encode_random_state(value):
    if value is None or isinstance(value, (int, np.integer)):
        return None if value is None else int(value)
    if isinstance(value, np.random.Generator):
        return {"generator": value.bit_generator.state}
    if isinstance(value, np.random.RandomState):
        name, keys, pos, has_gauss, gauss = value.get_state()
        return {"legacy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]}
    raise ValueError(f"random_state {value!r} cannot be saved")


def _decode_random_state(value):
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        if value is not None and not 0 <= value < SEED_LIMIT:
            raise ValueError("random_state must be a non-negative integer below 2**128")
        return value
    try:
        if isinstance(value, dict) and "generator" in value:
            state = value["generator"]
            name = state.get("bit_generator") if isinstance(state, dict) else None
            if name not in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"):
                raise ValueError(f"unknown bit generator {name!r}")
            bit_generator = getattr(np.random, name)()
            bit_generator.state = state
            return np.random.Generator(bit_generator)
        if isinstance(value, dict) and "legacy" in value:
            name, keys, pos, has_gauss, gauss = value["legacy"]
            rs = np.random.RandomState()
            rs.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
            return rs
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"random_state: cannot read it ({exc})") from None
    raise ValueError(f"random_state: cannot read {str(value)[:80]!r}")


def _list(array) -> list | None:
    return None if array is None else np.asarray(array, dtype=float).tolist()


def _params_dict(p: MixtureParams) -> dict:
    return {"weights": p.weights.tolist(), "means": p.means.tolist(),
            "covariances": p.covariances.tolist()}


def to_dict(model: GaussianMixture) -> dict:
    """The model's state as JSON-compatible data (see :data:`SCHEMA`)."""
    # numpy numbers as settings (n_components=np.int64(2), fit accepts them) as JSON's own
    params = {name: value.item() if isinstance(value, np.generic) else value
              for name, value in model.get_params().items()}
    if isinstance(params["max_iter"], int) and params["max_iter"] < 1:
        raise ValueError(_NO_EM)
    # set_params(n_components=...) after a fit: the fitted arrays no longer match the settings,
    # and the state written would not load.
    model._check_settings_unchanged("saving")
    # What loading would refuse is refused here (set_params after a fit, which partial_fit
    # and a warm fit need not look at, wrote checkpoints that did not load).
    model._validate_params()
    if model.warmup_size < model.n_components:
        raise ValueError("warmup_size must be at least n_components")
    learner = model.__dict__.get("_online")
    _check_inits(model, None if learner is None else learner.n_features)
    for name in _ARRAY_PARAMS:
        params[name] = _list(params[name])
    params["random_state"] = _encode_random_state(params["random_state"])
    out = {"schema": SCHEMA, "params": params, "batch": None, "online": None}
    names = model.__dict__.get("feature_names_in_")
    if names is not None:  # (the key is absent otherwise: states without it load as before)
        out["feature_names_in"] = [str(name) for name in names]
    if hasattr(model, "n_iter_") and model._is_fitted():
        bound = float(model.lower_bound_)
        out["batch"] = {"converged": bool(model.converged_), "n_iter": int(model.n_iter_),
                        # -inf (a point no component could explain) has no JSON form: null.
                        "lower_bound": bound if math.isfinite(bound) else None}
    learner = model.__dict__.get("_online")
    if learner is None or learner.n_features is None:
        return out
    online = {"n_features": int(learner.n_features), "n_seen": int(learner.n_seen),
              "n_updates": int(learner.n_updates), "n_gated": int(learner.n_gated),
              "t": float(learner.t), "moved_online": bool(learner.moved_online),
              "step": _list(learner.step), "model": None, "warmup": None,
              "window": {"rows": learner.window.recent().tolist(),
                         "times": learner.window_times.recent().tolist()},
              "far": {"rows": learner.far.recent().tolist(),
                      "times": learner.far_times.recent().tolist()},
              "upkeep": _upkeep_dict(learner.upkeep), "last_fit": _last_fit_dict(learner.last_fit)}
    if learner.buffer:
        online["warmup"] = {"rows": np.concatenate(learner.buffer).tolist(),
                            "provisional_rows": int(learner.provisional_rows)}
    if learner.fitted:
        p, s = learner.params, learner.stats
        online["model"] = {
            **_params_dict(p), "precisions_cholesky": p.precisions_cholesky.tolist(),
            "stats": {"counts": s.counts.tolist(), "means": s.means.tolist(),
                      "scatter": s.scatter.tolist()},
            "recent_counts": learner.recent_counts.tolist(),
            "iterate": None if learner.iterate is p else _params_dict(learner.iterate),
            "average": None}
        if learner.average is not None:
            total, weights, means, covs = learner.average
            online["model"]["average"] = {"points": float(total), "weights": weights.tolist(),
                                          "means": means.tolist(), "covariances": covs.tolist()}
    out["online"] = online
    return out


def _last_fit_dict(last: dict | None) -> dict | None:
    if last is None:
        return None
    bound = float(last["lower_bound"])
    return {**last, "lower_bound": bound if math.isfinite(bound) else None}


def _upkeep_dict(up: Upkeep) -> dict:
    return {"next_check": None if math.isinf(up.next_check) else float(up.next_check),
            "quiet_until": float(up.quiet_until), "pause": float(up.pause),
            "far_since": int(up.far_since), "checks": int(up.checks),
            "replaced": int(up.replaced), "idle": int(up.idle), "events": list(up.events)}


# ---------------------------------------------------------------------------- validation
def _array(data, name: str, shape: tuple | None = None, ndim: int | None = None,
           max_len: int | None = None, bound: float = _MAX_VALUE) -> np.ndarray:
    """``data`` as a finite float array within ±``bound``, of ``shape`` or ``ndim``.

    The outer length is checked before anything is converted (against ``max_len`` and the
    first axis of ``shape``), so a crafted list of millions of entries is refused without
    building an array of it.
    """
    if not isinstance(data, (list, tuple, np.ndarray)):
        raise ValueError(f"{name} is not an array of numbers")
    if shape and len(data) > shape[0]:
        raise ValueError(f"{name} has {len(data)} entries, expected shape {shape}")
    if max_len is not None and len(data) > max_len:
        raise ValueError(f"{name} has {len(data)} entries, more than the {max_len} it may hold")
    try:
        arr = np.array(data, dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} is not an array of numbers") from None
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinity")
    if arr.size and np.abs(arr).max() > bound:
        raise ValueError(f"{name} holds values beyond ±{bound:g}")
    return arr


def _close(a: np.ndarray, b: np.ndarray, *, rtol: float, atol: float) -> bool:
    """``np.allclose`` for finite arrays, without its overhead (a load makes dozens of these)."""
    return bool((np.abs(a - b) <= atol + rtol * np.abs(b)).all())


def _factors_close(a: np.ndarray, b: np.ndarray, kind: str, *, rtol: float) -> bool:
    """Whether precision factors agree to ``rtol`` of each component's largest entry.  (Element
    by element, the rounding of a factor of a covariance conditioned at 1e7 (300 features
    fitted on 150 rows) made its small entries differ by 1e-4 of themselves, and a model that
    ``emstream fit`` had just saved could not be loaded.)"""
    if kind == "tied":
        scale = np.abs(b).max()
    else:
        scale = np.abs(b).reshape(b.shape[0], -1).max(axis=1).reshape((-1,) + (1,) * (b.ndim - 1))
    return bool((np.abs(a - b) <= rtol * scale).all())


def _number(data, name: str, kind=numbers.Real, low=None, high=None):
    if isinstance(data, bool) or not isinstance(data, kind):
        raise ValueError(f"{name} must be a number, got {str(data)[:40]!r}")
    try:
        finite = math.isfinite(data)
    except OverflowError:
        finite = False
    if not finite:
        raise ValueError(f"{name} must be finite")
    if (low is not None and data < low) or (high is not None and data > high):
        raise ValueError(f"{name} must lie in [{low}, {high}], got {data!r}")
    return data


def _bool(data, name: str) -> bool:
    if not isinstance(data, bool):
        raise ValueError(f"{name} must be true or false, got {str(data)[:40]!r}")
    return data


def _count(data, name: str) -> int:
    return int(_number(data, name, numbers.Integral, 0, _MAX_COUNT))


def _object(data, name: str) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{name} must be an object")
    return data


def _positive_definite(covs: np.ndarray, kind: str, name: str) -> None:
    if kind in ("full", "tied"):
        stack = covs if kind == "full" else covs[None]
        if not _close(stack, np.swapaxes(stack, 1, 2), rtol=1e-12, atol=0):
            raise ValueError(f"{name} are not symmetric")
        try:
            np.linalg.cholesky(stack)
        except np.linalg.LinAlgError:
            raise ValueError(f"{name} are not positive definite") from None
    elif np.any(covs <= 0):
        raise ValueError(f"{name}: variances must be positive")


def _weights(data, name: str, k: int) -> np.ndarray:
    weights = _array(data, name, (k,))
    if weights.min() < 0 or not abs(float(weights.sum()) - 1.0) <= 1e-9:
        raise ValueError(f"{name} must be non-negative and sum to 1")
    return weights


def _mixture(data, name: str, k: int, d: int, kind: str) -> MixtureParams:
    """Weights, means and covariances (factors recomputed) from a stored object."""
    data = _object(data, name)
    weights = _weights(data.get("weights"), f"{name}.weights", k)
    means = _array(data.get("means"), f"{name}.means", (k, d))
    covs = _array(data.get("covariances"), f"{name}.covariances", scatter_shape(kind, k, d),
                  bound=_MAX_SECOND)
    _positive_definite(covs, kind, f"{name}.covariances")
    return MixtureParams.from_covariances(weights, means, covs, kind)


def _rows(data, name: str, d: int, limit: int):
    """Rows of ``d`` numbers (at most ``limit``) and one time per row, from a stored object."""
    data = _object(data, name)
    rows = _array(data.get("rows"), f"{name}.rows", max_len=limit)
    times = _array(data.get("times"), f"{name}.times", ndim=1, max_len=limit)
    if rows.shape == (0,):
        rows = rows.reshape(0, d)
    if rows.ndim != 2 or rows.shape[1] != d or rows.shape[0] != times.shape[0]:
        raise ValueError(f"{name}: rows must have shape (n, {d}) with one time per row")
    return rows, times


def from_dict(data: dict) -> GaussianMixture:
    """A model from :func:`to_dict`'s output; ``ValueError`` naming the field if anything is off."""
    if not isinstance(data, dict) or data.get("schema") not in (SCHEMA, *OLD_SCHEMAS):
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"not a {SCHEMA} state (schema: {str(found)[:80]!r})")
    if data["schema"] != SCHEMA:
        data = _upgrade(data)
    model = _model_from_params(data.get("params"))
    kind, k = model.covariance_type, model.n_components
    names = data.get("feature_names_in")
    if names is not None:
        if not isinstance(names, list) or not names or not all(
                isinstance(name, str) and len(name) <= 10_000 for name in names):
            raise ValueError("feature_names_in must be a non-empty list of strings")
        model.feature_names_in_ = np.asarray(names, dtype=object)
    batch, online = data.get("batch"), data.get("online")
    if batch is not None:
        batch = _object(batch, "batch")
        model.converged_ = _bool(batch.get("converged"), "batch.converged")
        model.n_iter_ = _count(batch.get("n_iter"), "batch.n_iter")
        bound = batch.get("lower_bound")
        model.lower_bound_ = -np.inf if bound is None else float(
            _number(bound, "batch.lower_bound"))
        model.lower_bounds_ = []
    if online is None:
        if batch is not None:
            raise ValueError("a state with a batch fit must hold the online learner")
        _check_inits(model, None)
        return model
    online = _object(online, "online")
    d = _count(online.get("n_features"), "online.n_features")
    if not 1 <= d <= 100_000:
        raise ValueError("online.n_features must be between 1 and 100,000")
    _check_inits(model, d)
    learner = model._learner()
    learner.n_features = d
    learner.n_seen = _count(online.get("n_seen"), "online.n_seen")
    learner.n_updates = _count(online.get("n_updates"), "online.n_updates")
    learner.n_gated = _count(online.get("n_gated"), "online.n_gated")
    learner.t = float(_number(online.get("t"), "online.t", low=0, high=_MAX_COUNT))
    learner.moved_online = _bool(online.get("moved_online"), "online.moved_online")
    step = online.get("step")
    # (a gap between two values within ±1e100: up to twice that)
    learner.step = None if step is None else _array(step, "online.step", (d,),
                                                     bound=2 * _MAX_VALUE)
    if learner.step is not None and learner.step.min() < 0:
        raise ValueError("online.step must be non-negative")
    warmup = online.get("warmup")
    if warmup is not None:
        warmup = _object(warmup, "online.warmup")
        rows = _array(warmup.get("rows"), "online.warmup.rows", ndim=2,
                      max_len=model.warmup_size - 1)
        if rows.shape[1] != d or not 1 <= rows.shape[0] < model.warmup_size:
            raise ValueError(f"online.warmup.rows must have shape (n, {d}) with 1 <= n < "
                             f"warmup_size")
        learner.buffer = [rows]
        learner.provisional_rows = _count(warmup.get("provisional_rows", 0),
                                          "online.warmup.provisional_rows")
        if learner.provisional_rows > rows.shape[0]:
            raise ValueError("online.warmup.provisional_rows exceeds the rows buffered")
        # The warm-up's prior comes from the rows of the last provisional fit: the first ones.
        learner._buffer_prior = buffer_prior(rows[:learner.provisional_rows or None])
    stored = online.get("model")
    if names is not None and len(names) != d:
        raise ValueError(f"feature_names_in names {len(names)} features, the model has {d}")
    if stored is not None:
        _restore_model(learner, _object(stored, "online.model"), k, d, kind)
        model._set_params(learner.params)
        model.n_features_in_ = d
    elif warmup is None and (batch is not None or learner.n_seen):
        raise ValueError("online: a learner that has seen points holds a model or a warm-up")
    window = online.get("window", {"rows": [], "times": []})
    rows, times = _rows(window, "online.window", d, learner.settings.window_rows)
    if len(rows):  # an empty ring allocates nothing: a crafted header cannot make it reserve
        learner.window.extend(rows)
        learner.window_times.extend(times)
    far = online.get("far", {"rows": [], "times": []})
    rows, times = _rows(far, "online.far", d, FAR_MEMORY)
    if len(rows):
        learner.far.extend(rows)
        learner.far_times.extend(times)
    learner.upkeep = _upkeep(online.get("upkeep"))
    last = online.get("last_fit")
    if last is not None:
        last = _object(last, "online.last_fit")
        bound = last.get("lower_bound")
        learner.last_fit = {"n_iter": _count(last.get("n_iter"), "online.last_fit.n_iter"),
                            "converged": _bool(last.get("converged"),
                                               "online.last_fit.converged"),
                            "lower_bound": -math.inf if bound is None else float(
                                _number(bound, "online.last_fit.lower_bound"))}
        model._last_fit = learner.last_fit
    return model


# A saved model is one that learns on (the daemon's next step is a mini-batch).
_NO_EM = ("params.max_iter must be at least 1 in a saved model: it resumes learning, which "
          "max_iter=0 (fit(X) returning its start) forbids")


def _model_from_params(params) -> GaussianMixture:
    if isinstance(params, dict):  # states saved before these parameters existed
        params = {**_ADDED_PARAMS, **params}
    if not isinstance(params, dict) or set(params) != set(GaussianMixture._param_names()):
        raise ValueError("params must hold exactly GaussianMixture's parameters")
    params = dict(params)
    for name in _ARRAY_PARAMS:
        if params[name] is not None:
            # (precisions: no bound but finiteness, as the fitted ones: data on a scale of
            # 1e-60 have precisions of 1e120, which a fit accepts)
            params[name] = _array(params[name], name,
                                  bound=math.inf if name == "precisions_init" else MAX_ABS_VALUE)
    params["random_state"] = _decode_random_state(params["random_state"])
    model = GaussianMixture(**params)
    try:  # (the estimator's own bounds: what a fit accepts, a checkpoint of it may hold)
        model._validate_params()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params: {exc}") from None
    if model.warmup_size < model.n_components:
        raise ValueError("params.warmup_size must be at least params.n_components")
    if model.max_iter < 1:
        raise ValueError(_NO_EM)
    return model


def _check_inits(model: GaussianMixture, d: int | None) -> None:
    """``weights_init``/``means_init``/``precisions_init`` must fit K (and D, when known)."""
    if d is None:  # no learner: D is what the initial means or precisions say, if anything
        for name in ("means_init", "precisions_init"):
            value = getattr(model, name)
            if value is not None and value.ndim >= 2 and (
                    name == "means_init" or model.covariance_type != "spherical"):
                d = value.shape[-1]
                break
    if d is not None and not 1 <= d <= 100_000:
        raise ValueError("params: the initial values must have between 1 and 100,000 features")
    try:
        model._checked_inits(1 if d is None else d)
    except ValueError as exc:
        raise ValueError(f"params: {exc}") from None


def _restore_model(learner, stored: dict, k: int, d: int, kind: str) -> None:
    shape = scatter_shape(kind, k, d)
    weights = _weights(stored.get("weights"), "online.model.weights", k)
    means = _array(stored.get("means"), "online.model.means", (k, d))
    covariances = _array(stored.get("covariances"), "online.model.covariances", shape,
                         bound=_MAX_SECOND)
    _positive_definite(covariances, kind, "online.model.covariances")
    # (No bound but finiteness: 1/σ of data on a tiny scale is huge, and the factors must
    # match the ones recomputed from the bounded covariances anyway.)
    prec_chol = _array(stored.get("precisions_cholesky"), "online.model.precisions_cholesky",
                       shape, bound=math.inf)
    check = MixtureParams.from_covariances(weights, means, covariances, kind)
    if not _factors_close(check.precisions_cholesky, prec_chol, kind, rtol=1e-6):
        raise ValueError("online.model.precisions_cholesky does not match its covariances")
    stats = _object(stored.get("stats"), "online.model.stats")
    counts = _array(stats.get("counts"), "online.model.stats.counts", (k,))
    scatter = _array(stats.get("scatter"), "online.model.stats.scatter", shape,
                     bound=_MAX_SECOND)
    if counts.min() < 0 or counts.sum() > 1.0 + 1e-9:
        raise ValueError("online.model.stats.counts must be non-negative per-point averages")
    stat_means = _array(stats.get("means"), "online.model.stats.means", (k, d))
    # Rounding leaves a scatter of repeated values a hair below zero, relative to the
    # squares it was taken from (7.0 thirty times: -9e-47): not a forged one.
    _check_scatter(scatter, kind, level=float(counts.max(initial=0.0)
                                              * np.square(stat_means).max(initial=0.0)))
    learner.stats = SufficientStats(counts, stat_means,
                                    scatter, kind)
    learner.params = MixtureParams(weights, means, covariances, prec_chol, kind)
    learner.iterate = learner.params
    if stored.get("iterate") is not None:
        learner.iterate = _mixture(stored["iterate"], "online.model.iterate", k, d, kind)
    _check_iterate(learner.iterate, learner.stats,
                   "online.model.iterate" if stored.get("iterate") is not None
                   else "online.model")
    learner.average = None
    if stored.get("average") is not None:
        avg = _object(stored["average"], "online.model.average")
        mix = _mixture(avg, "online.model.average", k, d, kind)
        learner.average = (float(_number(avg.get("points"), "online.model.average.points",
                                         low=0, high=_MAX_COUNT)),
                           mix.weights, mix.means, mix.covariances)
    learner.recent_counts = _array(stored.get("recent_counts"), "online.model.recent_counts",
                                   (k,))
    if learner.recent_counts.min() < 0:
        raise ValueError("online.model.recent_counts must be non-negative")


def _check_iterate(iterate: MixtureParams, stats: SufficientStats, name: str) -> None:
    """The iterate is the M-step of the statistics: the same means, weights their counts'
    shares.  (Statistics far from the model they belong to would be learned from as if the
    points had been there: a forged state's next step would leave it non-finite.)"""
    if not _close(iterate.means, stats.means, rtol=1e-9, atol=0):
        raise ValueError(f"online.model.stats.means do not match {name}.means")
    total = stats.counts.sum()
    shares = stats.counts / total if total > 0 else np.full(len(stats.counts),
                                                             1.0 / len(stats.counts))
    if not _close(iterate.weights, shares, rtol=1e-9, atol=1e-12):
        raise ValueError(f"online.model.stats.counts do not match {name}.weights")


def _check_scatter(scatter: np.ndarray, kind: str, level: float = 0.0) -> None:
    """A scatter must be symmetric positive semi-definite (non-negative for diag/spherical),
    up to rounding relative to its own size or ``level`` (the size of the squares it came
    from)."""
    tolerance = 1e-9 * max(float(np.abs(scatter).max(initial=0.0)), level, 1e-300)
    if kind in ("diag", "spherical"):
        if scatter.min(initial=0.0) < -tolerance:
            raise ValueError("online.model.stats.scatter must be non-negative")
        return
    stack = scatter if kind == "full" else scatter[None]
    if not _close(stack, np.swapaxes(stack, 1, 2), rtol=1e-9, atol=1e-300):
        raise ValueError("online.model.stats.scatter is not symmetric")
    if np.linalg.eigvalsh(stack).min(initial=0.0) < -tolerance:
        raise ValueError("online.model.stats.scatter is not positive semi-definite")


def _upkeep(data) -> Upkeep:
    if data is None:
        return Upkeep()
    data = _object(data, "online.upkeep")
    nxt = data.get("next_check")
    events = data.get("events", [])
    if not isinstance(events, list) or len(events) > _MAX_EVENTS or not all(
            isinstance(e, dict) for e in events):
        raise ValueError(f"online.upkeep.events must be a list of at most {_MAX_EVENTS} objects")
    return Upkeep(
        next_check=np.inf if nxt is None else float(_number(nxt, "online.upkeep.next_check",
                                                            low=0)),
        quiet_until=float(_number(data.get("quiet_until", 0.0), "online.upkeep.quiet_until",
                                  low=0)),
        pause=float(_number(data.get("pause", 0.0), "online.upkeep.pause", low=0)),
        far_since=_count(data.get("far_since", 0), "online.upkeep.far_since"),
        checks=_count(data.get("checks", 0), "online.upkeep.checks"),
        replaced=_count(data.get("replaced", 0), "online.upkeep.replaced"),
        idle=_count(data.get("idle", 0), "online.upkeep.idle"),
        events=events)


def _upgrade(old: dict) -> dict:
    """A schema-1 state in schema 2's shape (no window, no far rows, upkeep from scratch)."""
    params = old.get("params")
    fitted, warmup = old.get("fitted"), old.get("warmup")
    out = {"schema": SCHEMA, "params": params, "batch": None, "online": None}
    if fitted is not None and warmup is not None:
        raise ValueError("a state cannot be both warming up and fitted")
    if warmup is not None:
        warmup = _object(warmup, "warmup")
        rows = warmup.get("rows")
        if not isinstance(rows, list) or not rows:
            raise ValueError("warmup.rows must be a non-empty (n, n_features) array")
        out["online"] = {"n_features": warmup.get("n_features"), "n_seen": len(rows),
                         "n_updates": 0, "n_gated": 0, "t": 0.0, "moved_online": False,
                         "step": None, "model": None,
                         "warmup": {"rows": rows, "provisional_rows": 0}}
        return out
    if fitted is None:
        return out
    fitted = _object(fitted, "fitted")
    out["batch"] = {"converged": fitted.get("converged"), "n_iter": fitted.get("n_iter"),
                    "lower_bound": fitted.get("lower_bound")}
    model = {name: fitted.get(name) for name in ("weights", "means", "covariances",
                                                 "precisions_cholesky", "stats",
                                                 "recent_counts", "iterate", "average")}
    out["online"] = {"n_features": fitted.get("n_features_in"), "n_seen": fitted.get("n_seen"),
                     "n_updates": fitted.get("n_updates"), "n_gated": fitted.get("n_gated", 0),
                     "t": fitted.get("t"), "moved_online": fitted.get("moved_online"),
                     "step": None, "model": model, "warmup": None,
                     "upkeep": {"next_check": None}}
    return out
