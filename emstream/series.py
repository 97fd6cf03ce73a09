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
   and then the new level is predicted by the previous point at once);
4. calibrates it into a score in [0, 1] (:class:`~emstream.calibration.TailCalibrator`) and
   flags the first point of each episode above the threshold
   (:class:`~emstream.episodes.Episodes`); the surprises of an episode's points, and of
   points beyond the outlier gate, stay out of the calibration history (an anomaly must not
   make the next one look ordinary); when a fit replaces the model (the warm-up's refits,
   upkeep, a drift refit) the history is re-scored under the new model on the recent
   learned rows, so the score keeps its meaning across refits.

Without features (``features=None``) the score calibrates the plain surprise ``-log p(x)``.

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
from .episodes import Episodes
from .temporal import TemporalFeatures
from .timestamps import typical_step


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
        surprise += em.score_samples(F[:, given], params.marginal(given))
    return surprise


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
    """

    def __init__(self, monitor: DriftMonitor, features: TemporalFeatures | None = None,
                 calibrator: TailCalibrator | None = None, episodes: Episodes | None = None):
        self.monitor = monitor
        self.features = features
        self.calibrator = calibrator if calibrator is not None else TailCalibrator()
        self.episodes = episodes if episodes is not None else Episodes()

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
        if times is not None and self.episodes.time_step is None:
            step = typical_step(times)  # (the first block's, as the features' season)
            if step is not None:
                self.episodes.set_time_step(step)
        F = self.feature_rows(X, times)
        if self.features is None:
            return self.learn_rows(F, [], with_resp=with_resp, with_scores=with_scores)
        d = X.shape[1]
        return self.learn_rows(F, self.features.context_columns(d), with_resp=with_resp,
                               with_scores=with_scores, stale=self.features.stale_,
                               stale_columns=self.features.lag_columns(d))

    def conditional_surprise(self, F, context: list) -> np.ndarray | None:
        """``-log p(target | context)`` of feature rows ``F`` (n, F) under the current model,
        without learning them (None before the first model)."""
        model = self.monitor.model
        if not model._is_fitted():
            return None
        return _conditional_surprise(F, context, model._learner().iterate)

    def learn_rows(self, F, context: list, *, with_resp: bool = False,
                   with_scores: bool = True, stale=None, stale_columns=()) -> SeriesUpdate:
        """:meth:`update` for rows already turned into features (``context``: the columns the
        score is conditioned on; ``stale`` (n,) bool: rows whose ``stale_columns`` are too old
        to say anything, after a gap in time, and are left out of their score)."""
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
            surprise = surprise + em.score_samples(F[:, context], marginal)
        if stale is not None and params is not None and stale.any():
            surprise[stale] = _conditional_surprise(F[stale], context, params, stale_columns)
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
            chunk = self.calibrator.score(surprise[start:stop], remember=False,
                                          flag_level=flag_level)
            end = self._episode_end(chunk)
            if end is not None and end < chunk.shape[0]:
                # The rest is scored against a history that has taken this episode in, if it
                # lasted (else a level shift's second day alerted within the same batch).
                stop, chunk = start + end, chunk[:end]
            episode = self.episodes.update(chunk, update.gated[start:stop])
            # (Except a lasting episode's, gated or not: the scores stayed up a whole hold
            # and more, the stream's new normal, which a history that never took it would
            # flag a hold after a hold for ever: a flat gauge alerted once a day.)
            normal = episode.lasting | ~(episode.held | update.gated[start:stop])
            self.calibrator.remember(surprise[start:stop][normal])
            scores[start:stop] = episode.scores
            flags[start:stop] = episode.flags
            events += [{"event": "anomaly", "index": start + int(i),
                        "score": float(episode.scores[i])} for i in episode.alerts]
            start = stop
        if self._generation() != generation:
            self._rebase(context)
        return SeriesUpdate(update.log_prob, surprise, scores, flags, update.resp,
                            update.gated, events, F)

    def _episode_end(self, scores: np.ndarray) -> int | None:
        """Where in these scores the episode under way (or the first to open) ends its hold,
        if it may go on past it (high scores on both sides of its end: it would last); else
        None.  (Only then does the history need the episode's points before the rest is
        scored: cutting at every episode's end cost a third of a plain back-fill's time.)"""
        episodes = self.episodes
        if episodes.remaining:
            end = episodes.remaining
        else:
            high = np.flatnonzero(scores >= episodes.threshold)
            if not high.size:
                return None
            end = int(high[0]) + 1 + episodes.hold_points
        if end < scores.shape[0] and scores[end - 1] >= episodes.threshold \
                and scores[end] >= episodes.threshold:
            return end
        return None

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

    def state(self) -> dict:
        """JSON-ready state of the features, calibrator and episodes (the monitor and the
        model are saved on their own)."""
        return {"features": None if self.features is None else self.features.state(),
                "calibrator": self.calibrator.state(), "episodes": self.episodes.state()}

    def restore(self, state: dict) -> SeriesMonitor:
        """Continue from :meth:`state`'s output (ValueError if it is malformed)."""
        if not isinstance(state, dict):
            raise ValueError("series state must be a mapping")
        try:
            features = state["features"]
            self.features = None if features is None else TemporalFeatures.from_state(features)
            self.calibrator = TailCalibrator.from_state(state["calibrator"])
            self.episodes = Episodes.from_state(state["episodes"])
        except KeyError as exc:
            raise ValueError(f"series state lacks {exc}") from None
        return self
