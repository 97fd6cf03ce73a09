"""Monitoring a time series: features, the mixture, a calibrated score and one alert per episode.

:class:`SeriesMonitor` is what emstreamd runs per stream, and what a library user calls to
score a series point by point.  For each mini-batch of rows it

1. turns the rows into temporal feature rows (:class:`~emstream.temporal.TemporalFeatures`:
   the row, its volatility, the previous row, the row a season ago, the calendar);
2. scores and learns them with a :class:`~emstream.drift.DriftMonitor` (online EM, drift
   alarms and refits: the same core as everything else);
3. takes the *conditional* surprise ``-log p(target | context) = -log p(features) +
   log p(context)``, the context's marginal being the same mixture's sub-blocks (an in-range
   spike is unlikely given the previous point; a level shift is surprising once, at the jump,
   and then the new level is predicted by the previous point at once); a context column that
   says nothing is left out (the marginal over the rest): the previous row after a gap in
   time, and the row a season ago when it belonged to an alerted episode (else the same
   time a day after a flatline alerted again);
4. calibrates it into a score in [0, 1] (:class:`~emstream.calibration.TailCalibrator`),
   takes the larger of that and the calibrated recent level (:class:`~emstream.level.
   RecentLevel`: the mean surprise of the last few values without their context, so that a
   slow excursion, each of whose points is ordinary given the one before, adds up), and
   flags the first point of each episode above the threshold
   (:class:`~emstream.episodes.Episodes`); the surprises of an episode's points, and of
   points beyond the outlier gate, stay out of the calibration history (an anomaly must not
   make the next one look ordinary); when a fit replaces the model (the warm-up's refits,
   upkeep, a drift refit) the history is re-scored under the new model on the recent
   learned rows, so the score keeps its meaning across refits.

Without features (``features=None``) the score calibrates the plain surprise ``-log p(x)``.
With ``reg_covar_share`` the series' first rows set the model's ``reg_covar`` (a share of
their variance), so the score does not depend on the data's units.

Example
-------
>>> import numpy as np
>>> from emstream import GaussianMixture
>>> from emstream.drift import DriftMonitor
>>> from emstream.series import SeriesMonitor
>>> from emstream.temporal import TemporalFeatures
>>> t = np.arange(6000)
>>> x = np.sin(2 * np.pi * t / 100) + 0.05 * np.random.default_rng(0).normal(size=t.size)
>>> x[4500] += 0.8  # a spike inside the normal range
>>> series = SeriesMonitor(DriftMonitor(GaussianMixture(3, random_state=0)),
...                        TemporalFeatures(season=100))
>>> for start in range(0, t.size, 500):
...     update = series.update(x[start:start + 500, None])
...     if start == 4500:
...         print(update.anomaly[0], float(update.score[0]) > 0.99999)
True True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import em
from .calibration import MIN_HISTORY, TailCalibrator
from .drift import DriftMonitor
from .episodes import EpisodeUpdate, Episodes
from .level import LEVEL_WINDOW, RecentLevel
from .resolution import grid_step, variance_floor
from .temporal import TemporalFeatures
from .timestamps import typical_step
from .validation import check_array, check_times

# The share of the variance of a series' first rows that becomes its reg_covar by default
# (emstreamd's model.reg_covar: auto, the river SeriesDetector), so that the same readings in
# any units get the same model and scores.  (NAB kit: 1e-3 62.6, 1e-2 62.1, 1e-1 60.1,
# 1e-6 60.0, with a first version of the core's re-seeding rule.)
REG_COVAR_SHARE = 1e-3

# How many times the robust variance of the first rows ((IQR / 1.349)², a normal's variance
# from its quartiles) their variance may be before it is taken for a glitch's and capped
# there.  One sentinel (1e7 among readings of 50 ± 20) made the variance 1e12 and every later
# point alike; a series' own tails stay under it (the NAB kit's first rows: at most 25, on
# tweet counts).
UNITS_TAIL_RATIO = 100.0


def _units_spread(X: np.ndarray, spread: np.ndarray) -> float:
    """The smallest variance of the columns of ``X`` (n, D) that vary (``spread``, their
    variances), each capped at ``UNITS_TAIL_RATIO`` times its quartiles' variance where those
    differ: a wild value among the first rows sets no units (where half the rows or more are
    one value the quartiles say nothing, and the variance stands)."""
    q1, q3 = np.percentile(X, [25, 75], axis=0)
    robust = ((q3 - q1) / 1.349) ** 2
    capped = np.where(robust > 0, np.minimum(spread, UNITS_TAIL_RATIO * robust), spread)
    return float(capped[spread > 0].min())


def units_reg_covar(X: np.ndarray, share: float) -> tuple:
    """``(reg_covar, settled)`` from a stream's first rows ``X`` (n, D): ``share`` of the
    variance of the columns that vary (:func:`_units_spread`), settled; while none varies, the
    share of the variance its last printed decimal stands for, not settled (None if that is 0
    too, or with fewer than two finite rows), so that the same readings in any units get the
    same model.

    >>> units_reg_covar(np.array([[1e-7], [3e-7], [2e-7]]), 1e-3)
    (6.666666666666666e-18, True)
    >>> units_reg_covar(np.array([[5.0], [5.0]]), 1e-3)  # (a flat start: its last decimal)
    (8.333333333333333e-05, False)
    """
    finite = X[np.isfinite(X).all(axis=1)]
    # (a column varies if it holds two values: the variance of one value repeated is its
    # rounding, 1.8e-40 for 1,000 rows of 5e-5 and 0 for 100, so a step after a flat start
    # was flagged or not by how the rows were cut into blocks)
    if finite.shape[0] < 2:
        return None, False
    varies = finite.max(axis=0) > finite.min(axis=0)
    spread = np.where(varies, finite.var(axis=0), 0.0)
    if not (spread > 0).any():
        # A flat start says nothing of the spread (its level is none: a share of it could
        # blind the model to all that follows), but its printed precision is in its units:
        # until the rows vary, the share of the variance its last decimal stands for (the
        # given 1e-6 swamped a step from 5e-5 to 6e-5 after a flat start, which 5 to 6 and
        # 0.05 to 0.06 alerted).
        flat = float(share * variance_floor(grid_step(finite)).min())
        return (flat if flat > 0.0 else None), False
    return float(share * _units_spread(finite, spread)), True


@dataclass(frozen=True)
class SeriesUpdate:
    """What :meth:`SeriesMonitor.update` saw in one mini-batch (None-valued while no model).

    Attributes
    ----------
    log_prob : ndarray (n,) or None
        ``log p(features)`` under the model before the update.
    surprise : ndarray (n,) or None
        The conditional surprise ``-log p(target | context)``.
    score : ndarray (n,) or None
        Calibrated score in [0, 1] (damped inside an alerted episode).
    anomaly : ndarray (n,) of bool
        The first point of each episode whose score reached the threshold (the provisional
        models of the warm-up included).
    resp : ndarray (n, K) or None
    gated : ndarray (n,) of bool
        Points beyond the outlier gate (scored, not learned).
    events : list of dict
        The drift monitor's events, and an ``{"event": "anomaly", "index": i, "score": s}``
        per alert (``index`` within this batch).
    rows : ndarray (n, F)
        The rows the model learned from (the feature rows, or the input rows).
    """

    log_prob: np.ndarray | None
    surprise: np.ndarray | None
    score: np.ndarray | None
    anomaly: np.ndarray
    resp: np.ndarray | None
    gated: np.ndarray
    events: list = field(default_factory=list)
    rows: np.ndarray | None = None


@dataclass(frozen=True)
class Echoes:
    """Where a block of feature rows stands: ``first`` the stream position of its first row,
    ``rows`` (n,) the position each row's season column is centred on (-1: none),
    ``columns`` the season columns, ``depth`` how many rows back a season may reach, ``far``
    (n,) which rows have no row near a season before them (after an outage of days)."""

    first: int
    rows: np.ndarray
    columns: list
    depth: int
    far: np.ndarray | None = None


def _conditional_surprise(F: np.ndarray, context: list, params, dropped=()) -> np.ndarray:
    """``-log p(target | context)`` of feature rows ``F`` (n, F) under ``params``, with the
    columns ``dropped`` left out of both (the mixture's marginal over the rest): after an
    outage the row before is hours old, and scoring against it alerted at every resumption of
    a daily series, while filling it in with the value a day before misled series without a
    daily shape."""
    dropped = set(dropped)
    kept = [c for c in range(F.shape[1]) if c not in dropped]
    given = [c for c in context if c not in dropped]
    surprise = -em.score_samples(F[:, kept], params.marginal(kept) if dropped else params)
    if given:
        _given_context(surprise, F, given, params, params.marginal(given), kept)
    return surprise


def _given_context(surprise, F, context: list, params, marginal, kept=None) -> None:
    """``surprise += log p(context)`` in place: ``-log p(features)`` becomes ``-log p(target |
    context)``.  A context beyond the float range (the row after a spike of 1e60 in a series
    of spread 1e-100) tells nothing a model can use, and inf - inf is NaN: such a row is
    scored on its target columns (those of ``kept``, all by default, not in the context)."""
    log_context = em.score_samples(F[:, context], marginal)
    beyond = np.isneginf(log_context)
    if not beyond.any():
        surprise += log_context
        return
    np.add(surprise, log_context, out=surprise, where=~beyond)  # (no inf - inf warned)
    target = [c for c in (range(F.shape[1]) if kept is None else kept) if c not in context]
    surprise[beyond] = -em.score_samples(F[beyond][:, target], params.marginal(target))


def _without_season(surprise, F, rows, context: list, params, echo: Echoes, stale,
                    stale_columns) -> None:
    """Score feature rows ``rows`` of ``F`` without their season columns (``echo.columns``),
    and without their lag columns too where ``stale``; in place in ``surprise``."""
    if not rows.size:
        return
    old = stale[rows] if stale is not None else np.zeros(rows.shape[0], dtype=bool)
    for also_stale in (False, True):
        mine = rows[old == also_stale]
        if mine.size:
            dropped = list(echo.columns) + (list(stale_columns) if also_stale else [])
            surprise[mine] = _conditional_surprise(F[mine], context, params, dropped)


def _targets(F: np.ndarray, context: list) -> list:
    """The scored columns of feature rows ``F``: those not in the context."""
    return [c for c in range(F.shape[1]) if c not in set(context)]


class SeriesMonitor:
    """Scores a stream point by point (see the module's docstring).

    Parameters
    ----------
    monitor : DriftMonitor
        Over the model that learns the feature rows.
    features : TemporalFeatures or None
        None: the rows themselves are modelled and scored.
    calibrator : TailCalibrator, optional
    episodes : Episodes, optional
    reg_covar_share : float, optional
        Let the series' own units set the model's ``reg_covar``: at the first rows that vary
        (the first block, unless it is flat) it becomes this share of their smallest positive
        column variance (while they are flat, this share of the variance their last printed
        decimal stands for, ``step² / 12``), so that the same readings in bytes or in gigabytes get the same model
        and the same scores.  (An absolute 1e-6 swamped readings of the order of 1e-4: NAB's
        series with the decimal point moved five places left scored 23.6 instead of 63.1.)
        None: ``reg_covar`` as the model has it.
    level_window : int or None, default 12
        Points whose mean surprise without context (:class:`~emstream.level.RecentLevel`) is
        scored too, with features (a context) only; None or 0: not.
    """

    def __init__(self, monitor: DriftMonitor, features: TemporalFeatures | None = None,
                 calibrator: TailCalibrator | None = None, episodes: Episodes | None = None,
                 reg_covar_share: float | None = None, level_window: int | None = LEVEL_WINDOW):
        self.monitor = monitor
        self.features = features
        self.calibrator = calibrator if calibrator is not None else TailCalibrator()
        self.episodes = episodes if episodes is not None else Episodes()
        if reg_covar_share is not None and not 0.0 <= reg_covar_share < np.inf:
            raise ValueError(f"reg_covar_share must be >= 0, got {reg_covar_share!r}")
        self.reg_covar_share = reg_covar_share
        # Whether the first rows are still to set reg_covar (state: a restart continues).
        self._units_pending = reg_covar_share is not None
        # Runs [first, end) of stream positions that belonged to an alerted episode, as far
        # back as a season's context reaches (state).
        self._held = []
        self.level_window = level_window
        self.level = None
        if level_window and features is not None:
            self.level = RecentLevel(level_window, TailCalibrator(self.calibrator.size))

    @property
    def model(self):
        return self.monitor.model

    def feature_rows(self, X, times=None) -> np.ndarray:
        """The rows the model learns (the features, or ``X`` itself); advances the features."""
        if self.features is None:
            return X
        return self.features.transform(X, times)

    def update(self, X, times=None, *, with_resp: bool = False,
               with_scores: bool = True) -> SeriesUpdate:
        """Score the rows ``X`` (n, D) (with their ``times`` (n,), seconds), then learn them.

        ``with_scores=False``: only the flags and alerts are wanted; with a threshold above
        0.9 the scores below 0.9 are then not computed (they come out as 0); the flags, alerts
        and calibration are the same.

        Returns
        -------
        SeriesUpdate
        """
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        if X.shape[0]:
            # Checked before anything is remembered: a refused row (NaN, beyond 1e100, another
            # width) left the features' history (and their floor) poisoned, and every later
            # block was refused too.
            X = check_array(X, n_features=self._width(), estimator="SeriesMonitor")
        if times is not None:  # (as the rows: a refused first block set the units, the clock)
            times = check_times(times, X.shape[0])
        self.take_units(X)
        if times is not None and self.episodes.time_step is None:
            step = typical_step(times)  # (the first block's, as the features' season)
            if step is not None:
                self.episodes.set_time_step(step)
        first = None if self.features is None else self.features.n_seen_
        F = self.feature_rows(X, times)
        if self.features is None:
            return self.learn_rows(F, [], with_resp=with_resp, with_scores=with_scores)
        d = X.shape[1]
        echo = None
        if self.features.season_columns(d):
            echo = Echoes(first, self.features.season_rows_, self.features.season_columns(d),
                          self.features.depth(), self.features.season_far_)
        return self.learn_rows(F, self.features.context_columns(d), with_resp=with_resp,
                               with_scores=with_scores, stale=self.features.stale_,
                               stale_columns=self.features.lag_columns(d), echo=echo)

    def _width(self) -> int | None:
        """The number of values a row holds, once rows were learned (None before)."""
        if self.features is not None:
            return self.features.width
        model = self.monitor.model
        if model._is_fitted():
            return model.n_features_in_
        learner = model.__dict__.get("_online")  # (the warm-up's rows so far)
        return None if learner is None else learner.n_features

    def take_units(self, X: np.ndarray) -> None:
        """Set the model's ``reg_covar`` from the first rows ``X`` (n, D) that vary
        (``reg_covar_share``; until then, and after, nothing).  :meth:`update` calls it; a
        caller that turns rows into features itself (:meth:`learn_rows`) calls it with the
        rows before it learns their features."""
        if not (self._units_pending and X.shape[0]):
            return
        reg_covar, settled = units_reg_covar(X, self.reg_covar_share)
        if reg_covar is not None:
            self.monitor.model.set_params(reg_covar=reg_covar)
        if settled:
            self._units_pending = False

    def conditional_surprise(self, F, context: list) -> np.ndarray | None:
        """``-log p(target | context)`` of feature rows ``F`` (n, F) under the current model,
        without learning them (None before the first model)."""
        model = self.monitor.model
        if not model._is_fitted():
            return None
        return _conditional_surprise(F, context, model._learner().iterate)

    def level_score(self, F, context: list) -> float | None:
        """The calibrated recent level of the last of feature rows ``F`` (n, F): rows not
        learned yet, in order, the one to score last; None without the channel or a model.
        Changes nothing."""
        model = self.monitor.model
        if self.level is None or not model._is_fitted():
            return None
        rows = F[max(0, F.shape[0] - self.level.window):]
        means = self.level.peek(rows, _targets(rows, context), model._learner().iterate)
        return float(self.level.score(means[-1:])[0])

    def learn_rows(self, F, context: list, *, with_resp: bool = False,
                   with_scores: bool = True, stale=None, stale_columns=(),
                   echo: Echoes | None = None) -> SeriesUpdate:
        """:meth:`update` for rows already turned into features (``context``: the columns the
        score is conditioned on; ``stale`` (n,) bool: rows whose ``stale_columns`` are too old
        to say anything, after a gap in time, and are left out of their score; ``echo``: where
        the rows stand in the stream and which rows their season columns come from, so that a
        season column taken from an alerted episode is left out of the score too)."""
        model = self.monitor.model
        # The parameters the update scores with (the learner's iterate), before it learns.
        params = model._learner().iterate if model._is_fitted() else None
        marginal = params.marginal(context) if context and params is not None else None
        generation = self._generation()
        update = self.monitor.update(F, with_resp=with_resp)
        n = F.shape[0]
        if update.log_prob is None:
            none = np.zeros(n, dtype=bool)
            return SeriesUpdate(None, None, None, none, None, update.gated, update.events, F)
        surprise = -update.log_prob
        if marginal is not None:
            _given_context(surprise, F, context, params, marginal)
        if stale is not None and params is not None and stale.any():
            surprise[stale] = _conditional_surprise(F[stale], context, params, stale_columns)
        if echo is not None and echo.far is not None and params is not None and echo.far.any():
            # No row near a season back (an outage of days): the season column is the
            # outage's edge, and says nothing of these rows.
            _without_season(surprise, F, np.flatnonzero(echo.far), context, params, echo,
                            stale, stale_columns)
        level = None
        if self.level is not None and params is not None:
            level = self.level.surprises(F, _targets(F, context), params)
        scores, flags = np.empty(n), np.zeros(n, dtype=bool)
        # Without per-point scores only the flags matter: scores below the threshold need not
        # be exact (most points then cost one comparison).
        flag_level = None if with_scores else self.episodes.threshold
        events = list(update.events)
        start = 0
        while start < n:
            # Chunk by chunk: points of an anomalous episode (and gated ones) stay out of the
            # calibration history, so one anomaly does not hide the next.
            stop = start + self.calibrator.next_chunk(n - start)
            if echo is not None and params is not None:
                self._unecho(surprise, F, context, params, echo, start, stop, stale,
                             stale_columns)
            chunk = self.calibrator.score(surprise[start:stop], remember=False,
                                          flag_level=flag_level)
            level_scores = None
            if level is not None:
                level_scores = self.level.score(level[start:stop], flag_level)
                chunk = np.maximum(chunk, level_scores)
            end = self._episode_end(chunk)
            if end is not None and end < chunk.shape[0]:
                # The rest is scored against a history that has taken this episode in, if it
                # lasted (else a level shift's second day alerted within the same batch).
                stop, chunk = start + end, chunk[:end]
            if echo is None or params is None:
                episode = self.episodes.update(chunk, update.gated[start:stop])
            else:
                def rescore(low, high, start=start, chunk=chunk, level_scores=level_scores):
                    rows = self._unecho(surprise, F, context, params, echo, low, high, stale,
                                        stale_columns)
                    if rows.size:
                        fresh = self.calibrator.score(surprise[rows], remember=False,
                                                      flag_level=flag_level)
                        if level_scores is not None:
                            fresh = np.maximum(fresh, level_scores[rows - start])
                        chunk[rows - start] = fresh
                episode = self._episodes_in_pieces(chunk, start, update.gated, echo, rescore)
            # (Except a lasting episode's, gated or not: the scores stayed up a whole hold
            # and more, the stream's new normal, which a history that never took it would
            # flag a hold after a hold for ever: a flat gauge alerted once a day.)
            # (Nor an episode opened below episodes.RARE, kept as ordinary: a low threshold
            # made the history lose its tail, and flags ran away.)
            kept_out = (episode.held & episode.rare) | update.gated[start:stop]
            normal = episode.lasting | ~kept_out
            self.calibrator.remember(surprise[start:stop][normal])
            if level is not None:
                self.level.remember(level[start:stop][normal])
            scores[start:stop] = episode.scores
            flags[start:stop] = episode.flags
            events += [{"event": "anomaly", "index": start + int(i),
                        "score": float(episode.scores[i])} for i in episode.alerts]
            start = stop
        if self._generation() != generation:
            self._rebase(context)
        return SeriesUpdate(update.log_prob, surprise, scores, flags, update.resp,
                            update.gated, events, F)

    def _hold_end(self, scores: np.ndarray) -> int | None:
        """Where in these scores the episode under way (or the first to open) ends its hold
        (None: no episode)."""
        episodes = self.episodes
        if episodes.remaining:
            return episodes.remaining
        high = np.flatnonzero(scores >= episodes.threshold)
        return int(high[0]) + 1 + episodes.hold_points if high.size else None

    def _episode_end(self, scores: np.ndarray) -> int | None:
        """Where in these scores the episode under way (or the first to open) ends its hold,
        if it may go on past it (high scores on both sides of its end: it would last); else
        None.  (Only then does the history need the episode's points before the rest is
        scored: cutting at every episode's end cost a third of a plain back-fill's time.)"""
        end = self._hold_end(scores)
        threshold = self.episodes.threshold
        if end is not None and end < scores.shape[0] and scores[end - 1] >= threshold \
                and scores[end] >= threshold:
            return end
        return None

    def _episodes_in_pieces(self, chunk, start: int, gated, echo: Echoes,
                            rescore) -> EpisodeUpdate:
        """The episodes of the scores ``chunk`` (the rows from ``start`` on), a hold at a
        time: after each alerted episode, ``rescore(low, high)`` re-scores in ``chunk`` the
        rows after it whose season came from it (:meth:`_unecho`), before they are judged.
        (Only those rows: cutting the chunk there would re-score all the rest, once per
        episode.)"""
        pieces, at, n = [], 0, chunk.shape[0]
        while at < n:
            end = self._hold_end(chunk[at:])
            end = n if end is None else min(at + end, n)
            piece = self.episodes.update(chunk[at:end], gated[start + at:start + end])
            self._remember_episodes(echo.first + start + at, piece.held, echo.depth)
            pieces.append((at, piece))
            if end < n and piece.held.any():
                rescore(start + end, start + n)
            at = end
        if len(pieces) == 1:
            return pieces[0][1]
        return EpisodeUpdate(*(np.concatenate([getattr(p, name) for _, p in pieces])
                               for name in ("scores", "flags")),
                             np.concatenate([at + p.alerts for at, p in pieces]),
                             *(np.concatenate([getattr(p, name) for _, p in pieces])
                               for name in ("held", "lasting", "rare")))

    def _unecho(self, surprise, F, context, params, echo: Echoes, start: int, stop: int,
                stale, stale_columns) -> np.ndarray:
        """Rows ``start .. stop`` whose season column comes from an alerted episode are scored
        without it (in place in ``surprise``; returns those rows): the same time a season
        after a flatline or a day of doubled swings is ordinary, and scored against the
        anomaly it looked odd (on a synthetic daily series, a false alert after each)."""
        source = echo.rows[start:stop]
        inside = np.zeros(source.shape[0], dtype=bool)
        for low, high in self._held:
            inside |= (source >= low) & (source < high)
        rows = start + np.flatnonzero(inside)
        _without_season(surprise, F, rows, context, params, echo, stale, stale_columns)
        return rows

    def _remember_episodes(self, first: int, held: np.ndarray, depth: int) -> None:
        """Keep the stream positions of the held rows (``held`` (n,) from stream position
        ``first`` on) as runs, the runs a season's context may still reach (``depth`` rows
        back) only."""
        if held.any():
            edges = np.flatnonzero(np.diff(np.r_[0, held.astype(np.int8), 0]))
            for low, high in zip(edges[::2].tolist(), edges[1::2].tolist()):
                if self._held and self._held[-1][1] == first + low:
                    self._held[-1][1] = first + high  # (an episode across chunks: one run)
                else:
                    self._held.append([first + low, first + high])
        horizon = first + held.shape[0] - depth - 1
        self._held = [run for run in self._held if run[1] > horizon]

    def _generation(self):
        """Which model the learner holds (changes when a fit replaces it)."""
        model = self.monitor.model
        if not model._is_fitted():
            return None
        learner = model._learner()
        return id(learner), learner.adoptions

    def _rebase(self, context: list) -> None:
        """A new model (the end of the warm-up, upkeep, a refit): its surprises have another
        level, so the calibration history becomes the new model's surprises on the recent
        learned rows, and the score keeps its meaning at once (the provisional models'
        surprises would otherwise skew it for a whole window).

        Not while the warm-up refreshes its provisional model: fitted on a few hundred rows,
        it finds those rows far less surprising than the next ones (on a clean daily series,
        a history of its own rows' surprises made two ordinary points of the first week score
        0.9999), so the history keeps the surprises that points got before they were learned.
        """
        learner = self.monitor.model._learner()
        if learner.warming_up:
            return
        rows = learner.window.recent()[-self.calibrator.size:]
        if rows.shape[0] < 2 * MIN_HISTORY:
            return
        self.calibrator.reset(self.conditional_surprise(rows, context))
        if self.level is not None:
            self.level.rebase(rows, _targets(rows, context), learner.iterate)

    def state(self) -> dict:
        """JSON-ready state of the features, calibrator and episodes (the monitor and the
        model are saved on their own)."""
        return {"features": None if self.features is None else self.features.state(),
                "calibrator": self.calibrator.state(), "episodes": self.episodes.state(),
                "units_pending": self._units_pending, "held": [list(r) for r in self._held],
                "level": None if self.level is None else self.level.state()}

    def restore(self, state: dict) -> SeriesMonitor:
        """Continue from :meth:`state`'s output (ValueError if it is malformed)."""
        if not isinstance(state, dict):
            raise ValueError("series state must be a mapping")
        try:
            features = state["features"]
            self.features = None if features is None else TemporalFeatures.from_state(features)
            self.calibrator = TailCalibrator.from_state(state["calibrator"])
            self.episodes = Episodes.from_state(state["episodes"])
            # (A state from before the rule has none: its model keeps its reg_covar.)
            pending = state.get("units_pending", False)
            if not isinstance(pending, bool):
                raise ValueError(f"units_pending must be true or false, got {pending!r}")
            self._units_pending = pending and self.reg_covar_share is not None
            held = state.get("held", [])
            if not isinstance(held, list) or not all(
                    isinstance(r, list) and len(r) == 2 and all(
                        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in r)
                    and r[0] < r[1] for r in held):
                raise ValueError("held must be a list of [first, end) stream positions")
            self._held = [list(r) for r in held]
            self.level = None
            if self.features is not None and self.level_window:
                # (A state from before the channel has none: it starts afresh.)
                saved = state.get("level")
                self.level = RecentLevel(self.level_window, TailCalibrator(
                    self.calibrator.size)) if saved is None else RecentLevel.from_state(
                    saved, self.level_window)
        except KeyError as exc:
            raise ValueError(f"series state lacks {exc}") from None
        model = self.monitor.model
        width = None if self.features is None else self.features.width
        if width is not None and model._is_fitted() \
                and self.features.n_features_out(width) != model.n_features_in_:
            # (features of another configuration, volatility turned on: the next update died
            # of an IndexError deep in the model's marginals)
            raise ValueError(f"series state: its features make "
                             f"{self.features.n_features_out(width)} columns of each row, the "
                             f"model has {model.n_features_in_}")
        return self
