"""A surprise turned into a score in [0, 1] that means the same on every series.

A surprise (``-log p``, in nats) is not comparable across series: its level depends on the
data's units and dimension, its spread on the model.  :class:`TailCalibrator` scores each
surprise by how rare it is among the series' own recent surprises: ``score = 1 - p`` with
``p`` its upper-tail probability among the last ``size`` surprises, empirical up to their 90th
percentile and, beyond it, an exponential tail fitted to the excesses (peaks over threshold:
the shape of a light tail), so that a surprise beyond everything seen still gets a graded,
finite ``p``, though never below ``1 / (n + 1)²`` for a history of n (a short history cannot
vouch for a one-in-a-million rarity).  A score of 0.999 then means about "one point in a
thousand is this unusual", on any series; beyond that the tail is extrapolated from 1,000
points and errs towards more flags: up to ~2x the nominal rate on single-mode surprises and
~9x at 0.99995 on a well-separated 1-D mixture (``benchmarks/bench_calibration.py``).
Each point is scored against the surprises before it, in chunks: a short history doubles
chunk by chunk; a full one scores the rest of the caller's mini-batch at once (sorted once
per batch, not per point; a point's reference lags it by at most one mini-batch).  Nothing
resets it but a restart without its state: refits change the model, not the history.

Example
-------
>>> import numpy as np
>>> from emstream.calibration import TailCalibrator
>>> cal = TailCalibrator()
>>> scores = cal.score(np.random.default_rng(0).normal(size=3000))
>>> float(scores[:10].max()), round(float(np.mean(scores[1000:] > 0.99)), 3)
(0.0, 0.011)
>>> bool(cal.score(np.array([10.0]))[0] > 0.999999)
True
"""

from __future__ import annotations

import math

import numpy as np

# Fewer past surprises than this give no score (0: nothing is known to be unusual yet).
MIN_HISTORY = 10
# The most past surprises a history keeps (emstreamd's configuration has the same bound).
MAX_HISTORY = 10**8
# The empirical tail ends, and the exponential one starts, at this quantile.
TAIL_QUANTILE = 0.9
# Order statistics the bulk's ranks are interpolated between.
GRID = 129
# Smallest scale of the exponential tail, in nats.  A flat or quantised series gives a history
# of (nearly) identical surprises, whose excesses fit a tail of no width at all: a surprise a
# millionth of a nat above them then scored 0.999999, and a flat gauge alerted once a day for
# ever.  Surprises that close are one and the same to a model (a density 1.3x another is no
# anomaly); with this floor 0.9999 needs a surprise at least 1.7 nats (a density 5.6x lower)
# above the history's 90th percentile, which a value one grid step off a flat level clears by
# far (6 nats: the resolution floor's variance is step^2 / 12).
MIN_TAIL_SCALE = 0.25


# Surprises closer than this (nats) to a past one count as equal to it.  A flat series' model,
# moved by one blip it learned, gives its ordinary points a surprise 3e-7 nats above the
# history's (all alike): above every one of them, they scored 0.999001 for 1,300 points, until
# the history had refilled.  No model tells densities 1.0001x apart.
TIE_NATS = 1e-4


def tail_probability(surprise: np.ndarray, history: np.ndarray, *,
                     only_below: float | None = None) -> np.ndarray:
    """Upper-tail probability of each surprise among ``history`` (sorted), shape (n,).

    Below the tail's start the rank is interpolated between ``GRID`` evenly spaced order
    statistics (a binary search of a few cache lines instead of the whole history: 10x
    faster, and within one part in ``GRID`` of the exact rank, far from any threshold);
    within the empirical tail it is exact.  ``only_below`` (a probability): only the
    probabilities at most about that small are computed, the others come out as 1 (for a
    caller that only flags: one comparison per point instead of the whole computation).
    """
    surprise = surprise - TIE_NATS  # (see TIE_NATS: a tie is no rarity)
    n = history.shape[0]
    start = int(TAIL_QUANTILE * (n - 1))
    q = history[start]
    top = history[start:]
    seen = top[top > q] - q
    scale = _tail_scale(seen, q)
    # n past points cannot vouch for a rarity beyond about one in n²: the tail's
    # extrapolation is capped there (a short history cannot flag at 0.9999).
    floor = 1.0 / (n + 1.0) ** 2
    if only_below is not None and not only_below < 1.0 - TAIL_QUANTILE:
        # (a level within the empirical part: every probability is needed, or points between
        # the threshold's quantile and the tail's start scored 0 and went unflagged)
        only_below = None
    if only_below is None:
        ranks = np.linspace(0.0, start, min(GRID, start + 1))
        rank = _rank_below(surprise, history[ranks.astype(np.intp)], ranks)
        p = (n - rank + 1.0) / (n + 1.0)
        cut = q
    else:
        p = np.ones(surprise.shape[0])
        cut = _tail_cut(q, scale, only_below, n)
    # (indices, not a mask: the tail is a tenth of the points or fewer, and gathers by index
    # cost a fraction of a boolean mask's over the whole chunk)
    beyond = np.flatnonzero(surprise > cut)
    if beyond.size:
        s = surprise[beyond]
        empirical = (n - start - np.searchsorted(top, s, side="left") + 1.0) / (n + 1.0)
        tail = _exponential_tail(s - q, scale)
        p[beyond] = np.maximum(np.minimum(empirical, tail), floor)
    return p


def _rank_below(surprise: np.ndarray, grid: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """How many past surprises lie below each surprise, interpolated between the order
    statistics ``grid`` (sorted) at ``ranks``.  Ties count as not below: a surprise equal to
    many past ones (a flat series: every surprise the same) is as ordinary as they are, where
    ``np.interp`` would give it the rank of the last of them (a constant series scored 0.9)."""
    right = np.clip(np.searchsorted(grid, surprise, side="left"), 1, grid.shape[0] - 1)
    low, high = grid[right - 1], grid[right]
    width = high - low
    share = np.divide(surprise - low, width, out=np.zeros_like(surprise), where=width > 0)
    np.clip(share, 0.0, 1.0, out=share)
    return ranks[right - 1] + share * (ranks[right] - ranks[right - 1])


def _tail_cut(q: float, scale: float, level: float, n: int) -> float:
    """The surprise below which :func:`tail_probability` exceeds ``level`` for sure: where
    the exponential tail reaches it (less a margin for rounding), or ``q`` when the
    empirical part alone could go that low."""
    if not 0.0 < level < 1.0 - TAIL_QUANTILE or 1.0 / (n + 1.0) <= level:
        return q
    cut = q + scale * math.log((1.0 - TAIL_QUANTILE) / level)
    return cut - 1e-9 * (abs(cut) + scale)


def _tail_scale(seen: np.ndarray, q: float) -> float:
    """Mean excess over ``q`` of the ``seen`` excesses, at least :data:`MIN_TAIL_SCALE`."""
    return max(float(np.add.reduce(seen)) / seen.size if seen.size else 0.0, MIN_TAIL_SCALE)


def _exponential_tail(excess: np.ndarray, scale: float) -> np.ndarray:
    """``P(surprise > q + excess)`` from an exponential fit to the excesses over q whose mean
    is ``scale`` (the peaks-over-threshold tail of a light-tailed surprise: a Gaussian
    component's is exactly that).  A generalised Pareto fit (heavier tails allowed) scored 5
    NAB points lower: it let a misfitting model's ordinary surprises hide real anomalies."""
    return (1.0 - TAIL_QUANTILE) * np.exp(-excess / scale)


class TailCalibrator:
    """Scores surprises by their rarity among the last ``size`` (see the module's docstring).

    Parameters
    ----------
    size : int, default 1000
        Past surprises kept.
    """

    def __init__(self, size: int = 1000):
        if (not isinstance(size, (int, np.integer)) or isinstance(size, bool)
                or not MIN_HISTORY <= size <= MAX_HISTORY):
            raise ValueError(f"size must be an integer from {MIN_HISTORY} to {MAX_HISTORY:.0e}, "
                             f"got {size!r}")
        self.size = int(size)
        self._history = np.empty(0)

    def next_chunk(self, n: int) -> int:
        """How many of ``n`` waiting points to score against the current history."""
        have = self._history.shape[0]
        if have >= self.size:  # a full history scores the rest of the mini-batch at once
            return n
        return min(n, max(MIN_HISTORY, have))

    def score(self, surprise, *, remember: bool = True,
              flag_level: float | None = None) -> np.ndarray:
        """Score of each surprise, shape (n,), in [0, 1]; then remember them (unless not).

        Non-finite surprises (a point the model gives zero density) score 1 and are never
        kept.  With ``remember=False`` the caller scores one chunk (:meth:`next_chunk`) and
        then keeps what it wants with :meth:`remember` (the series monitor keeps anomalous
        episodes out, so that they do not thicken the tail the next ones are judged by).
        ``flag_level``: only scores that may reach it are computed, the others come out as 0
        (for a caller that only flags at that threshold, e.g. a daemon without per-point
        output: most points then cost one comparison).
        """
        surprise = np.asarray(surprise, dtype=float).reshape(-1)
        out = np.zeros(surprise.shape[0])
        start = 0
        while start < surprise.shape[0]:
            stop = start + (self.next_chunk(surprise.shape[0] - start) if remember
                            else surprise.shape[0] - start)
            chunk = surprise[start:stop]
            finite = np.isfinite(chunk)
            every = bool(finite.all())
            if self._history.shape[0] >= MIN_HISTORY:
                p = tail_probability(chunk if every else np.where(finite, chunk, 0.0),
                                     np.sort(self._history),
                                     only_below=None if flag_level is None else 1.0 - flag_level)
                out[start:stop] = 1.0 - p if every else np.where(finite, 1.0 - p, 1.0)
            else:
                out[start:stop] = np.where(finite, 0.0, 1.0)
            if remember:
                self.remember(chunk)
            start = stop
        return out

    def reset(self, surprise) -> None:
        """Replace the history by these surprises (the last ``size`` finite ones)."""
        self._history = np.empty(0)
        self.remember(surprise)

    def remember(self, surprise) -> None:
        """Add surprises to the history (non-finite ones are dropped)."""
        surprise = np.asarray(surprise, dtype=float).reshape(-1)
        self._history = np.concatenate([self._history,
                                        surprise[np.isfinite(surprise)]])[-self.size:]

    def state(self) -> dict:
        return {"size": self.size, "history": self._history.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> TailCalibrator:
        """The calibrator as :meth:`state` saved it (raises ValueError if malformed)."""
        try:
            cal = cls(state["size"])
            history = np.asarray(state["history"], dtype=float).reshape(-1)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            # (OverflowError: a JSON integer beyond any float, in an edited checkpoint)
            raise ValueError(f"calibrator state: {exc}") from None
        if history.shape[0] > cal.size or not np.isfinite(history).all():
            raise ValueError("calibrator state: history too long or not finite")
        cal._history = history
        return cal
