"""Watching a stream for change: drift alarms on surprise, refits, anomaly thresholds.

:class:`DriftMonitor` wraps a :class:`~emstream.GaussianMixture` learning online.  For every
mini-batch it scores each point under the current model *before* learning it (the same E-step
that learns it), flags anomalies, feeds the per-point surprise ``-log p(x)`` to a drift
detector (river's Page–Hinkley test, run over arrays by :mod:`emstream.page_hinkley`, or any river
detector), and on an alarm collects the next ``refit_points`` points and refits on them by batch
EM (:meth:`GaussianMixture.refit`: warm and fresh starts, the better kept, labels matched, the
step-size schedule restarted).

Surprise fed to the detector is clipped at the surprise of a point at the outlier gate, so a
single wild value moves a Page–Hinkley test by less than its threshold, while a run of them (or
any lasting shift) raises an alarm within tens of points.

Example
-------
>>> import numpy as np
>>> from emstream import GaussianMixture
>>> from emstream.drift import DriftMonitor
>>> rng = np.random.default_rng(0)
>>> def stream(shift, n):
...     return (rng.choice([-4.0, 0.0, 5.0], n) + shift + rng.normal(size=n))[:, None]
>>> monitor = DriftMonitor(GaussianMixture(3, random_state=0))
>>> for _ in range(100):
...     _ = monitor.update(stream(0.0, 100))
>>> for _ in range(20):
...     _ = monitor.update(stream(3.0, 100))
>>> [event["event"] for event in monitor.events_]
['drift', 'refit']
>>> np.sort(monitor.model.means_.ravel()).round(0)
array([-1.,  3.,  8.])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from . import em
from .calibration import MIN_TAIL_SCALE, TAIL_QUANTILE
from .mixture import GaussianMixture
from .online import RECENT_POINTS, auto_gate
from .page_hinkley import PageHinkley
from .ring import RingBuffer
from .validation import check_float, check_int

DETECTORS = ("page-hinkley", "adwin")


def _positive_int(value, name):
    return check_int(value, name, 1)


def _int32(value, name):
    """ADWIN's counts are 32-bit in Rust (2**31 failed as "out of range integral type
    conversion attempted", naming no argument)."""
    return check_int(value, name, 1, 2**31 - 1)


# The most buckets ADWIN may keep per row (river's default is 5).
MAX_ADWIN_BUCKETS = 10_000

# What the named detectors' arguments must be, checked before a detector is built: a string
# failed only at the first block, an alpha above 1 or a huge delta overflowed the cumulative
# sums into a checkpoint that cannot be written, and river's ADWIN (Rust) panics on a zero
# clock or bucket count.
_DETECTOR_ARGUMENTS = {
    "page-hinkley": {
        "min_instances": _positive_int,
        "delta": lambda v, name: check_float(v, name, 0.0, 1e6),
        "threshold": lambda v, name: check_float(v, name, 0.0, 1e12, low_open=True),
        "alpha": lambda v, name: check_float(v, name, 0.0, 1.0, low_open=True),
        "mode": None},  # (PageHinkley names the modes itself)
    "adwin": {
        "delta": lambda v, name: check_float(v, name, 0.0, 1.0, low_open=True, high_open=True),
        # (max_buckets sizes ADWIN's bucket rows: 1e11 aborted the process in Rust's
        # allocator, no exception to catch; 10,000 runs as fast as the default 5)
        "clock": _int32,
        "max_buckets": lambda v, name: check_int(v, name, 1, MAX_ADWIN_BUCKETS),
        "min_window_length": _int32, "grace_period": _int32},
}


def _check_detector_params(detector: str, params: dict) -> None:
    """ValueError naming the first argument of ``detector`` that is unknown or out of range."""
    known = _DETECTOR_ARGUMENTS[detector]
    unknown = sorted(map(str, set(params) - set(known)))
    if unknown:
        raise ValueError(f"{detector} has no argument(s) {', '.join(unknown)}; it takes "
                         f"{', '.join(known)}")
    for name, value in params.items():
        if known[name] is not None:
            known[name](value, f"{detector} {name}")


# Page–Hinkley on per-point surprise in units of its robust spread under the current model
# (0.45 nats for a 1-D Gaussian component, so these equal the 0.25 and 50 nats that fired
# 18–60 points after a 3σ shift with no false alarm over millions of stationary points; on
# heavy-tailed real data the unit grows with the surprise's own spread).  Per point; scaled to
# blocks internally.  No fading (alpha=1): river's default 0.9999 keeps the cumulative sum
# within a few hundred of an equilibrium it wanders around, and gave a false alarm every
# ~40,000 stationary points.
PAGE_HINKLEY_DEFAULTS = {"delta": 0.5, "threshold": 100.0, "min_instances": 30,
                         "alpha": 1.0}
# The weights test alarms at this upper tail of its chi-square: it is looked at after every
# mini-batch, on a statistic that stays correlated over ~1,000 points, so over 10^6 stationary
# points it makes ~10^3 independent looks.
WEIGHT_ALARM_TAIL = 1e-9
# The weights test waits until the model has learned this many points since its last fit.
SETTLED_POINTS = 5 * RECENT_POINTS
# Smallest spread of the surprise used as the detector's unit (quantised data can have none).
_SPREAD_FLOOR = 0.1


@lru_cache(maxsize=64)
def _weight_alarm_level(degrees: int) -> float:
    from scipy.special import chdtri

    return float(chdtri(degrees, WEIGHT_ALARM_TAIL))


def quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation) by one single-rank ``np.partition``,
    which numpy runs with SIMD: 0.27 ms against 1.8 ms for 100,000 values here.

    The same index and interpolation arithmetic as numpy, so the same value for finite
    values; between a value and an infinity it gives the infinity where numpy gives NaN (a
    surprise is infinite for a point every component finds impossible).  ``values`` must not
    hold NaN.

    >>> quantile(np.arange(11.0), 0.95)
    9.5
    """
    n = values.size
    h = (n - 1) * q  # numpy's virtual index for the linear method
    below = min(max(math.floor(h), 0), n - 1)
    above = min(below + 1, n - 1)
    part = np.partition(values, above)
    high = part[above]
    low = np.maximum.reduce(part[:above]) if below < above else high
    t = h - math.floor(h)
    if t == 0.0 or below == above:
        return float(low)
    if math.isinf(high) or math.isinf(low):  # between a value and an infinity: the infinity
        return float(high if math.isinf(high) else low)
    diff = high - low
    return float(low + diff * t if t < 0.5 else high - diff * (1.0 - t))


@dataclass
class Update:
    """What :meth:`DriftMonitor.update` saw in one mini-batch.

    Attributes
    ----------
    log_prob : ndarray of shape (n,) or None
        ``log p(x)`` of each point under the model before the update; ``None`` during warm-up.
    resp : ndarray of shape (n, K) or None
        Responsibilities, if asked for (and not warming up).
    gated : ndarray of shape (n,) of bool
        Points beyond the model's outlier gate: scored, not learned.
    anomaly : ndarray of shape (n,) of bool
        Gated, or more surprising than ``anomaly_surprise`` or the recent-surprise quantile.
    events : list of dict
        Alarms and refits that happened in this batch (also appended to ``events_``).
    """

    log_prob: np.ndarray | None
    resp: np.ndarray | None
    gated: np.ndarray
    anomaly: np.ndarray
    events: list = field(default_factory=list)


# Bounds on restored state (see DriftMonitor.restore).
_MAX_SURPRISE = 1e150
_MAX_ROW_VALUE = 1e100
_MAX_COUNT = 2**53  # (a count beyond is no exact float)


class DriftMonitor:
    """Online EM with drift alarms, refits on change, and anomaly thresholds.

    Parameters
    ----------
    model : GaussianMixture
        Learns online (its ``outlier_gate`` decides which points are learned).
    detector : {"page-hinkley", "adwin"}, a river drift detector, or None, default="page-hinkley"
        Watches the surprise.  By name, ``detector_params`` are river's constructor arguments:
        "page-hinkley" is :class:`emstream.page_hinkley.PageHinkley` (river's test and alarms,
        fed a batch of blocks at a time), "adwin" is river's ``drift.ADWIN``.
        Page–Hinkley's arguments are per point, in units of the surprise's robust spread under
        the current model (defaults in :data:`PAGE_HINKLEY_DEFAULTS`, ``mode="both"``:
        surprise that rises or falls), and rescaled for blocks, so the test equals a per-point
        one checked every ``block`` points.  A river detector instance (cloned) sees block means as they
        are.  ``None``: no alarms.
    detector_params : dict, optional
    block : int, default=50
        Points averaged into one detector update: a river detector costs ~1.5 µs per update,
        which per point would be the daemon's largest cost.  An alarm comes at the end of a
        block (after a +3σ shift: 49 points in, for every seed tried).
    refit_points : int, default=500
        Points collected after an alarm and refitted on.
    anomaly_surprise : float or None, default=None
        Flag points with ``-log p(x)`` above this.
    anomaly_quantile : float in (0, 1) or None, default=0.001
        Flag the rarest fraction of points: those more surprising than this upper quantile of
        the last ``quantile_window`` surprises (active once ``10 / anomaly_quantile`` points,
        at least 1,000, have been scored since the last refit).
    quantile_window : int, default=100_000
        Also how often (in points, at least 1,000) the quantile is recomputed.
    memory : int or None, default=20_000
        A monitored stream must be able to forget: if the model has no ``step_floor`` of its
        own, the first update sets it to ``1 / memory``.  Without a floor, after 10⁶ points the
        model lags about 0.2σ behind means moving 3σ per 10⁶ points (1% of log-likelihood);
        with 1/20,000 the lag costs 0.2%, and on a stationary stream it costs < 3e-5.
        ``None`` leaves the model's schedule alone.

    Attributes
    ----------
    events_ : list of dict
        ``{"event": "drift", "point": i, "surprise": ...}`` and ``{"event": "refit", ...}``.
    n_points_ : int
        Points seen (warm-up included).
    n_alarms_ : int
    anomaly_threshold_ : float or None
        Current surprise quantile threshold.
    """

    def __init__(self, model: GaussianMixture, *, detector="page-hinkley", detector_params=None,
                 block=50, refit_points=500, anomaly_surprise=None, anomaly_quantile=0.001,
                 quantile_window=100_000, memory=20_000):
        if not isinstance(model, GaussianMixture):  # (else an AttributeError at the first update)
            raise TypeError(f"model must be an emstream.GaussianMixture, got "
                            f"{type(model).__name__}")
        self.model = model
        self.detector = detector
        self.detector_params = detector_params
        self.block = block
        self.refit_points = refit_points
        self.anomaly_surprise = anomaly_surprise
        self.anomaly_quantile = anomaly_quantile
        self.quantile_window = quantile_window
        self.memory = memory
        self._check()
        self.events_ = []
        self.n_points_ = 0
        self.n_alarms_ = 0
        self.anomaly_threshold_ = None
        self._detector = self._new_detector()
        self._carry = np.empty(0)  # clipped surprises not yet in a full block
        self._fed_sum, self._fed_count = 0.0, 0  # block means given to the detector since reset
        self._scale = None  # (centre, spread) of the surprise under the current model
        self._collected = None  # rows since an alarm, while collecting for a refit
        self._recent = RingBuffer(quantile_window)
        self._since_quantile = 0

    # ------------------------------------------------------------------ set-up
    def _check(self) -> None:
        if self.detector is not None and not (
                self.detector in DETECTORS
                or all(hasattr(self.detector, a) for a in ("update", "drift_detected", "clone"))):
            # (Any object with update() passed, then failed at its first block on clone().)
            raise ValueError(f"detector must be one of {DETECTORS}, a river drift detector "
                             "(update, drift_detected and clone, as river.base.DriftDetector) "
                             f"or None, got {self.detector!r}")
        if self.detector_params is not None and not isinstance(self.detector_params, dict):
            raise ValueError("detector_params must be a dict")
        if self.detector in DETECTORS:
            _check_detector_params(self.detector, self.detector_params or {})
        check_int(self.block, "block", 1)
        check_int(self.refit_points, "refit_points", 1)
        k = getattr(self.model, "n_components", 1)
        if isinstance(k, int) and self.refit_points < k:
            # (else the first drift refit raised mid-stream, after its batch was learned)
            raise ValueError(f"refit_points must be at least n_components ({k}), got "
                             f"{self.refit_points}")
        check_int(self.quantile_window, "quantile_window", 100)
        if self.memory is not None:
            check_int(self.memory, "memory", 2)
        if self.anomaly_surprise is not None:
            check_float(self.anomaly_surprise, "anomaly_surprise")
        if self.anomaly_quantile is not None:
            check_float(self.anomaly_quantile, "anomaly_quantile", 0.0, 1.0, low_open=True,
                        high_open=True)

    def _new_detector(self):
        if self.detector is None:
            return None
        params = dict(self.detector_params or {})
        if self.detector == "page-hinkley":
            params = {**PAGE_HINKLEY_DEFAULTS, "mode": "both", **params}
            b = self.block
            params["threshold"] = params["threshold"] / b
            params["alpha"] = params["alpha"] ** b
            params["min_instances"] = max(1, math.ceil(params["min_instances"] / b))
            return PageHinkley(**params)
        if self.detector == "adwin":
            from river import drift  # 1.9 s to import with scikit-learn installed: only here

            return drift.ADWIN(**params)
        return self.detector.clone()

    @property
    def collecting(self) -> bool:
        """Whether an alarm was raised and points are being collected for the refit."""
        return self._collected is not None

    # ------------------------------------------------------------------ the update
    def update(self, X, *, with_resp: bool = False) -> Update:
        """Score ``X`` under the current model, learn it, watch for drift, refit if due.

        Parameters
        ----------
        X : array-like of shape (n, n_features)
        with_resp : bool
            Also return the responsibilities (for per-point labels).

        Returns
        -------
        Update
        """
        model = self.model
        X = model._check_X(X, learning=True)
        n = X.shape[0]
        first = self.n_points_
        if self.memory is not None and model.step_floor is None:
            model.set_params(step_floor=1.0 / self.memory)
        # Alarms need a settled model: a provisional one is refitted as its buffer grows.
        learner = model._learner()
        settled = model._is_fitted() and not learner.warming_up
        cap = self._surprise_cap() if settled else None
        changes = learner.upkeep.replaced
        scored = model._partial_fit_checked(X, with_resp)
        self.n_points_ += n  # (after the checks of the model's settings: refused rows uncounted)
        if scored is None:
            none = np.zeros(n, dtype=bool)
            return Update(None, None, none, none)
        surprise = -scored.log_prob
        anomaly = scored.gated.copy()
        if self.anomaly_surprise is not None:
            anomaly |= surprise > self.anomaly_surprise
        if self.anomaly_threshold_ is not None:
            anomaly |= surprise > self.anomaly_threshold_
        events = []
        if not settled:
            return Update(scored.log_prob, scored.resp, scored.gated, anomaly, events)
        learner = model._learner()  # (a refit may have brought a new one)
        if learner.upkeep.replaced != changes:
            # The learner's upkeep replaced the model: its surprise has another baseline.
            events.append(dict(learner.upkeep.events[-1]))
            self._restart_watch()
            self.events_.extend(events)
            return Update(scored.log_prob, scored.resp, scored.gated, anomaly, events)
        self._remember_surprise(surprise)
        start = 0
        if self._collected is None and self._detector is not None:
            if self._scale is None:
                self._scale = self._surprise_scale(learner.window.recent())
            centre, spread = self._scale
            alarm = self._watch((np.minimum(surprise, cap) - centre) / spread)
            kind = "surprise"
            if alarm is None and self._weights_moved():
                alarm, kind = n - 1, "weights"
            if alarm is not None:
                events.append(self._alarm(first + alarm, surprise[max(0, alarm - 50):alarm + 1],
                                          kind))
                self._collected = []
                start = alarm + 1
        if self._collected is not None:
            self._collected.append(X[start:].copy())  # callers may reuse their array
            if sum(len(c) for c in self._collected) >= self.refit_points:
                events.append(self._refit(first + n))
        self.events_.extend(events)
        return Update(scored.log_prob, scored.resp, scored.gated, anomaly, events)

    def _surprise_cap(self) -> float:
        """The least surprise a point beyond the outlier gate can have under the current model."""
        learner = self.model._learner()
        gate = learner.gate()
        if gate is None:
            gate = auto_gate(learner.n_features)
        return 0.5 * gate - float(learner.iterate.log_normaliser.max())

    def _surprise_scale(self, rows: np.ndarray) -> tuple[float, float]:
        """Median and robust spread (interquartile range / 1.349) of the surprise of ``rows``
        under the current model: the detector's unit, so that its thresholds mean the same on a
        1-D Gaussian stream (spread 0.45 nats) and on a heavy-tailed 9-D one.

        The spread is at least half the standard deviation (of the surprise capped at the
        gate).  A Gaussian model's surprise (½χ²_D) never reaches that bound, but a stream
        whose points mostly repeat one value has an interquartile range of 0, and there the
        block means the detector sees vary with how many other points each block holds: in
        IQR units (at the floor) every block was a change (5 alarms in 4,250 shuffled rows of
        NAB's rogue_agent_key_updown, 85% of them the same row)."""
        if rows.shape[0] < 20:
            return 0.0, _SPREAD_FLOOR
        learner = self.model._learner()
        surprise = -em.score_samples(rows, learner.iterate)
        np.minimum(surprise, self._surprise_cap(), out=surprise)
        low, centre, high = np.quantile(surprise, [0.25, 0.5, 0.75])
        spread = max(float(high - low) / 1.349, 0.5 * float(np.std(surprise)))
        return float(centre), max(spread, _SPREAD_FLOOR)

    def _weights_moved(self) -> bool:
        """Whether recent points share themselves among the components unlike the weights say.

        The learner's ``recent_counts`` (responsibilities of the last ~1,000 points, each
        weighted by ``exp(-age / 1000)``) against the model's weights: with ``M`` their total,
        ``Σ_k (m_k - M π_k)² / (½ M π_k)`` is at most χ² with ``K - 1`` degrees of freedom
        while the weights hold (``½ M`` is the weighted count's variance scale); an alarm when
        it exceeds the ``WEIGHT_ALARM_TAIL`` quantile.  Mass that concentrates or spreads
        without moving the surprise is caught here.
        """
        learner = self.model._learner()
        counts = learner.recent_counts.tolist()  # (K numbers: Python floats beat numpy calls)
        total = sum(counts)
        if len(counts) < 2 or total < 0.5 * RECENT_POINTS or learner.t < SETTLED_POINTS:
            # Until the model has learned a few thousand points its weights move as fast as
            # the recent share does (and assignments flip as its components settle).
            return False
        statistic = 0.0
        for count, weight in zip(counts, learner.iterate.weights.tolist()):
            expected = total * max(weight, 1e-12)
            statistic += (count - expected) ** 2 / (0.5 * expected)
        return statistic > _weight_alarm_level(len(counts) - 1)

    def _watch(self, clipped: np.ndarray) -> int | None:
        """Feed block means to the detector; the index (in ``clipped``) of an alarm, if any."""
        values = np.concatenate([self._carry, clipped]) if self._carry.size else clipped
        offset = self._carry.size  # values[i] is clipped[i - offset]
        b = self.block
        full = values.size // b * b
        means = values[:full]
        if b > 1:  # (add.reduce / b: the same means as .mean(axis=1), without its wrapper)
            means = np.add.reduce(means.reshape(-1, b), axis=1) / b
        alarm = self._feed(means)
        if alarm is not None:
            self._carry = np.empty(0)
            self._fed_sum += float(means[:alarm + 1].sum())
            self._fed_count += alarm + 1
            return max(0, (alarm + 1) * b - 1 - offset)
        self._fed_sum += float(means.sum())
        self._fed_count += means.size
        self._carry = values[full:].copy()
        return None

    def _feed(self, means: np.ndarray) -> int | None:
        """Block means to the detector; the index of the first alarm, if any."""
        detector = self._detector
        if isinstance(detector, PageHinkley):
            return detector.update_many(means)
        for j, value in enumerate(means.tolist()):
            detector.update(value)
            if detector.drift_detected:
                return j
        return None

    def _alarm(self, point: int, recent: np.ndarray, kind: str = "surprise") -> dict:
        self.n_alarms_ += 1
        return {"event": "drift", "point": int(point), "change": kind,
                "detector": self.detector if isinstance(self.detector, str)
                else type(self.detector).__name__,
                "recent_surprise": float(np.mean(recent))}

    def _refit(self, point: int) -> dict:
        rows = np.concatenate(self._collected)
        self._collected = None
        model = self.model
        model.refit(rows)
        outcome = model.last_refit_
        if outcome["replaced"]:
            self._restart_watch(rows)
        else:  # the alarm is answered; the model and its surprise baseline stay
            self._detector = self._new_detector()
            self._carry = np.empty(0)
            self._fed_sum, self._fed_count = 0.0, 0
        return {"event": "refit", "reason": "drift", "point": int(point),
                "points": int(len(rows)), "replaced": outcome["replaced"],
                "candidate": outcome["candidate"], "iterations": outcome["iterations"],
                "log_likelihood_before": outcome["log_likelihood_before"],
                "log_likelihood_after": outcome["log_likelihood_after"]}

    def _restart_watch(self, rows: np.ndarray | None = None) -> None:
        """A new model: the detector, its unit and the surprise quantile start afresh (the
        unit from ``rows``, else from the learner's window)."""
        if rows is None:
            rows = self.model._learner().window.recent()
        self._scale = self._surprise_scale(rows)
        self._detector = self._new_detector()
        self._carry = np.empty(0)
        self._fed_sum, self._fed_count = 0.0, 0
        # Surprises of the old model say nothing about the new one's tail.
        self._recent.clear()
        self._since_quantile = 0
        self.anomaly_threshold_ = None

    # ------------------------------------------------------------------ anomaly quantile
    def _remember_surprise(self, surprise: np.ndarray) -> None:
        if self.anomaly_quantile is None:
            return
        size = self.quantile_window
        self._recent.extend(surprise)
        self._since_quantile += surprise.size
        needed = max(1000, math.ceil(10 / self.anomaly_quantile))
        # A quantile is O(window) (0.3 ms for 100,000): refresh it once per window of new
        # points, not every batch.
        due = self.anomaly_threshold_ is None or self._since_quantile >= max(1000, size)
        if len(self._recent) >= min(needed, size) and due:
            stored = self._recent.stored()
            # At least what an exponential tail of the calibrator's smallest scale beyond the
            # 90th percentile puts there: after a flat stretch every surprise was the same, and
            # a point a thousandth of a nat above it (a density 1.001x lower) was flagged.
            threshold = quantile(stored, 1 - self.anomaly_quantile)
            if self.anomaly_quantile < 1 - TAIL_QUANTILE:
                threshold = max(threshold, quantile(stored, TAIL_QUANTILE) + MIN_TAIL_SCALE
                                * math.log((1 - TAIL_QUANTILE) / self.anomaly_quantile))
            self.anomaly_threshold_ = threshold
            self._since_quantile = 0

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict:
        """What a restart needs, as JSON-compatible data (the model is saved on its own).

        Page–Hinkley's state is saved exactly.  River's detectors have no portable state, so
        for them (and for states saved before the exact one) the detector's *reference* is
        kept: the mean and count of the surprise it has seen since its last reset.
        :meth:`restore` replays that reference into a fresh detector, so a stream that changed
        while the process was down still raises an alarm after the restart.
        """
        exact = self._detector.state() if isinstance(self._detector, PageHinkley) else None
        return {"points": int(self.n_points_), "alarms": int(self.n_alarms_),
                "detector_state": exact,
                "reference_mean": self._fed_sum / self._fed_count if self._fed_count else None,
                "reference_blocks": int(self._fed_count),
                # (the sum itself: rebuilt as mean x blocks it came back an ulp off, and an
                # evicted key or a restart differed from an uninterrupted run in its state)
                "reference_sum": self._fed_sum,
                "collected": None if self._collected is None
                else np.concatenate(self._collected).tolist() if self._collected else [],
                "anomaly_threshold": self.anomaly_threshold_,
                "surprise_scale": None if self._scale is None else list(self._scale),
                "carry": self._carry.tolist()}

    def restore(self, state: dict) -> "DriftMonitor":
        """Continue from :meth:`state`'s output (``ValueError`` if it is malformed)."""
        try:
            points, alarms = int(state["points"]), int(state["alarms"])
            reference, blocks = state["reference_mean"], int(state["reference_blocks"])
            threshold, collected = state["anomaly_threshold"], state["collected"]
            scale = state.get("surprise_scale")
            if scale is not None:
                scale = (float(scale[0]), float(scale[1]))
                if not (math.isfinite(scale[0]) and math.isfinite(scale[1]) and scale[1] > 0):
                    raise ValueError(f"surprise_scale {scale}")
            if reference is not None:
                reference = float(reference)
            if threshold is not None:
                threshold = float(threshold)
            if collected is not None:
                collected = np.array(collected, dtype=float).reshape(-1, self._n_features())
            # The surprises of a block not yet full (absent from states saved before them: a
            # restart then began its next block afresh, and its alarms came a block late).
            carry = np.array(state.get("carry") or [], dtype=float).reshape(-1)
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise ValueError(f"drift monitor state is malformed ({exc})") from None
        # (counts beyond 2**53 or below 0 are forged: 10**400 blocks overflowed the reference's
        # sum, a traceback at restart, and 10**300 made it infinite, a checkpoint never
        # written again; -3 was written back into every later checkpoint)
        for name, count in (("points", points), ("alarms", alarms), ("reference_blocks", blocks)):
            if not 0 <= count <= _MAX_COUNT:
                raise ValueError(f"drift monitor state: {name} {str(count)[:40]} is not a count")
        if not all(np.isfinite(v) for v in (reference or 0.0, threshold or 0.0)) or (
                collected is not None and not np.all(np.isfinite(collected))):
            raise ValueError("drift monitor state holds NaN or infinity")
        # Surprises of rows the parser admits (|x| <= 1e100) stay far below these bounds; a
        # larger value is forged, and summed over the reference's blocks it would overflow
        # (a checkpoint the daemon could then never write again).
        if not np.isfinite(carry).all():
            raise ValueError("drift monitor state holds NaN or infinity")
        surprises = [abs(v) for v in (reference or 0.0, threshold or 0.0, *(scale or ()),
                                      float(np.abs(carry).max(initial=0.0)))]
        if max(surprises) > _MAX_SURPRISE or (collected is not None and collected.size
                                              and np.abs(collected).max() > _MAX_ROW_VALUE):
            raise ValueError("drift monitor state holds a value beyond any real surprise")
        self.n_points_, self.n_alarms_ = points, alarms
        self.anomaly_threshold_ = threshold
        self._scale = scale
        self._collected = None if collected is None else [collected]
        # (a block since made shorter: the surprises beyond its last full block are kept)
        self._carry = carry[carry.size // self.block * self.block:].copy()
        self._detector = self._new_detector()
        self._fed_sum, self._fed_count = 0.0, 0
        if reference is not None:
            self._fed_sum, self._fed_count = reference * blocks, blocks
            total = state.get("reference_sum")
            # (the bound before isfinite: an int of 400 digits is no float, OverflowError)
            if isinstance(total, (int, float)) and not isinstance(total, bool) and \
                    abs(total) <= _MAX_SURPRISE * max(blocks, 1) and math.isfinite(total):
                self._fed_sum = float(total)
        exact = state.get("detector_state")
        if isinstance(self._detector, PageHinkley) and exact is not None:
            try:
                self._detector.restore(exact)
                return self
            except ValueError:
                pass  # e.g. other detector parameters now: start from the reference instead
        if self._detector is not None and reference is not None:
            # Replaying at most 100,000 blocks costs ~0.15 s; the detector's mean is the same.
            self._fed_count = min(blocks, 100_000)
            self._fed_sum = reference * self._fed_count
            self._feed(np.full(self._fed_count, reference))
        return self

    def _n_features(self) -> int:
        return getattr(self.model, "n_features_in_", 1)
