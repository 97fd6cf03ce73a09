"""The recent level: a run of values at an unusual level, each ordinary given the one before.

The series monitor's main surprise is conditional, ``-log p(x | previous value, a season
ago)``: after a level shift the previous value predicts the new level at once, so the shift
surprises once, at the jump.  A slow excursion (a machine warming towards failure over hours,
a holiday's traffic a notch below every other day's) never jumps, and each of its points is
ordinary given the one before.  :class:`RecentLevel` scores what such runs share: the mean,
over the last ``window`` points, of the surprise of the values *without* their context
(``-log p(x)``, the mixture's marginal over the scored columns), calibrated by its own
:class:`~emstream.calibration.TailCalibrator`.  The series monitor's score is the larger of
the two calibrated scores.

The means of overlapping runs are far from independent: the tail their calibrator fits to
1,000 of them rests on a few runs, and over-flags below the threshold (on a seasonal AR(1)
stream 8.2x the nominal share of points at 0.999, 2.6x at 0.9999, against 1.6x and 1.9x
without the channel: ``benchmarks/bench_calibration.py``).  That extra sensitivity is what
finds slow excursions on the NAB kit: a history of one mean per block of ``window`` points
calibrates the level (0.8-1.3x on i.i.d. data), but then the kit scored as it did without it.

Each point's level surprise is taken under the model that scores it (before the point is
learned), and the last ``window - 1`` of them carry over from one mini-batch to the next (they
are state: a restart continues them exactly), so the mean is the same however the stream is
cut into blocks.

Example
-------
>>> import numpy as np
>>> from emstream.gaussian import MixtureParams
>>> from emstream.level import RecentLevel
>>> params = MixtureParams.from_covariances([1.0], [[0.0]], [[[1.0]]], "full")
>>> level = RecentLevel(window=3)
>>> level.surprises(np.array([[0.0], [0.0], [3.0], [3.0]]), [0], params).round(2).tolist()
[0.92, 0.92, 2.42, 3.92]
>>> level.surprises(np.array([[3.0]]), [0], params).round(2).tolist()  # the run goes on
[5.42]
"""

from __future__ import annotations

import numpy as np

from . import em
from .calibration import TailCalibrator

# Points whose mean surprise is scored (NAB kit, mean standard score of the alerts over model
# seeds 0-4: without the channel 62.2, with it 64.7; a first version, seeds 0 and 1: windows of
# 3 points 61.1, 6 65.1, 9 65.2, 12 64.8, 18 61.4, 24 64.8, 48 63.2).
LEVEL_WINDOW = 12
# The longest window (a window is summed at every point: 10**7 took 3 s for 400 points, and
# 10**12 asked for terabytes).
MAX_LEVEL_WINDOW = 1000
# Windows up to this many points are summed slice by slice (fast for a few slices), longer
# ones in one call (a window of 10,000 took 10 ms per one-row batch slice by slice).
SHIFTED_SUM = 32
# A point the model gives no density at all counts as this surprise (finite, so a sum over
# the window stays finite and the state stays JSON).
MAX_SURPRISE = 1e300


class RecentLevel:
    """The mean surprise of the last ``window`` values without their context, calibrated.

    Parameters
    ----------
    window : int >= 1
        Points averaged.
    calibrator : TailCalibrator, optional
        Scores the means (default: ``TailCalibrator()``).
    """

    def __init__(self, window: int = LEVEL_WINDOW, calibrator: TailCalibrator | None = None):
        if (not isinstance(window, (int, np.integer)) or isinstance(window, bool)
                or not 1 <= window <= MAX_LEVEL_WINDOW):
            raise ValueError(f"window must be an integer from 1 to {MAX_LEVEL_WINDOW}, "
                             f"got {window!r}")
        self.window = int(window)
        self.calibrator = calibrator if calibrator is not None else TailCalibrator()
        self._tail = np.empty(0)  # the last window - 1 surprises (state)

    def _own(self, F: np.ndarray, target: list, params) -> np.ndarray:
        """``-log p(x)`` of each row's scored columns, shape (n,)."""
        columns = list(target)
        marginal = params if len(columns) == params.n_features else params.marginal(columns)
        surprise = -em.score_samples(F[:, columns], marginal)
        if not np.isfinite(surprise).all():  # (rare: checked first, a copy saved)
            surprise = np.nan_to_num(surprise, nan=MAX_SURPRISE, posinf=MAX_SURPRISE,
                                     neginf=-MAX_SURPRISE)
        return surprise

    def _means(self, surprise: np.ndarray, before: np.ndarray) -> np.ndarray:
        """The mean of each surprise and the ``window - 1`` before it (fewer at the stream's
        start), shape (n,).  Each is a sum of the same values in the same order however the
        stream was cut into blocks (a running total would differ in the last bits), so a
        resumed run scores exactly as an uninterrupted one."""
        w, n = self.window, surprise.shape[0]
        missing = w - 1 - before.shape[0]  # (> 0 only at the stream's start)
        run = np.concatenate([np.zeros(max(missing, 0)), before[max(-missing, 0):], surprise])
        if w <= SHIFTED_SUM:
            # (w shifted slices added in turn: the same order for every window, and ~3x
            # faster than summing a sliding window view, whose cost per call does not grow
            # with w)
            sums = run[:n].copy()
            for shift in range(1, w):
                sums += run[shift:shift + n]
        else:
            sums = np.lib.stride_tricks.sliding_window_view(run, w).sum(axis=1)
        counts = np.minimum(before.shape[0] + np.arange(1, surprise.shape[0] + 1), w)
        return sums / counts

    def surprises(self, F: np.ndarray, target: list, params) -> np.ndarray:
        """The level surprise of each row of ``F`` (n, F) under ``params`` (its ``target``
        columns scored), shape (n,); the rows join the run."""
        own = self._own(F, target, params)
        means = self._means(own, self._tail)
        run = np.concatenate([self._tail, own])
        self._tail = run[max(0, run.shape[0] - (self.window - 1)):]
        return means

    def peek(self, F: np.ndarray, target: list, params) -> np.ndarray:
        """:meth:`surprises` without the rows joining the run (for a score that changes
        nothing)."""
        return self._means(self._own(F, target, params), self._tail)

    def score(self, means: np.ndarray, flag_level: float | None = None) -> np.ndarray:
        """Calibrated scores of level surprises, shape (n,) (not remembered)."""
        return self.calibrator.score(means, remember=False, flag_level=flag_level)

    def remember(self, means: np.ndarray) -> None:
        self.calibrator.remember(means)

    def rebase(self, rows: np.ndarray, target: list, params) -> None:
        """A new model: the history becomes its level surprises on recent rows (n, F)."""
        own = self._own(rows, target, params)
        self.calibrator.reset(self._means(own, np.empty(0)))

    def state(self) -> dict:
        return {"window": self.window, "tail": self._tail.tolist(),
                "calibrator": self.calibrator.state()}

    @classmethod
    def from_state(cls, state: dict, window: int) -> RecentLevel:
        """The channel as :meth:`state` saved it, with ``window`` as configured now (a
        changed window keeps the run's last ``window - 1`` surprises); ValueError if
        malformed."""
        if not isinstance(state, dict):
            raise ValueError("level state must be a mapping")
        try:
            level = cls(window, TailCalibrator.from_state(state["calibrator"]))
            tail = np.asarray(state["tail"], dtype=float).reshape(-1)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"level state: {exc}") from None
        if not np.isfinite(tail).all():
            raise ValueError("level state: tail not finite")
        level._tail = tail[max(0, tail.shape[0] - (level.window - 1)):]
        return level
