"""The Page–Hinkley change test of river's ``drift.PageHinkley``, fed a whole array at a time.

River's detector takes one value per Python call (~1.5 µs each), and importing ``river.drift``
imports ``river.datasets``, which pulls in scikit-learn and ``scipy.stats`` when installed:
1.9 s of a daemon's start-up on this machine.  The test itself is a cumulative sum and a
running minimum, so it is written here over numpy arrays; river's own class stays the reference
it is checked against (same parameters, and the same alarm at the same value up to
floating-point rounding: the running mean and sums are accumulated in another order, which can
only matter when the statistic lands on the threshold to the last bit;
``tests/test_page_hinkley.py``), and ``benchmarks/bench_page_hinkley.py`` shows the ratio.

For each value ``x_t`` (``t`` counted since the last reset) with running mean ``m_t``::

    up_t   = alpha * up_{t-1}   + (x_t - m_t) - delta      alarm if up_t - min(up)     > threshold
    down_t = alpha * down_{t-1} + (x_t - m_t) + delta      alarm if max(down) - down_t > threshold

once ``t >= min_instances``; ``mode`` says which of the two tests count.  As in river, the
running maximum of ``down`` starts at -1, and the test starts afresh after an alarm.

Example
-------
>>> import numpy as np
>>> from emstream.page_hinkley import PageHinkley
>>> detector = PageHinkley(threshold=10.0, mode="up")
>>> values = np.r_[np.zeros(1000), np.ones(100)]
>>> detector.update_many(values)  # the index of the alarm
1010
>>> detector.drift_detected
True
"""

from __future__ import annotations

import math

import numpy as np

from .validation import check_float, check_int

MODES = ("up", "down", "both")
# Up to this many values a Python loop is cheaper than numpy's per-call overhead.
_FEW = 64


class PageHinkley:
    """Page–Hinkley test with river's parameters and semantics, updated by arrays.

    Parameters
    ----------
    min_instances : int, default=30
        Values seen (since the last reset) before an alarm may be raised.
    delta : float, default=0.005
        Magnitude of change tolerated.
    threshold : float, default=50.0
        Alarm level of the cumulative deviation.
    alpha : float, default=0.9999
        Fading factor of the cumulative sums (1 for none).
    mode : {"up", "down", "both"}, default="both"
        Increases, decreases or both.
    """

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0,
                 alpha: float = 1 - 0.0001, mode: str = "both"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        # A NaN or infinite level never alarms, silently; a negative one alarms at once.
        # (Zero is allowed: DriftMonitor scales user values per block, which can round there.)
        check_int(min_instances, "min_instances", 1)
        check_float(delta, "delta", 0.0)
        check_float(threshold, "threshold", 0.0)
        check_float(alpha, "alpha", 0.0, 1.0)
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        self._reset()

    def _reset(self) -> None:
        self.drift_detected = False
        self._n, self._total = 0, 0.0
        self._up, self._min_up = 0.0, float("inf")
        self._down, self._max_down = 0.0, -1.0

    def params(self) -> dict:
        """The constructor's arguments."""
        return {"min_instances": self.min_instances, "delta": self.delta,
                "threshold": self.threshold, "alpha": self.alpha, "mode": self.mode}

    def clone(self) -> "PageHinkley":
        """A fresh detector with the same parameters (as river's ``clone``)."""
        return PageHinkley(**self.params())

    @property
    def n(self) -> int:
        """Values seen since the last reset."""
        return self._n

    def update(self, x: float) -> None:
        """One value, as river's ``update``."""
        self.update_many(np.array([x], dtype=float))

    def update_many(self, values: np.ndarray) -> int | None:
        """Feed ``values`` in order; the index of the first alarm among them, or None.

        Values after an alarm are not consumed: the caller decides what to do after a change
        (feed them again to test afresh, as river does on the update after an alarm).

        Parameters
        ----------
        values : array-like of shape (m,)
        """
        x = np.asarray(values, dtype=float).ravel()
        if self.drift_detected:
            self._reset()
        if x.size == 0:
            return None
        if x.size <= _FEW:
            few = x.tolist()
            if all(map(math.isfinite, few)):
                return self._update_few(x, few)
        count = self._n + np.arange(1, x.size + 1)
        deviation = x - (self._total + np.cumsum(x)) / count
        fired = np.zeros(x.size, dtype=bool)
        # Each one-sided sum is only computed if its mode asks for it (the monitor's is "up").
        if self.mode != "down":
            up = self._faded_sum(deviation - self.delta, self._up)
            min_up = np.minimum(self._min_up, np.minimum.accumulate(up))
            fired |= up - min_up > self.threshold
        if self.mode != "up":
            down = self._faded_sum(deviation + self.delta, self._down)
            max_down = np.maximum(self._max_down, np.maximum.accumulate(down))
            fired |= max_down - down > self.threshold
        fired &= count >= self.min_instances
        alarm = int(np.argmax(fired)) if fired.any() else None
        last = x.size - 1 if alarm is None else alarm
        self._n = int(count[last])
        self._total += float(x[:last + 1].sum())
        if self.mode != "down":
            self._up, self._min_up = float(up[last]), float(min_up[last])
        if self.mode != "up":
            self._down, self._max_down = float(down[last]), float(max_down[last])
        self.drift_detected = alarm is not None
        return alarm

    def _update_few(self, x: np.ndarray, values: list) -> int | None:
        """:meth:`update_many` for a few finite values, in Python floats: the same operations
        in the same order (so the same bits), without ~25 numpy calls (the monitor feeds ~20
        block means per mini-batch)."""
        alpha, delta, threshold = self.alpha, self.delta, self.threshold
        up_on, down_on = self.mode != "down", self.mode != "up"
        start, total = self._n, self._total
        up, min_up, down, max_down = self._up, self._min_up, self._down, self._max_down
        summed = up_sum = down_sum = 0.0  # running sums, as np.cumsum accumulates them
        up_start, down_start = up, down
        alarm = None
        for i, value in enumerate(values):
            count = start + i + 1
            summed += value
            deviation = value - (total + summed) / count
            fired = False
            if up_on:
                if alpha == 1.0:
                    up_sum += deviation - delta
                    up = up_start + up_sum
                else:  # (lfilter's recursion: increment + alpha * previous)
                    up = (deviation - delta) + alpha * up
                if up < min_up:
                    min_up = up
                fired = up - min_up > threshold
            if down_on:
                if alpha == 1.0:
                    down_sum += deviation + delta
                    down = down_start + down_sum
                else:
                    down = (deviation + delta) + alpha * down
                if down > max_down:
                    max_down = down
                fired = fired or max_down - down > threshold
            if fired and count >= self.min_instances:
                alarm = i
                break
        last = len(values) - 1 if alarm is None else alarm
        self._n = start + last + 1
        self._total += float(x[:last + 1].sum())
        if up_on:
            self._up, self._min_up = up, min_up
        if down_on:
            self._down, self._max_down = down, max_down
        self.drift_detected = alarm is not None
        return alarm

    def _faded_sum(self, increments: np.ndarray, start: float) -> np.ndarray:
        """``s_t = alpha * s_{t-1} + increments[t]`` from ``s_{-1} = start``."""
        if self.alpha == 1.0:
            return start + np.cumsum(increments)
        from scipy.signal import lfilter

        return lfilter([1.0], [1.0, -self.alpha], increments, zi=[self.alpha * start])[0]

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict:
        """The test's exact state as JSON-compatible numbers (with the parameters)."""
        return {"params": self.params(), "n": self._n, "total": self._total, "up": self._up,
                "min_up": None if np.isinf(self._min_up) else self._min_up,
                "down": self._down, "max_down": self._max_down,
                "drift_detected": self.drift_detected}

    def restore(self, state: dict) -> "PageHinkley":
        """Continue from :meth:`state`'s output (``ValueError`` if malformed or if it was
        saved with other parameters)."""
        try:
            if state["params"] != self.params():
                raise ValueError("it was saved with other parameters")
            n, detected = state["n"], state["drift_detected"]
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**53:
                raise ValueError(f"count {n!r}")
            if not isinstance(detected, bool):
                raise ValueError(f"drift_detected {detected!r}")
            numbers = [float(state[k]) for k in ("total", "up", "down", "max_down")]
            min_up = float("inf") if state["min_up"] is None else float(state["min_up"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"Page–Hinkley state is not usable ({exc})") from None
        finite = all(math.isfinite(v) for v in numbers) and (
            state["min_up"] is None or math.isfinite(min_up))
        if not finite or numbers[3] < -1.0:  # the running maximum of ``down`` starts at -1
            raise ValueError("Page–Hinkley state is not usable (non-finite or out of range)")
        self._n = n
        self._total, self._up, self._down, self._max_down = numbers
        self._min_up, self.drift_detected = min_up, detected
        return self
