"""Timestamps as seconds since 1970-01-01 UTC: ISO 8601 text or epoch numbers, a block at once.

Accepted: ``2014-07-01 00:30:00``, ``2014-07-01T00:30:00.250``, a date alone (midnight), with
an optional ``Z``, ``UTC`` or ``GMT``, or a ``+HH:MM`` / ``-HHMM`` / ``+HH`` offset; and, for a
field that is a plain number, epoch seconds, or epoch milliseconds when beyond 1e11 (year 5138
in seconds, 1973 in ms), microseconds beyond 1e14 and nanoseconds beyond 1e17 (as databases and
tracing tools write them: read as milliseconds, they were years like 55,967).  Dates as
spreadsheets write them are accepted too: ``2014/07/01``, ``1.7.2014`` (day first), and
``7/1/2014`` or ``01/07/2014``, whose order is the stream's (``day_first``: told, or found by
:func:`infer_day_first` from a day above 12), with ``H:MM[:SS]`` and an optional
``AM``/``PM``, and their years in two digits as LibreOffice writes them by default
(``01.07.14``: 00-68 are 2000-2068, 69-99 1969-1999).  ISO 8601's end of a day, ``24:00``,
is the next day's midnight.
A field that is none of these is NaN, which the caller rejects as "bad timestamp".

Example
-------
>>> from emstream.timestamps import parse_times
>>> parse_times([b"2014-07-01 00:30:00", b"2014-07-01T02:30:00+02:00", b"1404174600",
...              b"1404174600000", b"July 1st"]).tolist()
[1404174600.0, 1404174600.0, 1404174600.0, 1404174600.0, nan]
>>> parse_times([b"7/1/2014 12:30 AM", b"01.07.2014 00:30"], day_first=False).tolist()
[1404174600.0, 1404174600.0]
"""

from __future__ import annotations

import re

import numpy as np

# A zone: Z, UTC or GMT (BigQuery writes "2014-07-01 00:30:00 UTC"), or an offset in hours
# and optional minutes (PostgreSQL writes "+00"), after the time or a space.
# The widest offset any zone has had (Kiribati's +14:00; -12:00 the other way).
MAX_OFFSET_HOURS = 14
_OFFSET = re.compile(rb" ?(?:Z|UTC|GMT|([+-])(\d\d)(?::?(\d\d))?)$")
_EPOCH = re.compile(rb"[+-]?\d+(?:\.\d*)?")
# (a decimal comma before the fraction of a second too, which ISO 8601 allows and Python's
# logging and log4j write: 2024-03-01 00:00:00,123)
_ISO = re.compile(rb"\d{4}-\d\d(?:-\d\d(?:[T ]\d\d(?::\d\d(?::\d\d(?:[.,]\d+)?)?)?)?)?")
# A spreadsheet's date: year first (2014/07/01), day first with dots (01.07.2014), or day and
# month in the stream's order with slashes (07/01/2014); a time of day, with AM/PM or not.
_WRITTEN = re.compile(rb"(\d{1,4})([/.])(\d{1,2})\2(\d{1,4})(?:(?:[T ]|, ?)\s*(\d{1,2}):(\d\d)"
                      rb"(?::(\d\d)(\.\d+)?)?(?:\s*([AaPp])\.?[Mm]\.?)?)?")
# The common log format's time (Apache's and nginx's $time_local): 01/Mar/2024:00:00:00 +0000.
_CLF = re.compile(rb"(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d\d):(\d\d):(\d\d)(\.\d+)?")
_MONTHS = {name: number for number, name in enumerate(
    (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
     b"dec"), start=1)}
# ISO 8601's end of a day, 24:00 (as some loggers and weather services write it): the next
# day's midnight.
_END_OF_DAY = re.compile(r"(\d{4}-\d\d-\d\d)[T ]24:00(?::00(?:\.0+)?)?")
# Epoch numbers beyond this are milliseconds.
_MILLISECONDS = 1e11
# Epoch numbers beyond _MILLISECONDS: milliseconds up to 1e14, microseconds up to 1e17, then
# nanoseconds (each range is years 1973 to 5138 in its unit: no overlap).
_EPOCH_UNITS = ((1e14, 1e3), (1e17, 1e6))


def _written(match, day_first: bool | None) -> str | None:
    """ISO 8601 text of a spreadsheet's date (a :data:`_WRITTEN` match), None if it is none."""
    first, separator, middle, last, hour, minute, second, fraction, noon = match.groups()
    if len(first) == 4 and separator == b"/":
        year, month, day = int(first), middle, last
    elif len(last) in (2, 4) and len(first) <= 2:
        if separator == b"." or day_first:
            day, month = first, middle
        elif day_first is None:
            return None  # 01/07/2014: the first of July or the seventh of January
        else:
            month, day = first, middle
        year = int(last)
        if len(last) == 2:  # (as LibreOffice writes years by default: 00-68 are 2000-2068,
            # 69-99 1969-1999, as strptime's %y; only as it writes them, day and month in two
            # digits with a time of day: 14/07/01 alone may be a year first, 1.2.10 a version)
            if hour is None or len(first) != 2 or len(middle) != 2:
                return None
            year += 2000 if year < 69 else 1900
    else:
        return None
    text = f"{year:04d}-{int(month):02d}-{int(day):02d}"
    if hour is None:
        return text
    hour = int(hour)
    if noon is not None:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if noon in b"Pp" else 0)
    text += f"T{hour:02d}:{minute.decode()}:{(second or b'00').decode()}"
    return text + (fraction or b"").decode()


def _one(text: bytes, day_first: bool | None = None) -> float:
    """One field's time in seconds, NaN if it is not a time."""
    text = text.strip()
    if _EPOCH.fullmatch(text):
        value = float(text)
        magnitude = abs(value)
        if magnitude <= _MILLISECONDS:
            return value
        for bound, per_second in _EPOCH_UNITS:
            if magnitude <= bound:
                return value / per_second
        return value / 1e9
    offset = 0.0
    zone = _OFFSET.search(text) if len(text) > 10 else None
    if zone is not None and zone.group(1) and b":" not in text[:zone.start()]:
        zone = None  # an offset follows a time of day (2014-07-01-05 is no time)
    if zone is not None:
        if zone.group(1):
            hours, minutes = int(zone.group(2)), int(zone.group(3) or 0)
            if minutes > 59 or hours * 60 + minutes > MAX_OFFSET_HOURS * 60:
                return np.nan  # (+99:99 is no zone: it was read as 4 days and 3 minutes;
                # +14:01 is beyond every zone too)
            offset = (hours * 3600 + minutes * 60) * (1 if zone.group(1) == b"+" else -1)
        text = text[:zone.start()]
    if _ISO.fullmatch(text):
        iso = text.decode("ascii").replace(",", ".")
    elif (logged := _CLF.fullmatch(text)) is not None:
        day, month, year, hour, minute, second, fraction = logged.groups()
        if month.lower() not in _MONTHS:
            return np.nan
        iso = (f"{year.decode()}-{_MONTHS[month.lower()]:02d}-{int(day):02d}T{hour.decode()}:"
               f"{minute.decode()}:{second.decode()}{(fraction or b'').decode()}")
    else:
        written = _WRITTEN.fullmatch(text)
        iso = None if written is None else _written(written, day_first)
        if iso is None:
            return np.nan
    try:
        stamp = np.datetime64(iso, "us")  # (to the microsecond: a 10 kHz sensor's rows
        # cut to milliseconds repeated each time ten times, and its step was 0)
    except ValueError:  # 2014-13-45 and the like
        end = _END_OF_DAY.fullmatch(iso)
        if end is None:
            return np.nan
        try:
            stamp = np.datetime64(end.group(1), "us") + np.timedelta64(1, "D")
        except ValueError:
            return np.nan
    return stamp.astype(np.int64) / 1e6 - offset


def parse_times(fields, day_first: bool | None = None) -> np.ndarray:
    """Seconds since the epoch for each field (bytes); NaN where a field is not a time.

    Parameters
    ----------
    fields : sequence of bytes, length n
    day_first : bool or None
        The order of ``07/01/2014``: day first (True), month first (False), or neither
        known (None: such a field is NaN).

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    if isinstance(fields, np.ndarray) and _iso_alike(fields):
        if b"," in bytes(fields[0]):  # (one shape: the comma is at the same place in each)
            fields = fields.copy()
            chars = fields.view(np.uint8).reshape(fields.size, -1)
            chars[chars == ord(",")] = ord(".")
        # A table's time column: every field ISO text of one shape, cast as an array, but for
        # the fields whose date or time is out of range (a February 30, a leap second), which
        # are read one by one: numpy 2.4's cast of a bytes column of 500 or more that holds
        # one crashed the process (a segmentation fault, not a ValueError).
        fine = _in_range(np.ascontiguousarray(fields).view(np.uint8).reshape(fields.size, -1))
        if fine.all():
            return fields.astype("datetime64[us]").astype(np.int64) / 1e6
        out = np.empty(fields.size)
        out[fine] = fields[fine].astype("datetime64[us]").astype(np.int64) / 1e6
        out[~fine] = [_one(bytes(f), day_first) for f in fields[~fine]]
        return out
    fields = list(fields)
    if not fields:
        return np.empty(0)
    try:  # the common case: plain ISO text without offsets, parsed by numpy in one call
        if all(_ISO.fullmatch(f) for f in fields):
            stamps = np.array([f.replace(b",", b".") for f in fields], dtype="datetime64[us]")
            return stamps.astype(np.int64) / 1e6
    except ValueError:
        pass
    return np.array([_one(f, day_first) for f in fields], dtype=float)


_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _in_range(chars: np.ndarray) -> np.ndarray:
    """Which of these ISO fields of one shape (their bytes, shape (n, width), as
    :func:`_iso_alike` found them: ``YYYY-MM[-DD[ hh[:mm[:ss...]]]]``) have a month, day, hour,
    minute and second that exist, shape (n,).

    >>> fields = np.array([b"2024-02-29 23:59", b"2023-02-29 00:00", b"2024-13-01 00:00"])
    >>> _in_range(fields.view(np.uint8).reshape(3, -1)).tolist()
    [True, False, False]
    """
    def pair(start: int) -> np.ndarray:  # two digits as a number (11 * '0' taken off)
        return chars[:, start].astype(np.int16) * 10 + chars[:, start + 1] - 11 * ord("0")

    width = chars.shape[1]
    month = pair(5)
    fine = (month >= 1) & (month <= 12)
    if width >= 10:
        day = pair(8)
        fine &= day >= 1
        late = np.flatnonzero(day > 28)  # (the only days whose month and year matter)
        if late.size:
            year = pair(0)[late].astype(np.int64) * 100 + pair(2)[late]
            leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
            m = month[late]
            fine[late] &= day[late] <= _DAYS[np.clip(m - 1, 0, 11)] + (leap & (m == 2))
    for start, top in ((11, 23), (14, 59), (17, 59)):  # hour, minute, second
        if width >= start + 2:
            fine &= pair(start) <= top
    return fine


def _iso_alike(fields: np.ndarray) -> bool:
    """Whether every field of a byte-string array is plain ISO text shaped exactly as the
    first (digits where it has digits, its very separators elsewhere, no shorter): then all
    match :data:`_ISO` as the first does, found in two array passes instead of a regular
    expression per field (a third of a timestamped table's parsing)."""
    if fields.dtype.kind != "S" or fields.ndim != 1 or not fields.size:
        return False
    first = bytes(fields[0])
    if len(first) != fields.dtype.itemsize or not _ISO.fullmatch(first):
        return False
    chars = np.ascontiguousarray(fields).view(np.uint8).reshape(fields.size, -1)
    digit = (chars >= ord("0")) & (chars <= ord("9"))
    shape = digit[0]
    return bool((digit == shape).all() and (chars[:, ~shape] == chars[0, ~shape]).all())


def looks_like_time(field: bytes) -> bool:
    """An ISO 8601 or a spreadsheet's date or time (not a bare number: a number is a value
    unless named a time)."""
    field = field.strip()
    return not _EPOCH.fullmatch(field) and (np.isfinite(_one(field, True))
                                            or np.isfinite(_one(field, False)))


def infer_day_first(fields) -> bool | None:
    """Whether these times put the day before the month (``13/01/2014``: True;
    ``01/13/2014``: False), or None if none says (every day and month up to 12, no slashed
    date at all, or both orders seen).

    >>> infer_day_first([b"01/02/2014", b"13/02/2014"]), infer_day_first([b"2014-07-01"])
    (True, None)
    """
    day_first = month_first = False
    for field in fields:
        match = _WRITTEN.fullmatch(field.strip())
        if match is None or match.group(2) != b"/" or len(match.group(4)) not in (2, 4):
            continue
        day_first |= int(match.group(1)) > 12
        month_first |= int(match.group(3)) > 12
    return day_first if day_first != month_first else None


def needs_day_order(field: bytes) -> bool:
    """Whether a time is written day and month with slashes (``07/01/2014``), so that its
    order must be known."""
    match = _WRITTEN.fullmatch(field.strip())
    return bool(match) and match.group(2) == b"/" and len(match.group(4)) in (2, 4) and len(
        match.group(1)) <= 2


# Steps forward enough for a median of their own (see typical_step).
MIN_FORWARD_STEPS = 10


def typical_step(times) -> float | None:
    """The median step between successive ``times`` (seconds), or None for fewer than two.

    Where most times stand alone, rows that repeat one (a start-up burst stamped with one
    second, a replayed backlog) do not make the step 0: with ``MIN_FORWARD_STEPS`` steps or
    more forward the median is of those (a burst of 60 rows at one time among the first 100
    made it 0, and the series lost its season for good).  Where times typically repeat (dates
    without their time of day, two sensors' rows at each time) it is the median of every
    step, as before.

    >>> typical_step([0.0, 300.0, 600.0, 1500.0])
    300.0
    >>> typical_step([0.0] * 30 + [300.0 * i for i in range(1, 12)])
    300.0
    """
    times = np.asarray(times, dtype=float).reshape(-1)
    if times.shape[0] < 2:
        return None
    steps = np.diff(times)
    forward = steps[steps > 0]
    rows_per_time = np.diff(np.r_[0, np.flatnonzero(steps != 0) + 1, times.shape[0]])
    if forward.shape[0] >= MIN_FORWARD_STEPS and np.median(rows_per_time) == 1:
        return float(np.median(forward))
    return float(np.median(steps))
