"""Input checks with messages that say what is wrong and what to do about it."""

from __future__ import annotations

import decimal
import math
import numbers
import sys

import numpy as np

# Second moments of larger values overflow float64; refuse them with a clear message.
MAX_ABS_VALUE = 1e100


def check_array(X, *, name: str = "X", n_features: int | None = None, min_samples: int = 1,
                why_min: str = "", estimator: str = "the model") -> np.ndarray:
    """``X`` as a contiguous float64 array of shape (n_samples, n_features), or an error.

    Row-major unless ``X`` is already column-major.  (The layout can change the last bit of
    some results, e.g. diagonal covariances: replaying a stream learned from data frames as
    row-major arrays reproduces it to rounding, not bit for bit.)  Messages carry
    scikit-learn's wording too ("Reshape your data", "0 feature(s) (shape=...)", ...), so code
    and tests written against scikit-learn recognise them.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_features : int, optional
        Required number of columns (the fitted model's).
    min_samples : int
        Fewest rows accepted.
    why_min : str
        Explains ``min_samples`` in the error message.
    estimator : str
        Who expects ``n_features`` columns, for the message.

    Raises
    ------
    TypeError
        ``X`` is sparse, or holds objects that are not numbers.
    ValueError
        Any other problem: shape, complex or non-numeric values, NaN, infinity, overflow.

    Examples
    --------
    >>> check_array([[1, 2], [3, 4]]).dtype
    dtype('float64')
    >>> check_array([1.0, 2.0])
    Traceback (most recent call last):
    ...
    ValueError: X must be 2-D of shape (n_samples, n_features), got a 1-D array of shape (2,). Reshape your data: X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample
    """
    arr = _as_float_array(X, name)
    if arr.ndim == 1:
        raise ValueError(
            f"{name} must be 2-D of shape (n_samples, n_features), got a 1-D array of shape "
            f"{arr.shape}. Reshape your data: {name}.reshape(-1, 1) for one feature or "
            f"{name}.reshape(1, -1) for one sample")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (n_samples, n_features), got "
                         f"{arr.ndim}-D of shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: found array with 0 sample(s) (shape={arr.shape}) "
                         f"while a minimum of {max(min_samples, 1)} is required")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 "
                         "is required; each sample needs at least one number")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, but {estimator} is expecting "
                         f"{n_features} features as input; pass rows with {n_features} columns")
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
        raise ValueError(f"{name} has values beyond ±{MAX_ABS_VALUE:g}, the model's limit (the "
                         "sums of their squares over many rows would overflow float64); "
                         "rescale the data (for example to other units) first")
    # Column-major input (a data frame's values) stays as it is: the core works on X.T, which
    # is then contiguous, and a row-major copy would cost a pass over the data.
    return arr if arr.flags.f_contiguous else np.ascontiguousarray(arr)


def check_times(times, n: int) -> np.ndarray:
    """Rows' times as a float array of shape (n,), or ValueError: one finite number (seconds)
    per row.

    >>> check_times([0, 300], 2).tolist()
    [0.0, 300.0]
    """
    times = np.asarray(times, dtype=float).reshape(-1)
    if times.shape[0] != n or not np.isfinite(times).all():
        raise ValueError(f"times must be {n} finite numbers (seconds), one per row")
    return times


def _as_float_array(X, name: str) -> np.ndarray:
    """``X`` as a float64 array of any shape; sparse, complex and non-numeric data refused."""
    if not isinstance(X, np.ndarray) and _is_sparse(X):
        raise TypeError(f"{name} is a sparse matrix, but sparse input is not supported: the "
                        f"mixture needs dense rows; convert with {name}.toarray()")
    try:
        # The values' own type first: casting complex values to float64 would only warn.
        arr = np.asarray(X)
        kind = arr.dtype.kind
        if kind not in "fiubcmMSUV":  # objects: numbers if each one converts
            arr = np.asarray(X, dtype=np.float64)
    except TypeError as exc:  # an object that is no number (a dict, None, a complex)
        if "NAType" in str(exc):  # pandas' missing value, in a nullable column (Int64, ...)
            raise ValueError(f"{name} contains missing values (pandas' NA); drop or impute "
                             "those rows first") from None
        raise TypeError(f"{name} must be numeric: {exc}") from None
    except ValueError as exc:  # a string that is no number, a ragged list
        raise ValueError(f"{name} must be numeric: {exc}") from None
    except OverflowError:  # a Python int beyond float64 (10 ** 400)
        raise ValueError(f"{name} has values beyond ±{MAX_ABS_VALUE:g} (a whole number too "
                         "large for float64); rescale the data (for example to other units) "
                         "first") from None
    if kind in "mMSUV":
        # Times became their counts in whatever unit they had (days or nanoseconds), and
        # text such as "1.5" a number: refused, as the river adapters refuse them.
        what = {"m": "time spans", "M": "times", "S": "bytes", "U": "text",
                "V": "raw records"}[kind]
        raise ValueError(f"{name} must be numeric: it holds {what} (dtype {arr.dtype}); "
                         "convert them to numbers first (times to seconds, say)")
    if arr.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {arr.dtype}; pass its "
                         f"real part ({name}.real) or its modulus (abs({name}))")
    return arr if arr.dtype == np.float64 else arr.astype(np.float64)


def _is_sparse(X) -> bool:
    # A scipy sparse matrix can only exist once scipy.sparse is loaded; never import it here.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def is_number(value) -> bool:
    """Whether a value is a real number of any kind: Python's or numpy's, a bool, a
    ``decimal.Decimal`` (what ``json.loads(..., parse_float=Decimal)`` and database drivers
    give) too; NaN and infinities included: whether it is usable is another question.

    A time span is not one, though numpy registers ``timedelta64`` as an integer (its
    ``float()`` raised TypeError, a traceback from the river adapters).

    >>> is_number(np.True_), is_number(decimal.Decimal("2")), is_number("2"), is_number(None)
    (True, True, False, False)
    >>> is_number(np.timedelta64(5, "s"))
    False
    """
    return isinstance(value, (numbers.Real, np.bool_, decimal.Decimal)) and not isinstance(
        value, np.timedelta64)


def check_int(value, name: str, low: int, high: int | None = None) -> int:
    """An integer in [low, high], else a ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def check_bool(value, name: str) -> bool:
    """True or False (numpy's too), else a ValueError naming the parameter: ``bool("no")`` is
    True, so a word where a flag belongs would silently switch it on."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _finite(value: numbers.Real) -> bool:
    """Whether a real number is finite as a float (an integer beyond int64 is no error for
    ``float``, which numpy's ``isfinite`` refuses; one beyond float's range is not finite)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def check_float(value, name: str, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number within the given bounds, else a ValueError naming the parameter."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and _finite(value)
    # (compared as Python floats: a numpy float32 against a bound beyond its range warned of
    # an overflow in the cast)
    number = float(value) if ok else None
    if ok and low is not None:
        ok = number > low if low_open else number >= low
    if ok and high is not None:
        ok = number < high if high_open else number <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        interval = f"in {lo or '(-inf'}, {hi or 'inf)'}"
        raise ValueError(f"{name} must be a finite number {interval}, got {value!r}")
    return float(value)
