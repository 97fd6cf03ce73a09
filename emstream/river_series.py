"""A river anomaly detector for time series: the daemon's pipeline behind ``score_one``.

:class:`SeriesDetector` runs :class:`emstream.series.SeriesMonitor` (temporal features, online
EM with drift refits, the conditional surprise, the calibrated score) one point at a time, as
river's anomaly detectors are called: ``score_one(x)`` then ``learn_one(x)`` for each point in
time order.  ``score_one`` is a score in [0, 1] (0.9999: meant for one ordinary point in
10,000; ``benchmarks/bench_calibration.py`` measures how close it comes), computed as
emstreamd computes a point's score, but with no alert's hold (the daemon halves the scores of
the points an alert holds, a day of them; here every score is given as computed); it is pure
(it changes nothing).  A score is the larger of the point's own and the recent level's (the
mean surprise of the last ``level_window`` points, :mod:`emstream.level`), so one wild value
also raises the scores of the ``level_window - 1`` points after it, which the daemon's hold
hides: a caller that alerts on each score above a threshold gets up to ``level_window`` alerts
for one spike (``level_window=0``: each score is the point's alone, and slow excursions go
unseen).

Each learned point is turned into its feature row at once (the features need every point, in
order); feature rows are learned ``batch_size`` at a time.  The feature set is fixed, in sorted
order, by the first point: the features that hold a number there (NaN too: a reading that
failed); points are learned from the first one at which each has had a usable value (or,
after ``batch_size`` points, without the features that never had one).  Later new features
are ignored, and a missing one, or one that is not a usable number (text, NaN, infinite,
beyond ±1e100: a reading that failed), takes its last value.  Numbers of any kind count
(``numpy.float32``, ``numpy.int64``, ``numpy.bool_``).  Timestamps are not part of river's
``x``, so the season is a period in points (``season``), not found from the clock.

Example
-------
>>> import math
>>> from emstream.river_series import SeriesDetector
>>> detector = SeriesDetector(season=50, seed=0)
>>> for t in range(3000):
...     x = {"v": math.sin(2 * math.pi * t / 50) + 0.01 * ((t * 7919) % 13 - 6)}
...     _ = detector.score_one(x)
...     detector.learn_one(x)
>>> normal = detector.score_one({"v": math.sin(2 * math.pi * 3000 / 50)})
>>> spike = detector.score_one({"v": 0.9})   # in range, but not one step after 0
>>> normal < 0.99 < 0.9999 < spike
True
"""

from __future__ import annotations

import numpy as np
from river import base

from .calibration import MAX_HISTORY, MIN_HISTORY, TailCalibrator
from .drift import DriftMonitor
from .episodes import Episodes
from .level import LEVEL_WINDOW, MAX_LEVEL_WINDOW
from .mixture import GaussianMixture
from .river import _feature_order, check_model_params
from .series import REG_COVAR_SHARE, SeriesMonitor
from .temporal import MAX_PERIOD, TemporalFeatures
from .validation import MAX_ABS_VALUE, check_int, is_number

__all__ = ["SeriesDetector"]


def _usable(value) -> bool:
    """A number the features can take: any real number within ±1e100 (NaN is not)."""
    if not is_number(value):
        return False
    try:
        value = float(value)
    except (OverflowError, ValueError):  # (an integer beyond any float; Decimal('sNaN'))
        return False
    return -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE


class SeriesDetector(base.AnomalyDetector):
    """Calibrated anomaly scores for a time series (see the module's docstring).

    Parameters
    ----------
    n_components : int, default 3
    lags : int, default 1
        Previous points in the context.
    season : int or None, default None
        A period in points: the point one period earlier joins the context.
    volatility : bool, default False
        Score the recent mean absolute change too (flags a flatline).
    calibration_window : int, default 1000
        Past surprises the score is calibrated against.
    level_window : int, default 12
        Points whose mean surprise without context is scored too (the recent level,
        :mod:`emstream.level`); 0: not.
    batch_size : int, default 100
        Points learned at a time.
    warmup_size : int, default 1000
    seed : int or None
    """

    def __init__(self, n_components: int = 3, lags: int = 1, season: int | None = None,
                 volatility: bool = False, calibration_window: int = 1000,
                 level_window: int = LEVEL_WINDOW, batch_size: int = 100,
                 warmup_size: int = 1000, seed: int | None = None):
        self.n_components = n_components
        self.lags = lags
        self.season = season
        self.volatility = volatility
        self.calibration_window = calibration_window
        self.level_window = level_window
        # (checked here, as the other adapters do: None or "a" failed at the first learn_one;
        # the windows' errors named the calibrator's "size" and the level's "window")
        check_int(batch_size, "batch_size", 1)
        check_int(calibration_window, "calibration_window", MIN_HISTORY, MAX_HISTORY)
        check_int(level_window, "level_window", 0, MAX_LEVEL_WINDOW)
        if season == "auto":
            # (accepted, it was decided from the first point alone, learn_one's block: never
            # a season, and not a word of it)
            raise ValueError('season must be a period in points or None: "auto" finds it from '
                             "a first block of rows (emstream.series.SeriesMonitor), which "
                             "learn_one has not")
        if season is not None:
            try:
                check_int(season, "season", 1, MAX_PERIOD)
            except ValueError:
                # (TemporalFeatures' message offered "auto", which is refused just above)
                raise ValueError(f"season must be a period from 1 to {MAX_PERIOD:.0e} points or "
                                 f"None, got {season!r}") from None
        self.batch_size = batch_size
        self.warmup_size = warmup_size
        self.seed = seed
        self._reset()
        # (n_components=0, warmup_size=0 or seed=-1 were taken, and refused at the
        # batch_size-th learn_one, the seed as random_state)
        check_model_params(self._series.monitor.model)

    @classmethod
    def _unit_test_params(cls):
        yield {"n_components": 2, "warmup_size": 20, "batch_size": 5, "seed": 1,
               "calibration_window": 50}

    def _reset(self) -> None:
        model = GaussianMixture(self.n_components, warmup_size=self.warmup_size,
                                random_state=self.seed)
        self._series = SeriesMonitor(
            DriftMonitor(model, anomaly_quantile=None),
            TemporalFeatures(lags=self.lags, season=self.season, volatility=self.volatility),
            TailCalibrator(self.calibration_window), Episodes(),
            reg_covar_share=REG_COVAR_SHARE, level_window=self.level_window)
        self._names = None  # the feature set (see _start)
        self._last = None  # each feature's last value (stands in for a missing one)
        self._first = {}  # until then: the numeric features of the first point, last values
        self._rows = []  # feature rows waiting to be learned

    @property
    def monitor(self) -> SeriesMonitor:
        """The underlying :class:`emstream.series.SeriesMonitor`."""
        return self._series

    def _row(self, x: dict) -> np.ndarray:
        last = self._last
        return np.array([[x[name] if _usable(x.get(name)) else last[i]
                          for i, name in enumerate(self._names)]], dtype=float)

    def learn_one(self, x: dict) -> None:
        if self._names is None and not self._start(x):
            return
        row = self._row(x)
        self._last = row[0].tolist()
        self._rows.append(self._series.features.transform(row)[0])
        if len(self._rows) >= self.batch_size:
            rows, self._rows = np.array(self._rows), []
            # (the rows themselves are the features' first columns: they set the units)
            self._series.take_units(rows[:, :len(self._names)])
            self._series.learn_rows(rows, self._context(), with_scores=False)

    def _start(self, x: dict) -> bool:
        """Fix the feature set: the features with a number in the first point (a failed
        reading, NaN, is still a number of that feature: taken as unusable, it left the
        feature out for good); points are learned once each has had a usable value, or,
        after ``batch_size`` points, without those that never had one."""
        if not self._first:
            # (None, JSON's null, is a failed reading too: left out, the feature was gone
            # for good when its first reading failed)
            numeric = [k for k, v in x.items() if is_number(v) or v is None]
            self._first = {"names": list(_feature_order(numeric)), "last": {}, "seen": 0}
            if not self._first["names"]:
                self._first = {}
                return False
        first = self._first
        first["seen"] += 1
        first["last"].update((k, float(x[k])) for k in first["names"] if _usable(x.get(k)))
        if len(first["last"]) < len(first["names"]) and first["seen"] < self.batch_size:
            return False
        names = tuple(k for k in first["names"] if k in first["last"])
        if not names:
            return False
        self._names, self._last = names, [first["last"][k] for k in names]
        self._first = {}
        return True

    def _context(self) -> list:
        return self._series.features.context_columns(len(self._names))

    def score_one(self, x: dict) -> float:
        if self._names is None or not self._series.model._is_fitted():
            return 0.0
        row = self._series.features.peek(self._row(x))
        surprise = self._series.conditional_surprise(row, self._context())
        score = float(self._series.calibrator.score(surprise, remember=False)[0])
        if self._series.level is not None:
            # The recent level runs through the points learned but not yet in a batch.
            waiting = self._rows[len(self._rows) - min(len(self._rows),
                                                       self._series.level.window - 1):]
            level = self._series.level_score(np.vstack(waiting + [row[0]]), self._context())
            score = max(score, level)
        return score
