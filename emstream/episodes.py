"""One alert per episode: the first point of an anomalous episode is flagged, not all of them.

An anomaly rarely comes alone: a failing machine, a traffic surge or a level shift makes many
unusual points in a row.  :class:`Episodes` flags the first point whose score reaches the
threshold and then holds: for the next ``hold`` points (by default a day of the series' own
time) the scores are multiplied by ``damp`` (so a threshold on the published score also yields
one alert per episode) and nothing is flagged.  Each alert is reported once (its index in the
stream), so an operator sees one event per episode, not a flood of point anomalies.  If the
score is still high on the last point of the hold and on the very point after it, the same
episode goes on, held again without a new alert, and is marked ``lasting``: its points are the
stream's new normal (the series monitor lets them into the calibration history, which would
otherwise keep judging them by the old one for ever).

Example
-------
>>> import numpy as np
>>> from emstream.episodes import Episodes
>>> ep = Episodes(threshold=0.99, hold=3)
>>> out = ep.update(np.array([0.5, 0.995, 0.999, 0.999, 0.2, 0.999]))
>>> out.scores.tolist(), out.flags.astype(int).tolist(), out.alerts.tolist()
([0.5, 0.995, 0.4995, 0.4995, 0.1, 0.999], [0, 1, 0, 0, 0, 1], [1, 5])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DAY = "day"
# The anomaly threshold unless one is given (the daemon's is output.anomaly_threshold).
DEFAULT_THRESHOLD = 0.9999
# The hold without timestamps: a day of 5-minute data, the typical monitoring interval.
DEFAULT_HOLD = 300
# A day's hold in points stays within these bounds (a per-second series holds 1,000 points,
# not 86,400).  On NAB, a day's hold rather than 300 points raised the hourly ad-exchange
# series from 44.6 to 58.4, where 300 points (12 days) swallowed the next anomaly.
DAY_POINTS = (10, 1000)
# An episode opened by a score this high is kept out of the calibration history (an anomaly
# must not hide the next).  Not the threshold itself: with a threshold of 0.9 and no hold, the
# tenth of points flagged left the history without its upper tail, and more points were
# flagged the longer the stream ran (52% of i.i.d. points, 65% of the last 10,000).
RARE = DEFAULT_THRESHOLD


def _is_day(hold) -> bool:
    return isinstance(hold, str) and hold == DAY


def _check_hold(hold) -> None:
    if _is_day(hold):
        return
    if not isinstance(hold, (int, np.integer)) or isinstance(hold, bool) or hold < 0:
        raise ValueError(f'hold must be an integer >= 0 or "day", got {hold!r}')


@dataclass(frozen=True)
class EpisodeUpdate:
    """Published scores (n,), flags (n,), the indices (in this update) of new alerts, and
    which points belong to an episode (flagged or held), shape (n,), and which of those belong
    to it while it lasts (n,): past its first hold, the scores still high at the end of each
    hold and on the very point after it (no new alert: the same episode goes on); and which
    held points belong to an episode opened by a score of :data:`RARE` or more (n,): those a
    calibration keeps out of its history."""

    scores: np.ndarray
    flags: np.ndarray
    alerts: np.ndarray
    held: np.ndarray
    lasting: np.ndarray
    rare: np.ndarray


class Episodes:
    """Flags the first point of each episode of high scores (see the module's docstring).

    Parameters
    ----------
    threshold : float in (0, 1], default 0.9999
        A point whose score reaches it raises an alert (outside a held episode).
    hold : int or "day", default "day"
        Points after an alert that belong to its episode; "day": a day of the series' own
        time, in points (:meth:`set_time_step`; :data:`DEFAULT_HOLD` points until a time step
        is known, and for series without timestamps).
    damp : float in [0, 1), default 0.5
        Factor on the scores of held points.

    Attributes
    ----------
    hold_points : int
        The hold in effect, in points.
    """

    def __init__(self, *, threshold: float = DEFAULT_THRESHOLD, hold=DAY, damp: float = 0.5):
        if not (isinstance(threshold, (int, float)) and 0.0 < threshold <= 1.0):
            raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}")
        _check_hold(hold)
        if not (isinstance(damp, (int, float)) and 0.0 <= damp < 1.0):
            raise ValueError(f"damp must lie in [0, 1), got {damp!r}")
        self.threshold, self.damp = float(threshold), float(damp)
        self.hold = DAY if _is_day(hold) else int(hold)
        self.time_step = None  # the series' typical time step (seconds), once known
        self.remaining = 0  # held points left in the current episode
        self.strong_episode = False  # the current episode was opened by a strong point
        self.lasting = False  # the current episode has outlasted its first hold
        self.rare = True  # the current episode was opened by a score of RARE or more
        self.edge = False  # the last update ended exactly where an episode's hold ran out

    @property
    def hold_points(self) -> int:
        if not _is_day(self.hold):
            return self.hold
        if self.time_step is None:
            return DEFAULT_HOLD
        low, high = DAY_POINTS
        # (bounded before rounding: a time step of 1e-320 s makes a day infinitely many points)
        return int(round(min(max(86400.0 / self.time_step, low), high)))

    def set_hold(self, hold) -> None:
        """A new hold (points or "day"), e.g. from a reloaded configuration; an episode under
        way keeps at most the new hold's points."""
        _check_hold(hold)
        self.hold = DAY if _is_day(hold) else int(hold)
        self.remaining = min(self.remaining, self.hold_points)

    def set_time_step(self, seconds: float) -> None:
        """The series' typical time step, once (later calls change nothing): with
        ``hold="day"`` the hold becomes a day in points (within :data:`DAY_POINTS`)."""
        seconds = float(seconds)
        if self.time_step is None and math.isfinite(seconds) and seconds > 0:
            self.time_step = seconds
            self.remaining = min(self.remaining, self.hold_points)

    def update(self, scores, strong=None) -> EpisodeUpdate:
        """Published scores, flags and alerts for the next points of the stream.

        ``strong`` (n,) marks points that escalate: inside an episode opened by an ordinary
        point, a strong one that reaches the threshold opens a new episode (the daemon passes
        the points beyond the outlier gate, so a wild value is never swallowed by a mild alert
        just before it, while a level shift's run of gated points stays one alert).
        """
        scores = np.asarray(scores, dtype=float).reshape(-1)
        n = scores.shape[0]
        if self.remaining == 0:
            high = scores >= self.threshold
            if not high.any():  # the usual mini-batch: no episode under way, none starting
                self.edge = self.edge and n == 0
                none = np.zeros(n, dtype=bool)
                return EpisodeUpdate(scores.copy(), none, np.zeros(0, dtype=np.int64), none,
                                     none, none)
        out = scores.copy()
        flags = np.zeros(n, dtype=bool)
        held_mask = np.zeros(n, dtype=bool)
        lasting = np.zeros(n, dtype=bool)
        rare = np.zeros(n, dtype=bool)
        # Where an alert would continue the episode before it (its hold ran out just there,
        # on a high score).
        open_at = 0 if self.edge else None
        alerts = []
        high = scores >= self.threshold
        strong = (np.zeros(n, dtype=bool) if strong is None
                  else np.asarray(strong, dtype=bool).reshape(-1) & high)
        # Candidates as sorted indices: each step of the walk below is a binary search, not a
        # pass over the rest of the update (a 10,000-point mini-batch may hold several alerts).
        highs, strongs = np.flatnonzero(high), np.flatnonzero(strong)
        position = 0
        while True:
            held = min(self.remaining, n - position)
            stop = position + held
            if not self.strong_episode and strongs.size:  # an escalation may cut the hold short
                first = int(np.searchsorted(strongs, position))
                if first < strongs.size and strongs[first] < stop:
                    stop = int(strongs[first])
                    held = stop - position
            out[position:stop] *= self.damp
            held_mask[position:stop] = True
            lasting[position:stop] = self.lasting
            rare[position:stop] = self.rare
            self.remaining -= held
            if held and not self.remaining and high[stop - 1]:
                open_at = stop  # (the hold ran out with the scores still high)
            position = stop
            if position < n and self.remaining > 0:  # stopped at an escalation
                self.remaining = 0
                nxt = position
                open_at = None  # (a wild value, not the episode going on)
            else:
                later = int(np.searchsorted(highs, position))
                if later == highs.size:
                    break
                nxt = int(highs[later])
            if nxt == open_at:
                # Still high on the very point after the hold: the same episode goes on (a
                # level shift the model has not taken yet), held again, not alerted again.
                out[nxt] *= self.damp
                self.lasting = held_mask[nxt] = lasting[nxt] = True
                rare[nxt] = self.rare
            else:
                flags[nxt] = held_mask[nxt] = True
                alerts.append(nxt)
                self.strong_episode = bool(strong[nxt])
                self.lasting = False
                self.rare = rare[nxt] = bool(scores[nxt] >= RARE)
            open_at = None
            position = nxt + 1
            self.remaining = self.hold_points
        self.edge = open_at == n
        return EpisodeUpdate(out, flags, np.array(alerts, dtype=np.int64), held_mask, lasting,
                             rare)

    def state(self) -> dict:
        return {"threshold": self.threshold, "hold": self.hold, "time_step": self.time_step,
                "damp": self.damp, "remaining": self.remaining,
                "strong_episode": self.strong_episode, "lasting": self.lasting,
                "edge": self.edge, "rare": self.rare}

    @classmethod
    def from_state(cls, state: dict) -> Episodes:
        """Episodes as :meth:`state` saved them (raises ValueError if malformed)."""
        try:
            episodes = cls(threshold=state["threshold"], hold=state["hold"], damp=state["damp"])
            remaining = state["remaining"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"episodes state: {exc}") from None
        step = state.get("time_step")
        if step is not None:
            # (an integer beyond any float, 10**400 edited in, is no time step either: float()
            # raised OverflowError, a traceback on resume)
            if not isinstance(step, (int, float)) or isinstance(step, bool) or not (
                    -2.0 ** 1023 < step < 2.0 ** 1023 and math.isfinite(step) and step > 0):
                raise ValueError(f"episodes state: time_step {str(step)[:40]} is not a positive "
                                 "number")
            episodes.time_step = float(step)
        if not isinstance(remaining, int) or isinstance(remaining, bool) or not (
                0 <= remaining <= episodes.hold_points):
            raise ValueError(f"episodes state: remaining {remaining!r} out of range")
        # (rare: true in checkpoints from before it was kept, as every episode then was)
        flags = {name: state.get(name, name == "rare")
                 for name in ("strong_episode", "lasting", "edge", "rare")}
        for name, value in flags.items():
            if not isinstance(value, bool):
                raise ValueError(f"episodes state: {name} {value!r} is not a boolean")
        episodes.remaining = remaining
        episodes.strong_episode, episodes.lasting, episodes.edge, episodes.rare = flags.values()
        return episodes
