"""One alert per episode: the first point of an anomalous episode is flagged, not all of them.

An anomaly rarely comes alone: a failing machine, a traffic surge or a level shift makes many
unusual points in a row.  :class:`Episodes` flags the first point whose score reaches the
threshold and then holds: for the next ``hold`` points the scores are multiplied by ``damp``
(so a threshold on the published score also yields one alert per episode) and nothing is
flagged.  Each alert is reported once (its index in the stream), so an operator sees one
event per episode, not a flood of point anomalies.

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

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EpisodeUpdate:
    """Published scores (n,), flags (n,), the indices (in this update) of new alerts, and
    which points belong to an episode (flagged or held), shape (n,)."""

    scores: np.ndarray
    flags: np.ndarray
    alerts: np.ndarray
    held: np.ndarray


class Episodes:
    """Flags the first point of each episode of high scores (see the module's docstring).

    Parameters
    ----------
    threshold : float in (0, 1], default 0.99995
        A point whose score reaches it raises an alert (outside a held episode).
    hold : int, default 300
        Points after an alert that belong to its episode.
    damp : float in [0, 1), default 0.5
        Factor on the scores of held points.
    """

    def __init__(self, *, threshold: float = 0.99995, hold: int = 300, damp: float = 0.5):
        if not (isinstance(threshold, (int, float)) and 0.0 < threshold <= 1.0):
            raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}")
        if not isinstance(hold, (int, np.integer)) or isinstance(hold, bool) or hold < 0:
            raise ValueError(f"hold must be an integer >= 0, got {hold!r}")
        if not (isinstance(damp, (int, float)) and 0.0 <= damp < 1.0):
            raise ValueError(f"damp must lie in [0, 1), got {damp!r}")
        self.threshold, self.hold, self.damp = float(threshold), int(hold), float(damp)
        self.remaining = 0  # held points left in the current episode
        self.strong_episode = False  # the current episode was opened by a strong point

    def update(self, scores, strong=None) -> EpisodeUpdate:
        """Published scores, flags and alerts for the next points of the stream.

        ``strong`` (n,) marks points that escalate: inside an episode opened by an ordinary
        point, a strong one that reaches the threshold opens a new episode (the daemon passes
        the points beyond the outlier gate, so a wild value is never swallowed by a mild alert
        just before it, while a level shift's run of gated points stays one alert).
        """
        scores = np.asarray(scores, dtype=float).reshape(-1)
        n = scores.shape[0]
        out = scores.copy()
        flags = np.zeros(n, dtype=bool)
        held_mask = np.zeros(n, dtype=bool)
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
            self.remaining -= held
            position = stop
            if position < n and self.remaining > 0:  # stopped at an escalation
                self.remaining = 0
                nxt = position
            else:
                later = int(np.searchsorted(highs, position))
                if later == highs.size:
                    break
                nxt = int(highs[later])
            flags[nxt] = held_mask[nxt] = True
            alerts.append(nxt)
            self.strong_episode = bool(strong[nxt])
            position = nxt + 1
            self.remaining = self.hold
        return EpisodeUpdate(out, flags, np.array(alerts, dtype=np.int64), held_mask)

    def state(self) -> dict:
        return {"threshold": self.threshold, "hold": self.hold, "damp": self.damp,
                "remaining": self.remaining, "strong_episode": self.strong_episode}

    @classmethod
    def from_state(cls, state: dict) -> Episodes:
        """Episodes as :meth:`state` saved them (raises ValueError if malformed)."""
        try:
            episodes = cls(threshold=state["threshold"], hold=state["hold"], damp=state["damp"])
            remaining = state["remaining"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"episodes state: {exc}") from None
        if not isinstance(remaining, int) or isinstance(remaining, bool) or not (
                0 <= remaining <= episodes.hold):
            raise ValueError(f"episodes state: remaining {remaining!r} out of range")
        strong = state.get("strong_episode", False)
        if not isinstance(strong, bool):
            raise ValueError(f"episodes state: strong_episode {strong!r} is not a boolean")
        episodes.remaining, episodes.strong_episode = remaining, strong
        return episodes
