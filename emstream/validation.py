"""Input checks with messages that say what is wrong and what to do about it."""

from __future__ import annotations

import numbers

import numpy as np

# Second moments of larger values overflow float64; refuse them with a clear message.
MAX_ABS_VALUE = 1e100


def check_array(X, *, name: str = "X", n_features: int | None = None, min_samples: int = 1,
                why_min: str = "") -> np.ndarray:
    """``X`` as a contiguous float64 array of shape (n_samples, n_features), or a ValueError.

    Row-major unless ``X`` is already column-major.  (The layout can change the last bit of
    some results, e.g. diagonal covariances: replaying a stream learned from data frames as
    row-major arrays reproduces it to rounding, not bit for bit.)

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_features : int, optional
        Required number of columns (the fitted model's).
    min_samples : int
        Fewest rows accepted.
    why_min : str
        Explains ``min_samples`` in the error message.

    Examples
    --------
    >>> check_array([[1, 2], [3, 4]]).dtype
    dtype('float64')
    >>> check_array([1.0, 2.0])
    Traceback (most recent call last):
    ...
    ValueError: X must be 2-D of shape (n_samples, n_features), got a 1-D array of shape (2,); use X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample
    """
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if arr.ndim == 1:
        raise ValueError(
            f"{name} must be 2-D of shape (n_samples, n_features), got a 1-D array of shape "
            f"{arr.shape}; use {name}.reshape(-1, 1) for one feature or {name}.reshape(1, -1) "
            "for one sample")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (n_samples, n_features), got "
                         f"{arr.ndim}-D of shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples); pass at least {max(min_samples, 1)}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features; each sample needs at least one number")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, but the model was fitted with "
                         f"{n_features}; pass rows with {n_features} columns")
    if arr.shape[0] < min_samples:
        raise ValueError(f"{name} has {arr.shape[0]} samples, fewer than {min_samples}"
                         f"{why_min}")
    # One reduction answers both checks in the common case: the largest |value| is NaN if any
    # value is, infinite if any is.
    if not np.maximum.reduce(np.abs(arr), axis=None) <= MAX_ABS_VALUE:
        finite = np.isfinite(arr)
        if not finite.all():
            bad_rows = np.flatnonzero(~finite.all(axis=1))
            raise ValueError(f"{name} contains NaN or infinity in {bad_rows.size} row(s), first "
                             f"at row {bad_rows[0]}; drop or impute those rows first")
        raise ValueError(f"{name} has values beyond ±{MAX_ABS_VALUE:g}, whose squares overflow; "
                         "rescale the data (for example to other units) first")
    # Column-major input (a data frame's values) stays as it is: the core works on X.T, which
    # is then contiguous, and a row-major copy would cost a pass over the data.
    return arr if arr.flags.f_contiguous else np.ascontiguousarray(arr)


def check_int(value, name: str, low: int, high: int | None = None) -> int:
    """An integer in [low, high], else a ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def check_float(value, name: str, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number within the given bounds, else a ValueError naming the parameter."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        interval = f"in {lo or '(-inf'}, {hi or 'inf)'}"
        raise ValueError(f"{name} must be a finite number {interval}, got {value!r}")
    return float(value)
