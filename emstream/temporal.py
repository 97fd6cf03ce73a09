"""Temporal features of a stream, computed causally a block at a time and checkpointable.

A mixture over raw values sees each point alone: a spike inside the normal range, a flatline at
a normal level or a changed daily shape look normal.  :class:`TemporalFeatures` turns each row
``x_t`` (D values) into a feature row the mixture models jointly:

- **target** columns, whose surprise is scored: the row itself, and (``volatility``) the log of
  its mean absolute change over the last ``window`` points (plus half the first value's
  printed decimal step, so a flatline's log stays finite), so a flatline (no change) or a
  burst of noise stands out;
- **context** columns, which the score is conditioned on: the previous ``lags`` rows, the row
  one season before (the median of the three rows around it, so one odd row does not make the
  next season's look odd; ``season``: a period in points, or "auto" to find it from the first
  block's timestamps (a day) or autocorrelation), and the calendar position (``calendar``: time
  of day and of week as points on circles, from the rows' timestamps).

With timestamps the season is a span of *time* (a day, or ``season`` typical steps): the row a
season before is the row nearest in time to ``t - period``, so an outage or dropped rows do not
shift what "the same time yesterday" means (counted in rows, a 7-hour outage made the next
day's rows compare with rows 7 hours off, and the first row after it alerted).  Without them
it is ``season`` rows back.

The anomaly score is then ``-log p(target | context)`` (see :mod:`emstream.series`): how
surprising this row is *given* what came before, not how rare its value is.

Every feature of row t uses rows ≤ t only, and the state (the last rows) is a JSON-ready
dict, so a restart continues exactly.

Example
-------
>>> import numpy as np
>>> from emstream.temporal import TemporalFeatures
>>> tf = TemporalFeatures(lags=1, volatility=False)
>>> tf.transform(np.array([[1.0], [2.0], [4.0]])).tolist()
[[1.0, 1.0], [2.0, 1.0], [4.0, 2.0]]
>>> tf.transform(np.array([[7.0]])).tolist(), tf.target_columns(1), tf.context_columns(1)
([[7.0, 4.0]], [0], [1])
"""

from __future__ import annotations

import numpy as np

from .resolution import _decimal_step
from .timestamps import typical_step
from .validation import MAX_ABS_VALUE, check_array, check_bool, check_int, check_times

# Periods the automatic season search considers.
MIN_SEASON, MAX_SEASON = 4, 1000
# Bounds on the settings (emstreamd's configuration has the same).
MAX_LAGS, MAX_WINDOW, MAX_PERIOD = 100, 10**6, 10**8
# An autocorrelation this high at the season's lag (and above its neighbours') makes it one.
SEASON_MIN_CORRELATION = 0.3
SEASON_PROMINENCE = 0.2
# The value a season ago is the median of the rows from SEASON_SPAN before to SEASON_SPAN after
# it: an odd point (a spike, a dropped reading) then does not make the same time of the next
# day look odd too.  NAB kit, standard score over three seeds (random_state 0, 1, 2; measured
# before the calibration's tail floor of the same day, README): span 0 (the raw value) 56.9,
# 56.5, 56.9; 1: 63.9, 63.6, 59.0; 2: 57.9, 60.6, 60.2 (a wider median blunts the sharp edges
# of a daily shape: the artificial series lose 16 points).
SEASON_SPAN = 1
# With times, a row follows a gap when it comes more than GAP_STEPS typical steps, and more
# than GAP_SHARE of a season (an hour of a day), after the row before it: the longer steps of
# irregular sampling are not gaps (one exponential step in six exceeds three medians).
GAP_STEPS, GAP_SHARE = 3, 1 / 24
# A season's time that fell in a gap is looked for up to this many periods back.
SEASONS_BACK = 3
_DAY, _WEEK = 86400.0, 7 * 86400.0
# Rows the first block should hold for the season to be decided from it (rows_to_decide): with
# times, ten give a median step; without, the autocorrelation needs a few periods.  (A live
# stream's first block, cut after its first row, had no step: the season and the clock were
# off for the model's whole life.)
DECIDE_ROWS_TIMED, DECIDE_ROWS = 10, 100


def find_season(x: np.ndarray) -> int | None:
    """The dominant period of a 1-D series in points (None if none is clear).

    The first lag among MIN_SEASON..min(MAX_SEASON, n / 3) where the autocorrelation of the
    series (its linear trend removed) peaks within 90% of its highest peak (multiples of the
    period peak as high) and rises at least ``SEASON_PROMINENCE`` above the lowest correlation
at shorter lags, kept if the correlation exceeds ``SEASON_MIN_CORRELATION``.

    >>> t = np.arange(1500)
    >>> find_season(np.sin(2 * np.pi * t / 48) + 0.1 * np.random.default_rng(0).normal(size=1500))
    48
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    top = min(MAX_SEASON, n // 3)
    if top <= MIN_SEASON:
        return None
    detrended = x - np.polyval(np.polyfit(np.arange(n), x, 1), np.arange(n))
    detrended -= detrended.mean()
    power = float(detrended @ detrended)
    if power <= 0.0:
        return None
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(detrended, size)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), size)[:top + 2] / power
    acf *= n / (n - np.arange(acf.shape[0]))  # unbiased: long lags have fewer pairs
    lags = np.arange(MIN_SEASON, top + 1)
    peaks = lags[(acf[lags] >= acf[lags - 1]) & (acf[lags] >= acf[lags + 1])]
    # A period's peak rises well above the trough before it; a slowly decaying
    # autocorrelation's noise wiggles do not.
    trough = np.minimum.accumulate(acf)
    peaks = peaks[acf[peaks] - trough[peaks] >= SEASON_PROMINENCE]
    if peaks.size == 0:
        return None
    # Multiples of the period peak about as high: take the first peak near the highest.
    best = int(peaks[np.argmax(acf[peaks] >= 0.9 * acf[peaks].max())])
    return best if acf[best] >= SEASON_MIN_CORRELATION else None


def _median_of_rows(Z: np.ndarray, around: np.ndarray) -> np.ndarray:
    """``np.median(Z[around], axis=1)``, shape (n, D): for three rows (``SEASON_SPAN`` 1) the
    middle one by comparisons, the same value as the median's, at a fraction of its cost (a
    sort per row: the season's context took most of the features' time)."""
    if around.shape[1] != 3:
        return np.median(Z[around], axis=1)
    a, b, c = Z[around[:, 0]], Z[around[:, 1]], Z[around[:, 2]]
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


class TemporalFeatures:
    """Causal temporal features of a stream of rows (see the module's docstring).

    Parameters
    ----------
    lags : int, default 1
        Previous rows in the context (0: none).
    season : int, "auto" or None, default None
        The row one period earlier in the context: a period in points; "auto": a day in points
        (from the first block's timestamps), or without timestamps the first block's own
        period (:func:`find_season`; none if it shows none); or None.  Until the row one
        period back exists, the first row stands in for it.
    volatility : bool, default True
        Add the log mean absolute change over the last ``window`` rows to the target.
    window : int, default 10
    calendar : bool, default False
        Add time of day and of week (cos, sin) to the context; needs timestamps.

    Attributes
    ----------
    season_ : int or None
        The period in use (after "auto" has decided; None while it has not).
    stale_ : ndarray of shape (n,) of bool
        Which rows of the last :meth:`transform` follow a gap in time (more than
        ``GAP_STEPS`` typical steps and an hour of a day): their lag columns
        (:meth:`lag_columns`) are hours old and the score leaves them out.
    n_seen_ : int
        Rows transformed so far: the stream position of the next row.
    season_rows_ : ndarray of shape (n,) of int
        For each row of the last :meth:`transform`, the stream position (0 for the first row
        ever) of the row its season column is centred on; -1 while the stream is younger than
        a season, and for every row without a season.
    season_far_ : ndarray of shape (n,) of bool
        Which rows of the last :meth:`transform` have no row near a season (or up to
        ``SEASONS_BACK`` seasons) before them in time, after an outage of days: their season
        column is the nearest row however far, and the score leaves it out.
    """

    def __init__(self, *, lags: int = 1, season=None, volatility: bool = True,
                 window: int = 10, calendar: bool = False):
        # (bounded as emstreamd's configuration bounds them: a checkpoint's state comes back
        # through here, and a billion lags failed later, as a traceback)
        check_int(lags, "lags", 0, MAX_LAGS)
        if season not in (None, "auto"):
            try:
                check_int(season, "season", 1, MAX_PERIOD)
            except ValueError:
                raise ValueError(f'season must be a period from 1 to {MAX_PERIOD:.0e}, "auto" '
                                 f'or None, got {season!r}') from None
        check_int(window, "window", 2, MAX_WINDOW)
        self.lags, self.season = int(lags), season
        self.volatility = check_bool(volatility, "volatility")
        self.window, self.calendar = int(window), check_bool(calendar, "calendar")
        self.season_ = season if isinstance(season, (int, np.integer)) else None
        self._searching = season == "auto"
        self._history = None  # the last rows, shape (h, D)
        # With timestamps: the rows' clock (the running maximum of their times, so times that
        # step back or repeat still give a monotone axis), shape (h,), and the season's span
        # in seconds; None: the season counts rows.
        self._clock = None
        self._period = None
        self._start = None  # the first row's time
        # Whether the last row's time lay more than a gap before the clock (_step_back).
        self._behind = False
        self.stale_ = np.zeros(0, dtype=bool)
        self.season_rows_ = np.zeros(0, dtype=np.int64)
        self.season_far_ = np.zeros(0, dtype=bool)
        self._seen = 0
        self._floor = None  # smallest change the volatility resolves (half the data's grid)

    # ------------------------------------------------------------------ layout
    def n_features_out(self, d: int) -> int:
        return len(self.target_columns(d)) + len(self.context_columns(d))

    def target_columns(self, d: int) -> list:
        """Columns of the feature rows that are scored."""
        return list(range(d * (2 if self.volatility else 1)))

    def context_columns(self, d: int) -> list:
        """Columns of the feature rows the score is conditioned on."""
        start = len(self.target_columns(d))
        n = d * (self.lags + (1 if self._season_slot else 0)) + (4 if self.calendar else 0)
        return list(range(start, start + n))

    def lag_columns(self, d: int) -> list:
        """Columns of the feature rows that hold the previous rows."""
        start = len(self.target_columns(d))
        return list(range(start, start + d * self.lags))

    def season_columns(self, d: int) -> list:
        """Columns of the feature rows that hold the row a season before (none without one)."""
        if not self._season_slot:
            return []
        start = len(self.target_columns(d)) + d * self.lags
        return list(range(start, start + d))

    def feature_names(self, names) -> list:
        """Names of the feature rows' columns, from the names of the ``D`` values.

        >>> TemporalFeatures(lags=1, season=24, volatility=False).feature_names(["cpu"])
        ['cpu', 'cpu[t-1]', 'cpu[t-24]']
        """
        names = list(names)
        out = list(names)
        if self.volatility:
            out += [f"volatility({name})" for name in names]
        for lag in range(1, self.lags + 1):
            out += [f"{name}[t-{lag}]" for name in names]
        if self._season_slot:
            out += [f"{name}[t-{self.season_}]" for name in names]
        if self.calendar:
            out += ["cos(day)", "sin(day)", "cos(week)", "sin(week)"]
        return out

    @property
    def period_(self) -> float | None:
        """The season's span in seconds when it goes by the rows' times, else None."""
        return self._period

    @property
    def _season_slot(self) -> bool:
        # "auto" decides at the first block, before any feature row exists, so the rows keep
        # one shape for the life of the model.
        return self.season_ is not None

    @property
    def n_seen_(self) -> int:
        """Rows transformed so far: the stream position of the next row."""
        return self._seen

    def depth(self) -> int:
        """Rows of history the features need (a season's context reaches this far back)."""
        depth = max(self.lags, self.window + 1)
        if self.season_ is not None:
            depth = max(depth, self._reach())
        return depth

    def _reach(self) -> int:
        """How many rows back the season's context may lie: ``season + SEASON_SPAN`` rows, or
        by time twice that (rows denser than the typical step for a whole season), so memory
        stays bounded whatever the times do."""
        reach = self.season_ + SEASON_SPAN
        return reach if self._period is None else 2 * reach

    def rows_to_decide(self, timed: bool) -> int:
        """Rows the first block should hold (0 once rows were seen, or with nothing to
        decide): the season is decided from the first block alone, so that feature rows keep
        one shape, and from too few rows it is decided wrongly for good.  ``timed``: whether
        the rows will come with times."""
        if self._history is not None or self.season is None:
            return 0
        if timed:
            return DECIDE_ROWS_TIMED
        return DECIDE_ROWS if self.season == "auto" else 0

    @property
    def width(self) -> int | None:
        """The number of values a row of the stream holds (None before the first row)."""
        return None if self._history is None else self._history.shape[1]

    # ------------------------------------------------------------------ transform
    def transform(self, X, times=None) -> np.ndarray:
        """Feature rows of the next rows of the stream (and remember them).

        Parameters
        ----------
        X : ndarray of shape (n, D)
        times : ndarray of shape (n,), optional
            Seconds since the epoch (needed when ``calendar``).

        Returns
        -------
        ndarray of shape (n, n_features_out(D))
        """
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        if X.shape[0]:  # (checked before anything is remembered: a refused row changes nothing)
            X = check_array(X, n_features=self.width, estimator="TemporalFeatures")
        n, d = X.shape
        if times is not None:
            times = check_times(times, n)
        if self.calendar and times is None:
            raise ValueError("calendar features need the rows' timestamps")
        if n == 0:  # (nothing to remember; a first empty block fixed no width, and failed)
            return np.empty((0, self.n_features_out(d)))
        cut = self._step_back(times)
        if cut is not None:
            return self._transform_from_step_back(X, times, cut)
        return self._transform(X, times)

    def _transform(self, X: np.ndarray, times) -> np.ndarray:
        """:meth:`transform` of checked rows, no row of which brings the clock back."""
        n, d = X.shape
        if self._history is None:
            self._history = X[:1].copy() if n else np.empty((0, d))
            if n and times is not None:
                self._clock = times[:1].copy()
        if self._clock is not None and times is None and n:
            # Rows without times after rows with them (a restart with the time column off):
            # the season counts rows from here on.
            self._clock = self._period = self._start = None
        past = self._history
        if past.shape[1] != d:
            raise ValueError(f"rows have {d} features; the stream so far had {past.shape[1]}")
        if self._floor is None and n:
            # From the first row alone, so that it does not depend on how blocks are cut.
            first = X[0]
            self._floor = np.maximum(np.array([_decimal_step(v) for v in first]) / 2.0,
                                     1e-12 * (1.0 + np.abs(first)))
        h = past.shape[0]
        Z = np.concatenate([past, X]) if h else X
        clock = None
        if self._clock is not None:
            clock = np.maximum.accumulate(np.concatenate([self._clock, times]))
        columns = [X]
        if self.volatility:
            # Each window summed on its own (not as a difference of running sums), so the
            # value does not depend on where blocks were cut: a restart continues exactly.
            change = np.abs(np.diff(Z, axis=0, prepend=Z[:1]))
            padded = np.concatenate([np.zeros((self.window - 1, d)), change])
            windows = np.lib.stride_tricks.sliding_window_view(padded, self.window, axis=0)
            summed = windows[h:h + n].sum(axis=-1)
            count = np.minimum(np.arange(self._seen, self._seen + n) + 1, self.window)[:, None]
            columns.append(np.log(summed / count + self._floor))
        if self._searching:
            self._decide_season(Z, times)
        if self._clock is not None and self._period is None:
            self._time_season(times)
            if self._period is None:  # (no usable step: the season counts rows)
                clock = self._clock = None
        for lag in range(1, self.lags + 1):
            columns.append(Z[np.maximum(np.arange(h, h + n) - lag, 0)])
        self.stale_ = self._stale(clock, h, n)
        self.season_rows_ = np.full(n, -1, dtype=np.int64)
        self.season_far_ = np.zeros(n, dtype=bool)
        if self._season_slot:
            context, base, young = self._season_context(Z, h, n, clock)
            columns.append(context)
            # (Z's row j is the stream's row seen - h + j)
            self.season_rows_ = np.where(young, -1, base + (self._seen - h))
        if self.calendar:
            t = np.asarray(times, dtype=float)
            day, week = 2 * np.pi * (t % _DAY) / _DAY, 2 * np.pi * (t % _WEEK) / _WEEK
            columns.append(np.column_stack([np.cos(day), np.sin(day), np.cos(week),
                                            np.sin(week)]))
        self._seen += n
        depth = self.depth()
        self._history = Z[-depth:].copy()
        self._behind = False
        if clock is not None:
            self._clock = clock[-depth:].copy()
            if n and clock.shape[0] > 1:
                self._behind = bool(times[-1] < clock[-2] - self._gap())
        return np.hstack(columns)

    def _step_back(self, times) -> int | None:
        """The first of these rows that brings the clock back: the second of two rows in a
        row whose times lie more than a gap (:meth:`_gap`) before the clock (the running
        maximum of the times before each), or None.  (One such row alone is an odd time, a
        1970 among 2014's, and leaves the clock alone.)"""
        if times is None or self._clock is None or self._period is None or not len(times):
            return None
        before = np.maximum.accumulate(np.concatenate([self._clock[-1:], times]))[:-1]
        behind = times < before - self._gap()
        second = behind & np.concatenate([[self._behind], behind[:-1]])
        far = np.flatnonzero(second)
        return int(far[0]) if far.size else None

    def _transform_from_step_back(self, X, times, cut: int) -> np.ndarray:
        """:meth:`transform` of rows whose row ``cut`` brings the clock back (:meth:`_step_back`):
        the rows before it as usual; from it on, the clock of the rows remembered is capped at
        its time, and so on at each such row.  A time far ahead (one row dated 2099 in a 2014
        series, an epoch with fifty zeros) held the running maximum there for good: "a day
        ago" became the edge of the history and no outage was a gap again; the rows that come
        back to the stream's own time now bring the clock back with them (a time ahead that
        the next rows follow is an outage, and stays).  Causal, so the same however blocks are
        cut."""
        parts, start, n = [], 0, X.shape[0]
        while True:
            if cut:
                parts.append((self._transform(X[start:start + cut], times[start:start + cut]),
                              self.stale_, self.season_rows_, self.season_far_))
                start += cut
            if start >= n:
                break
            self._clock = np.minimum(self._clock, times[start])
            # (a first row far ahead set the start of time there: every later row was younger
            # than a season, and the season's context was off for good)
            self._start = min(self._start, float(times[start]))
            following = self._step_back(times[start:])  # (never its first row: at the clock)
            cut = n - start if following is None else following
        self.stale_ = np.concatenate([p[1] for p in parts])
        self.season_rows_ = np.concatenate([p[2] for p in parts])
        self.season_far_ = np.concatenate([p[3] for p in parts])
        return np.concatenate([p[0] for p in parts])

    def _stale(self, clock, h: int, n: int) -> np.ndarray:
        """Which of rows ``h .. h+n-1`` follow a gap (:meth:`_gap`): their previous rows are
        hours old, and say little about them."""
        if clock is None or not self.lags:
            return np.zeros(n, dtype=bool)
        pos = np.arange(h, h + n)
        return clock[pos] - clock[pos - 1] > self._gap()

    def _gap(self) -> float:
        """The shortest gap in time, in seconds (see ``GAP_STEPS``)."""
        return max(GAP_STEPS * self._period / self.season_, GAP_SHARE * self._period)

    def _season_context(self, Z: np.ndarray, h: int, n: int, clock=None) -> tuple:
        """Rows ``h .. h+n-1`` of ``Z``'s value one season earlier: the median of the
        ``2 SEASON_SPAN + 1`` rows around it (all before the row itself), so that one odd
        point does not make the same time a season later look odd as well.  ``clock`` (the
        rows' times, monotone): a season earlier in time, else in rows.  Also the row of
        ``Z`` each is centred on, and which rows are younger than a season, shapes (n,)."""
        pos = np.arange(h, h + n)
        # Until a season exists the first row stands in.  The warm-up's model then keeps a
        # component on that constant (AMZN tweets: weight 0.27 after 1,100 points, the season
        # column's spread at the resolution floor).  The row halfway back instead steadied the
        # NAB kit across seeds (59.2, 59.7, 60.4 against 63.1, 61.5, 57.2) but cost its
        # artificial daily series 27 points, so it stays.
        if clock is None:
            base = pos - np.minimum(self.season_, pos)  # (the first row, until a season exists)
            young = pos < self.season_
            oldest = np.zeros(n, dtype=np.intp)
        else:
            base, young, oldest = self._rows_a_period_before(clock, pos)
        if not SEASON_SPAN:
            return Z[base], base, young
        around = base[:, None] + np.arange(-SEASON_SPAN, SEASON_SPAN + 1)
        np.clip(around, oldest[:, None], np.maximum(pos - 1, 0)[:, None], out=around)
        around[young] = base[young, None]
        return _median_of_rows(Z, around), base, young

    def _rows_a_period_before(self, clock: np.ndarray, pos: np.ndarray) -> tuple:
        """For the rows at ``pos``: the row nearest in time to a period before each, never the
        row itself or a later one; if that time fell in a gap (no row within half a gap of
        it, :meth:`_gap`), the row nearest to two (up to ``SEASONS_BACK``) periods before,
        if one is that close (the day after an outage compares with the day before it, not
        with the outage's edge).  Also whether the stream is younger than a period there (the
        first row stands in, as without times) and the oldest row each may reach back to
        (:meth:`_reach` rows: the same whatever the blocks, so a restart continues
        exactly)."""
        oldest = np.maximum(pos - self._reach(), 0)
        last = np.maximum(pos - 1, 0)
        near = 0.5 * self._gap()
        target = clock[pos] - self._period
        young = target < self._start
        # Regular rows: the row a season of rows back lies exactly a period back, and is the
        # first at that time (what the search below finds; checked, not assumed).
        guess = pos - self.season_
        at = np.maximum(guess, 0)
        exact = (guess >= oldest) & (clock[at] == target) & (
            (at == 0) | (clock[np.maximum(at - 1, 0)] < target))
        base, off = guess, np.zeros(pos.shape[0])
        if not exact.all():
            rest = np.flatnonzero(~exact)
            base[rest], off[rest] = self._nearest(clock, target[rest], oldest[rest], last[rest])
        gap = np.flatnonzero(~young & (off > near))
        for periods in range(2, SEASONS_BACK + 1):
            if not gap.size:
                break
            earlier = target[gap] - (periods - 1) * self._period
            rows, off = self._nearest(clock, earlier, oldest[gap], last[gap])
            found = (off <= near) & (earlier >= self._start)
            base[gap[found]] = rows[found]
            gap = gap[~found]
        # (after an outage of more than SEASONS_BACK periods the nearest row is the outage's
        # edge, a day's context all one value: 68-211 nats of surprise for a day of rows)
        self.season_far_[gap] = True
        base[young] = oldest[young]
        return base, young, oldest

    @staticmethod
    def _nearest(clock: np.ndarray, target: np.ndarray, oldest: np.ndarray,
                 last: np.ndarray) -> tuple:
        """The row of ``clock`` nearest each ``target`` within ``oldest .. last``, and how far
        in time it lies from it."""
        after = np.searchsorted(clock, target, side="left")  # the first row at or after it
        before = np.clip(after - 1, oldest, last)
        after = np.clip(after, oldest, last)
        nearer = np.abs(clock[after] - target) < np.abs(target - clock[before])
        base = np.where(nearer, after, before)
        return base, np.abs(clock[base] - target)

    def _time_season(self, times: np.ndarray) -> None:
        """At the first block with times: the season's span in seconds (a day for "auto",
        else ``season`` typical steps), and where the stream's time starts."""
        step = typical_step(times)
        if self.season_ is None or step is None or not step > 0:
            return
        self._period = _DAY if self.season == "auto" else float(self.season_) * step
        self._start = float(times[0])

    def peek(self, X, times=None) -> np.ndarray:
        """:meth:`transform` without remembering ``X``: the features the next rows would get."""
        saved = (self._history, self._seen, self._searching, self.season_, self._floor,
                 self._clock, self._period, self._start, self.stale_, self.season_rows_,
                 self.season_far_, self._behind)
        try:
            return self.transform(X, times)
        finally:  # transform rebinds these attributes, never mutates them in place
            (self._history, self._seen, self._searching, self.season_, self._floor,
             self._clock, self._period, self._start, self.stale_, self.season_rows_,
             self.season_far_, self._behind) = saved

    def _decide_season(self, Z: np.ndarray, times) -> None:
        """At the first block: a day in points from the timestamps' typical step, else the
        first block's own period (none if it is too short to show one)."""
        self._searching = False
        step = None if times is None else typical_step(times)
        if step is not None:
            period = round(_DAY / step) if step > 0 else 0
            self.season_ = period if MIN_SEASON <= period <= MAX_SEASON else None
        else:
            self.season_ = find_season(Z[:, 0])

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """JSON-ready state (settings and the rows the next features need)."""
        return {"lags": self.lags, "season": self.season, "volatility": self.volatility,
                "window": self.window, "calendar": self.calendar, "season_": self.season_,
                "searching": self._searching, "seen": self._seen,
                "floor": None if self._floor is None else self._floor.tolist(),
                "history": None if self._history is None else self._history.tolist(),
                "clock": None if self._clock is None else self._clock.tolist(),
                "period": self._period, "start": self._start, "behind": self._behind}

    @classmethod
    def from_state(cls, state: dict) -> TemporalFeatures:
        """The features as :meth:`state` saved them (raises ValueError if malformed)."""
        try:
            tf = cls(lags=state["lags"], season=state["season"],
                     volatility=state["volatility"], window=state["window"],
                     calendar=state["calendar"])
            # The period in use: the configured one, or one "auto" found (or none).
            season = state["season_"]
            if tf.season == "auto" and season is not None:
                check_int(season, "season_", MIN_SEASON, MAX_SEASON)
            elif tf.season != "auto" and (season is None) != (tf.season is None):
                raise ValueError(f"season_ {season!r} is not the configured {tf.season!r}")
            elif season is not None:
                check_int(season, "season_", tf.season, tf.season)
            tf.season_ = season
            tf._searching = bool(state["searching"])
            tf._seen = check_int(state["seen"], "seen", 0, 2**53)
            if state["history"] is not None:
                tf._history = np.array(state["history"], dtype=float).reshape(
                    len(state["history"]), -1)
                tf._floor = np.array(state["floor"], dtype=float).reshape(-1)
                # (values within the parser's bound: beyond it a feature fails the model's
                # input check, as a traceback on resume)
                if not ((np.abs(tf._history) <= MAX_ABS_VALUE).all()
                        and (tf._floor <= MAX_ABS_VALUE).all() and (tf._floor > 0).all()
                        and tf._floor.shape[0] == tf._history.shape[1]):
                    raise ValueError("non-finite or misshapen history")
            # (A checkpoint from before the season went by time has none: it counts rows.)
            if state.get("clock") is not None:
                tf._clock = np.array(state["clock"], dtype=float).reshape(-1)
                tf._period, tf._start = float(state["period"]), float(state["start"])
                if tf._history is None or tf._clock.shape[0] != tf._history.shape[0] \
                        or not np.isfinite(tf._clock).all() or np.any(np.diff(tf._clock) < 0):
                    raise ValueError("clock not one finite, non-decreasing time per row")
                if not (tf._period > 0 and np.isfinite(tf._start)) or tf.season_ is None:
                    raise ValueError("season period or start out of range")
            # (a state from before the rule has none: its last row counts as on time)
            behind = state.get("behind", False)
            if not isinstance(behind, bool):
                raise ValueError(f"behind must be true or false, got {behind!r}")
            tf._behind = behind
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            # (OverflowError: an integer beyond any float, 10**400, edited in)
            raise ValueError(f"temporal features state: {exc}") from None
        return tf
