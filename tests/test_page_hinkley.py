"""emstream's array-fed Page–Hinkley test raises river's alarms, at the same values."""

import re

import numpy as np
import pytest
from river import drift

from emstream import page_hinkley
from emstream.page_hinkley import PageHinkley


def river_alarms(params: dict, x: np.ndarray) -> list[int]:
    detector = drift.PageHinkley(**params)
    alarms = []
    for i, value in enumerate(x):
        detector.update(value)
        if detector.drift_detected:
            alarms.append(i)
    return alarms


def chunked_alarms(detector: PageHinkley, x: np.ndarray, rng) -> list[int]:
    """Feed ``x`` in random chunks; after an alarm the rest is fed again (river's reset)."""
    alarms, i = [], 0
    while i < x.size:
        chunk = x[i:i + int(rng.integers(1, 300))]
        j = detector.update_many(chunk)
        if j is None:
            i += chunk.size
        else:
            alarms.append(i + j)
            i += j + 1
    return alarms


@pytest.mark.parametrize("seed", range(4))
def test_alarms_equal_rivers_for_every_mode_and_fading(seed):
    rng = np.random.default_rng(seed)
    n_alarms = 0
    for _ in range(40):
        n = int(rng.integers(100, 3000))
        x = rng.normal(size=n) * rng.uniform(0.1, 3)
        x[rng.integers(0, n):] += rng.normal() * 2
        params = dict(min_instances=int(rng.integers(1, 50)), delta=float(rng.uniform(0, 0.5)),
                      threshold=float(rng.uniform(1, 30)),
                      alpha=float(rng.choice([1.0, 0.9999, 0.99])),
                      mode=str(rng.choice(["up", "down", "both"])))
        expected = river_alarms(params, x)
        assert chunked_alarms(PageHinkley(**params), x, rng) == expected, params
        n_alarms += len(expected)
    assert n_alarms > 20  # the comparison covered alarms, not only quiet streams


def test_state_round_trip_continues_exactly():
    rng = np.random.default_rng(5)
    x = np.r_[rng.normal(size=4000), rng.normal(size=300) + 1.5]
    params = dict(delta=0.5, threshold=30.0, alpha=1.0, mode="up")
    whole = PageHinkley(**params)
    expected = whole.update_many(x)
    first = PageHinkley(**params)
    assert first.update_many(x[:3000]) is None
    resumed = PageHinkley(**params).restore(first.state())
    assert 3000 + resumed.update_many(x[3000:]) == expected
    with pytest.raises(ValueError, match="other parameters"):
        PageHinkley(**{**params, "threshold": 40.0}).restore(first.state())
    for bad in ({"up": float("nan")}, {"min_up": float("nan")}, {"min_up": float("-inf")},
                {"n": float("inf")}, {"n": 10**400}, {"n": -1}, {"n": True},
                {"drift_detected": "false"}, {"max_down": -2.0}, {"total": "x"}):
        with pytest.raises(ValueError, match="not usable"):
            PageHinkley(**params).restore({**first.state(), **bad})
    clone = first.clone()
    assert clone.params() == first.params() and clone.n == 0


def test_one_value_at_a_time_and_reset_after_an_alarm():
    detector = PageHinkley(threshold=5.0, min_instances=1, mode="up", alpha=1.0)
    for i, value in enumerate(np.r_[np.zeros(50), np.full(20, 3.0)]):
        detector.update(value)
        if detector.drift_detected:
            break
    assert i == 51  # the second 3.0 lifts the cumulative deviation past 5
    detector.update(3.0)  # the update after an alarm starts afresh, as in river
    assert detector.n == 1


@pytest.mark.parametrize("mode", ["up", "down", "both"])
@pytest.mark.parametrize("alpha", [1.0, 0.99])
def test_the_python_loop_for_a_few_values_matches_the_array_path_bit_for_bit(mode, alpha,
                                                                             monkeypatch):
    """Short inputs take a Python loop (numpy's call overhead dominates there); both paths
    must leave the same state and raise the same alarms, to the last bit."""
    rng = np.random.default_rng(7)
    x = np.r_[rng.normal(size=3000), rng.normal(size=500) + 2.0, rng.normal(size=500) - 2.0]
    params = dict(min_instances=10, delta=0.1, threshold=15.0, alpha=alpha, mode=mode)

    def feed(chunks):
        detector, alarms, states, i = PageHinkley(**params), [], [], 0
        for size in chunks:
            j = detector.update_many(x[i:i + size])
            states.append(detector.state())
            if j is None:
                i += size
            else:
                alarms.append(i + j)
                i += j + 1
        return alarms, states

    sizes = [int(s) for s in rng.integers(1, 60, size=300)]
    few = feed(sizes)
    monkeypatch.setattr(page_hinkley, "_FEW", 0)  # every chunk through numpy
    assert feed(sizes) == few
    assert few[0]  # alarms were compared too


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": float("nan")}, "threshold must be a finite number"),
    ({"threshold": float("inf")}, "threshold must be a finite number"),
    ({"threshold": -1.0}, "threshold must be a finite number in [0, inf)"),
    ({"delta": -0.5}, "delta must be a finite number in [0, inf)"),
    ({"alpha": 1.5}, "alpha must be a finite number in [0, 1]"),
    ({"min_instances": 0}, "min_instances must be an integer >= 1"),
    ({"min_instances": 2.5}, "min_instances must be an integer >= 1"),
    ({"delta": "0.1"}, "delta must be a finite number"),
])
def test_arguments_that_would_never_alarm_or_always_alarm_are_refused(kwargs, message):
    # A NaN threshold was accepted and the detector then never alarmed, silently.
    with pytest.raises(ValueError, match=re.escape(message)):
        PageHinkley(**kwargs)
