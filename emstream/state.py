"""A GaussianMixture's complete state as plain JSON-compatible data, and back.

Everything needed to resume exactly is kept: hyper-parameters, parameters, the running
sufficient statistics, the step-size position, counters and the warm-up buffer.  Floats are
Python floats (JSON round-trips them exactly), arrays are nested lists.  ``from_dict`` validates
shapes, finiteness and positive definiteness, so a damaged or crafted state is refused with a
``ValueError`` naming the field.

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

import numbers

import numpy as np

from .gaussian import MixtureParams
from .mixture import GaussianMixture
from .stats import SufficientStats, scatter_shape

SCHEMA = "emstream.GaussianMixture/1"
_ARRAY_PARAMS = ("weights_init", "means_init", "precisions_init")
# Parameters added after schema 1 was first written, with the behaviour older states had.
_ADDED_PARAMS = {"outlier_gate": None, "averaging": False}


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
        return value
    if isinstance(value, dict) and "generator" in value:
        state = value["generator"]
        name = state.get("bit_generator") if isinstance(state, dict) else None
        if name not in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"):
            raise ValueError(f"random_state: unknown bit generator {name!r}")
        bit_generator = getattr(np.random, name)()
        bit_generator.state = state
        return np.random.Generator(bit_generator)
    if isinstance(value, dict) and "legacy" in value:
        name, keys, pos, has_gauss, gauss = value["legacy"]
        rs = np.random.RandomState()
        rs.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        return rs
    raise ValueError(f"random_state: cannot read {value!r}")


def _list(array) -> list | None:
    return None if array is None else np.asarray(array, dtype=float).tolist()


def to_dict(model: GaussianMixture) -> dict:
    """The model's state as JSON-compatible data (see :data:`SCHEMA`)."""
    params = model.get_params()
    for name in _ARRAY_PARAMS:
        params[name] = _list(params[name])
    params["random_state"] = _encode_random_state(params["random_state"])
    out = {"schema": SCHEMA, "params": params, "fitted": None, "warmup": None}
    warmup = getattr(model, "_warmup", None)
    if warmup:
        out["warmup"] = {"n_features": int(model.n_features_in_),
                         "rows": np.concatenate(warmup).tolist()}
    if model._is_fitted():
        p, s = model._params, model._stats
        out["fitted"] = {
            "weights": p.weights.tolist(), "means": p.means.tolist(),
            "covariances": p.covariances.tolist(),
            "precisions_cholesky": p.precisions_cholesky.tolist(),
            "stats": {"counts": s.counts.tolist(), "means": s.means.tolist(),
                      "scatter": s.scatter.tolist()},
            "t": float(model._t), "n_seen": int(model.n_seen_),
            "n_updates": int(model.n_updates_), "recent_counts": model.recent_counts_.tolist(),
            "converged": bool(model.converged_), "n_iter": int(model.n_iter_),
            # -inf (a point no component could explain) has no JSON form: null.
            "lower_bound": float(model.lower_bound_) if np.isfinite(model.lower_bound_)
            else None,
            "n_features_in": int(model.n_features_in_),
            "moved_online": bool(model._moved_online),
            "n_gated": int(model.n_gated_),
        }
        if model._iterate is not model._params:  # Polyak averaging publishes the average
            it = model._iterate
            out["fitted"]["iterate"] = {"weights": it.weights.tolist(),
                                        "means": it.means.tolist(),
                                        "covariances": it.covariances.tolist()}
        if model._average is not None:
            total, weights, means, covs = model._average
            out["fitted"]["average"] = {"points": float(total), "weights": weights.tolist(),
                                        "means": means.tolist(), "covariances": covs.tolist()}
    return out


def _array(data, name: str, shape: tuple) -> np.ndarray:
    try:
        arr = np.array(data, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not an array of numbers") from None
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or infinity")
    return arr


def _number(data, name: str, kind=numbers.Real) -> float:
    if isinstance(data, bool) or not isinstance(data, kind):
        raise ValueError(f"{name} must be a number, got {data!r}")
    if not np.isfinite(data):
        raise ValueError(f"{name} must be finite")
    return data


def _positive_definite(covs: np.ndarray, kind: str) -> None:
    if kind in ("full", "tied"):
        stack = covs if kind == "full" else covs[None]
        if not np.allclose(stack, np.swapaxes(stack, 1, 2), rtol=1e-12, atol=0):
            raise ValueError("covariances are not symmetric")
        try:
            np.linalg.cholesky(stack)
        except np.linalg.LinAlgError:
            raise ValueError("covariances are not positive definite") from None
    elif np.any(covs <= 0):
        raise ValueError("variances must be positive")


def _checked_covariances(data, name: str, shape: tuple, kind: str) -> np.ndarray:
    covs = _array(data, name, shape)
    _positive_definite(covs, kind)
    return covs


def from_dict(data: dict) -> GaussianMixture:
    """A model from :func:`to_dict`'s output; ``ValueError`` naming the field if anything is off."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"not a {SCHEMA} state (schema: {found!r})")
    params = data.get("params")
    if isinstance(params, dict):  # states saved before these parameters existed
        params = {**_ADDED_PARAMS, **params}
    if not isinstance(params, dict) or set(params) != set(GaussianMixture._param_names()):
        raise ValueError("params must hold exactly GaussianMixture's parameters")
    params = dict(params)
    for name in _ARRAY_PARAMS:
        if params[name] is not None:
            params[name] = _array(params[name], name, np.shape(params[name]))
    params["random_state"] = _decode_random_state(params["random_state"])
    model = GaussianMixture(**params)
    model._validate_params()
    kind, k = model.covariance_type, model.n_components
    warmup, fitted = data.get("warmup"), data.get("fitted")
    if warmup is not None and fitted is not None:
        raise ValueError("a state cannot be both warming up and fitted")
    if warmup is not None:
        d = int(_number(warmup.get("n_features"), "warmup.n_features", numbers.Integral))
        rows = np.asarray(warmup.get("rows"), dtype=float) if warmup.get("rows") else None
        if rows is None or rows.ndim != 2 or rows.shape[1] != d or d < 1:
            raise ValueError("warmup.rows must be a non-empty (n, n_features) array")
        rows = _array(rows, "warmup.rows", rows.shape)
        if rows.shape[0] >= model.warmup_size:
            raise ValueError("warmup holds more rows than warmup_size")
        model._warmup = [rows]
        model.n_features_in_ = d
        return model
    if fitted is None:
        return model
    if not isinstance(fitted, dict):
        raise ValueError("fitted must be an object")
    d = int(_number(fitted.get("n_features_in"), "fitted.n_features_in", numbers.Integral))
    if d < 1:
        raise ValueError("fitted.n_features_in must be >= 1")
    shape = scatter_shape(kind, k, d)
    weights = _array(fitted.get("weights"), "fitted.weights", (k,))
    if weights.min() < 0 or not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-9):
        raise ValueError("fitted.weights must be non-negative and sum to 1")
    means = _array(fitted.get("means"), "fitted.means", (k, d))
    covariances = _array(fitted.get("covariances"), "fitted.covariances", shape)
    _positive_definite(covariances, kind)
    prec_chol = _array(fitted.get("precisions_cholesky"), "fitted.precisions_cholesky", shape)
    check = MixtureParams.from_covariances(weights, means, covariances, kind)
    if not np.allclose(check.precisions_cholesky, prec_chol, rtol=1e-6, atol=0):
        raise ValueError("fitted.precisions_cholesky does not match fitted.covariances")
    stats = fitted.get("stats")
    if not isinstance(stats, dict):
        raise ValueError("fitted.stats must be an object")
    counts = _array(stats.get("counts"), "fitted.stats.counts", (k,))
    if counts.min() < 0:
        raise ValueError("fitted.stats.counts must be non-negative")
    model._stats = SufficientStats(counts, _array(stats.get("means"), "fitted.stats.means",
                                                  (k, d)),
                                   _array(stats.get("scatter"), "fitted.stats.scatter", shape),
                                   kind)
    model._set_params(MixtureParams(weights, means, covariances, prec_chol, kind))
    model._t = float(_number(fitted.get("t"), "fitted.t"))
    model.n_seen_ = int(_number(fitted.get("n_seen"), "fitted.n_seen", numbers.Integral))
    model.n_updates_ = int(_number(fitted.get("n_updates"), "fitted.n_updates",
                                   numbers.Integral))
    model.recent_counts_ = _array(fitted.get("recent_counts"), "fitted.recent_counts", (k,))
    model.converged_ = bool(fitted.get("converged"))
    model.n_iter_ = int(_number(fitted.get("n_iter"), "fitted.n_iter", numbers.Integral))
    bound = fitted.get("lower_bound")
    model.lower_bound_ = -np.inf if bound is None else float(_number(bound,
                                                                      "fitted.lower_bound"))
    model.n_features_in_ = d
    model._moved_online = bool(fitted.get("moved_online"))
    model.n_gated_ = int(_number(fitted.get("n_gated", 0), "fitted.n_gated", numbers.Integral))
    model._iterate, model._average = model._params, None
    if fitted.get("iterate") is not None:
        it = fitted["iterate"]
        model._iterate = MixtureParams.from_covariances(
            _array(it.get("weights"), "fitted.iterate.weights", (k,)),
            _array(it.get("means"), "fitted.iterate.means", (k, d)),
            _checked_covariances(it.get("covariances"), "fitted.iterate.covariances", shape,
                                 kind), kind)
    if fitted.get("average") is not None:
        avg = fitted["average"]
        model._average = (float(_number(avg.get("points"), "fitted.average.points")),
                          _array(avg.get("weights"), "fitted.average.weights", (k,)),
                          _array(avg.get("means"), "fitted.average.means", (k, d)),
                          _checked_covariances(avg.get("covariances"),
                                               "fitted.average.covariances", shape, kind))
    model._warmup = []
    if model._t < 0 or model.n_seen_ < 0:
        raise ValueError("fitted.t and fitted.n_seen must be non-negative")
    return model


