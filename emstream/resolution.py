"""The data's own resolution, and the variance floor it implies.

Real columns are often quantised: integer counts, readings printed with two decimals, ratios of
small integers, flags.  A Gaussian fitted to such values can shrink onto one repeated value and
give it an unbounded density, which lets one component win every point that shares that value
(and lock out everything else).  A value recorded on a grid of step ``δ`` stands for an interval
of width ``δ``; the variance of a uniform error over that interval is ``δ² / 12`` (Sheppard's
correction), and no component should claim less.

:func:`grid_step` estimates ``δ`` per column as the smallest gap between distinct values, ignoring
gaps at the level of floating-point rounding (values derived by arithmetic, such as 1/9, differ
in their last bits).  For a continuous column the smallest gap of n values is about
``range / n²``, so its floor is negligible.

Example
-------
>>> import numpy as np
>>> X = np.c_[[0, 1, 1, 3, 7], [0.25, 0.5, 0.5, 1.0, 0.25], [2.0, 2.0, 2.0, 2.0, 2.0]]
>>> grid_step(X).tolist()
[1.0, 0.25, 1.0]
>>> variance_floor(grid_step(X)).round(4).tolist()
[0.0833, 0.0052, 0.0833]
"""

from __future__ import annotations

import math

import numpy as np

# Gaps below this fraction of the values' magnitude are rounding, not resolution.
_ROUNDING = 1e-9
# A value's step is at least this many of float64's steps at its magnitude (see _decimal_step).
_FLOAT_STEPS = 64
# Rows looked at: the smallest gap of more rows only gets smaller on continuous data.
ROWS = 4096
# The quantile of a column's magnitudes that stands for its typical one (for rounding).
TYPICAL_QUANTILE = 0.4


def _decimal_step(value: float) -> float:
    """The last printed decimal place of a value (to about 9 significant digits): 1 for
    integers and 0, 0.01 for 2.75, 1e-12 for 0.00019761251903 (as 1e-7 for 19.761251903: the
    same readings in other units get the same relative step; a fixed 12 places made it 0)."""
    magnitude = abs(value)
    if magnitude == 0.0:
        return 1.0
    if not 1e-290 < magnitude < np.inf:
        return 0.0
    if magnitude >= 2.0**53:
        # Whole, on a grid coarser than 1: float64 steps by 256 at 1.5e18, and with the floor
        # of a step of 1 (1/12) the rounding of a flat series' means alone made surprises of
        # 80 nats, and alerts.  Arithmetic on such values is off by a few of float64's steps.
        return float(_FLOAT_STEPS * np.spacing(magnitude))
    lead = int(np.floor(np.log10(magnitude))) if magnitude < 1.0 else 0
    for places in range(13 - lead):
        scaled = value * 10.0**places
        # (relative to the value: with an absolute tolerance any value below 1e-9 was a
        # whole number, and its variance floor 1/12 swamped its spread)
        if abs(scaled - round(scaled)) <= _ROUNDING * abs(scaled):
            return 10.0**-places
    return 0.0


def grid_step(X: np.ndarray) -> np.ndarray:
    """Per column, the step of the grid its values lie on (0 where none is found).

    Parameters
    ----------
    X : ndarray of shape (n, D)
        At most 4,096 rows are looked at, spread evenly over X (not the first ones: in rows
        sorted by value, or from a sensor idle at first, a column constant at the start would
        look like whole numbers, and its floor dwarf its real spread).

    Returns
    -------
    ndarray of shape (D,)
        The smallest gap between distinct values beyond rounding; for a column with one value,
        its last printed decimal place (a constant 0 or 3 has step 1, 0.5 has step 0.1).
    """
    X = np.asarray(X, dtype=float)
    X = X[::-(-X.shape[0] // ROWS)][:ROWS] if X.shape[0] > ROWS else X
    ordered = np.sort(X, axis=0)
    gaps = np.diff(ordered, axis=0)
    # Rounding is relative to the two values of a gap and to the column's typical magnitude
    # (arithmetic leaves 5.6e-17 where 0 was meant, among values near 0.5), not to its largest
    # value: one wild value of 1e100 among readings near 30, or half a column at 1e95, made
    # every gap among the small values rounding and the step 1e100, a variance floor of 8e198
    # for every component.  The typical magnitude is a low quantile, which neither sets.
    if ordered.shape[0] > 1:
        magnitude = np.abs(ordered)
        rank = math.ceil(TYPICAL_QUANTILE * (ordered.shape[0] - 1))  # (an order statistic)
        typical = np.maximum(np.partition(magnitude, rank, axis=0)[rank], 1e-300)
        noise = _ROUNDING * np.maximum(np.maximum(magnitude[:-1], magnitude[1:]), typical)
        gaps[gaps <= noise] = np.inf
    step = gaps.min(axis=0, initial=np.inf)
    for j in np.flatnonzero(~np.isfinite(step)):  # one distinct value: its printed precision
        step[j] = _decimal_step(float(ordered[0, j])) if ordered.shape[0] else 0.0
    return step


def variance_floor(step: np.ndarray) -> np.ndarray:
    """``step² / 12``: the variance of a value known only to within one grid step, shape (D,)."""
    step = np.asarray(step, dtype=float)
    return step * step / 12.0


def finer(a: np.ndarray | None, b: np.ndarray) -> np.ndarray:
    """The finer of two step estimates per column (a step of 0 means unknown)."""
    if a is None:
        return b
    both = (a > 0) & (b > 0)
    return np.where(both, np.minimum(a, b), np.maximum(a, b))
