"""Timestamps as seconds since 1970-01-01 UTC: ISO 8601 text or epoch numbers, a block at once.

Accepted: ``2014-07-01 00:30:00``, ``2014-07-01T00:30:00.250``, a date alone (midnight), with
an optional ``Z`` or ``+HH:MM`` / ``-HHMM`` offset; and, for a field that is a plain number,
epoch seconds, or epoch milliseconds when beyond 1e11 (year 5138 in seconds, 1973 in ms).
A field that is none of these is NaN, which the caller rejects as "bad timestamp".

Example
-------
>>> from emstream.timestamps import parse_times
>>> parse_times([b"2014-07-01 00:30:00", b"2014-07-01T02:30:00+02:00", b"1404174600",
...              b"1404174600000", b"July 1st"]).tolist()
[1404174600.0, 1404174600.0, 1404174600.0, 1404174600.0, nan]
"""

from __future__ import annotations

import re

import numpy as np

_OFFSET = re.compile(rb"(?:Z|([+-])(\d\d):?(\d\d))$")
_EPOCH = re.compile(rb"[+-]?\d+(?:\.\d*)?")
_ISO = re.compile(rb"\d{4}-\d\d(?:-\d\d(?:[T ]\d\d(?::\d\d(?::\d\d(?:\.\d+)?)?)?)?)?")
# Epoch numbers beyond this are milliseconds.
_MILLISECONDS = 1e11


def _one(text: bytes) -> float:
    """One field's time in seconds, NaN if it is not a time."""
    text = text.strip()
    if _EPOCH.fullmatch(text):
        value = float(text)
        return value / 1000.0 if abs(value) > _MILLISECONDS else value
    offset = 0.0
    zone = _OFFSET.search(text) if len(text) > 10 else None
    if zone is not None:
        if zone.group(1):
            offset = (int(zone.group(2)) * 3600 + int(zone.group(3)) * 60) * (
                1 if zone.group(1) == b"+" else -1)
        text = text[:zone.start()]
    if not _ISO.fullmatch(text):
        return np.nan
    try:
        stamp = np.datetime64(text.decode("ascii"), "ms")
    except ValueError:  # 2014-13-45 and the like
        return np.nan
    return stamp.astype(np.int64) / 1000.0 - offset


def parse_times(fields) -> np.ndarray:
    """Seconds since the epoch for each field (bytes); NaN where a field is not a time.

    Parameters
    ----------
    fields : sequence of bytes, length n

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    fields = list(fields)
    if not fields:
        return np.empty(0)
    try:  # the common case: plain ISO text without offsets, parsed by numpy in one call
        if all(_ISO.fullmatch(f) for f in fields):
            stamps = np.array(fields, dtype="datetime64[ms]")
            return stamps.astype(np.int64) / 1000.0
    except ValueError:
        pass
    return np.array([_one(f) for f in fields], dtype=float)


def looks_like_time(field: bytes) -> bool:
    """An ISO 8601 date or time (not a bare number: a number is a value unless named a time)."""
    field = field.strip()
    return not _EPOCH.fullmatch(field) and np.isfinite(_one(field))


def typical_step(times) -> float | None:
    """The median step between successive ``times`` (seconds), or None for fewer than two.

    >>> typical_step([0.0, 300.0, 600.0, 1500.0])
    300.0
    """
    times = np.asarray(times, dtype=float).reshape(-1)
    if times.shape[0] < 2:
        return None
    return float(np.median(np.diff(times)))
