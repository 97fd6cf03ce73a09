"""The recent level (emstream.level): a run of values at an unusual level adds up."""

import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.signal import lfilter

from emstream import GaussianMixture
from emstream.calibration import TailCalibrator
from emstream.drift import DriftMonitor
from emstream.gaussian import MixtureParams
from emstream.level import RecentLevel
from emstream.series import SeriesMonitor
from emstream.temporal import TemporalFeatures


def _params():
    """A two-component mixture over (x, context), shape (K=2, D=2)."""
    return MixtureParams.from_covariances([0.3, 0.7], [[0.0, 1.0], [4.0, -1.0]],
                                          [[[1.0, 0.5], [0.5, 2.0]], [[0.5, 0.0], [0.0, 1.0]]],
                                          "full")


def test_the_level_is_the_mean_of_the_marginal_surprise_however_the_stream_is_cut():
    params = _params()
    F = np.random.default_rng(0).normal(size=(500, 2)) * 3
    # -log p(x) under the marginal of the first column, by scipy
    own = -np.log(0.3 * stats.norm.pdf(F[:, 0], 0.0, 1.0)
                  + 0.7 * stats.norm.pdf(F[:, 0], 4.0, np.sqrt(0.5)))
    for window in (12, 100):  # (summed slice by slice, and in one call)
        expected = np.array([own[max(0, i - window + 1):i + 1].mean() for i in range(500)])
        whole = RecentLevel(window).surprises(F, [0], params)
        np.testing.assert_allclose(whole, expected, rtol=1e-12)
        for cuts in ([1, 5, 11, 12, 13], [250], [499]):
            level, parts = RecentLevel(window), []
            for part in np.split(F, cuts):
                parts.append(level.surprises(part, [0], params))
            np.testing.assert_array_equal(np.concatenate(parts), whole)  # bit for bit


def test_a_saved_level_continues_exactly_and_a_bad_one_is_refused():
    params = _params()
    F = np.random.default_rng(1).normal(size=(300, 2))
    level = RecentLevel(12, TailCalibrator(50))
    means = level.surprises(F[:200], [0], params)
    level.remember(means)
    saved = level.state()
    again = RecentLevel.from_state(saved, 12)
    np.testing.assert_array_equal(again.surprises(F[200:], [0], params),
                                  level.surprises(F[200:], [0], params))
    assert again.calibrator.state() == level.calibrator.state()
    shorter = RecentLevel.from_state(saved, 4)  # a window changed between runs
    assert shorter.window == 4 and len(shorter.state()["tail"]) == 3
    assert saved["tail"][-3:] == shorter.state()["tail"]
    huge = 10**400  # (a JSON integer beyond any float, in an edited checkpoint: OverflowError)
    for bad in ([], {"tail": [1.0]}, {**saved, "tail": [float("nan")]},
                {**saved, "tail": "x"}, {**saved, "calibrator": {"size": 5, "history": []}},
                {**saved, "tail": [huge]}, {**saved, "calibrator": {"size": 50,
                                                                    "history": [huge]}}):
        with pytest.raises(ValueError, match="level state"):
            RecentLevel.from_state(bad, 12)
    for window in (0, -1, 2.5, True, "12"):
        with pytest.raises(ValueError, match="window must be an integer"):
            RecentLevel(window)


def test_a_point_far_beyond_the_model_keeps_the_level_finite():
    params = MixtureParams.from_covariances([1.0], [[0.0]], [[[1e-6]]], "full")
    level = RecentLevel(3)
    means = level.surprises(np.array([[0.0], [1e100], [0.0]]), [0], params)  # (the largest
    assert np.isfinite(means).all() and means[1] > 1e200                   # value admitted)
    assert np.isfinite(level.state()["tail"]).all()


def test_the_point_after_one_beyond_every_distance_gets_a_finite_surprise():
    """A spike of 1e60 in a series of spread 1e-100: the next row's context (its lag) is beyond
    the float range, -log p(features) + log p(context) was inf - inf, a NaN surprise that
    the calibrator scored 0.5 and emstreamd printed as ``nan``; it is scored on its target."""
    x = np.random.default_rng(0).normal(size=3000) * 1e-100
    x[2500] = 1e60
    series = SeriesMonitor(DriftMonitor(GaussianMixture(3, random_state=0)), TemporalFeatures(),
                           reg_covar_share=1e-3)
    for start in range(0, 3000, 100):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # (nor numpy's inf - inf warning)
            update = series.update(x[start:start + 100, None])
        if update.surprise is not None:
            assert not np.isnan(update.surprise).any(), start
            assert not np.isnan(update.score).any()
        if start == 2500:
            assert update.surprise[0] == np.inf and update.anomaly[0]
            assert np.isfinite(update.surprise[1])


def _smooth_day(seed: int, bump: bool) -> tuple:
    """40 days of 10-minute points: a daily shape plus smooth (AR) noise; with ``bump``, on day
    30 the level creeps up by 2 (about 7 noise sd) over 6 hours, stays 6 hours, creeps back:
    every step is ordinary given the one before."""
    rng = np.random.default_rng(seed)
    day = 144
    t = np.arange(40 * day)
    noise = lfilter([1.0], [1.0, -0.95], rng.normal(size=t.size)) * 0.3 * np.sqrt(1 - 0.95**2)
    x = 10 + 3 * np.sin(2 * np.pi * t / day) + noise
    at = 30 * day + 20
    rise = np.r_[np.linspace(0.0, 2.0, 36), np.full(36, 2.0), np.linspace(2.0, 0.0, 36)]
    if bump:
        x[at:at + rise.size] += rise
    return x, 1.7e9 + 600.0 * t, (at, at + rise.size)


def _alerts(x, times, seed, level_window) -> list:
    series = SeriesMonitor(DriftMonitor(GaussianMixture(3, random_state=seed)),
                           TemporalFeatures(season="auto"), level_window=level_window)
    alerts = []
    for i in range(0, x.size, 100):
        update = series.update(x[i:i + 100, None], times[i:i + 100])
        alerts += (i + np.flatnonzero(update.anomaly)).tolist()
    return alerts


@pytest.mark.slow
def test_a_slow_excursion_is_alerted_by_the_recent_level_and_missed_without_it():
    """Each point of the excursion is ordinary given the one before, so the conditional
    surprise alone never alerts inside it (before the channel, 0 of 5 seeds); the recent
    level does (4 of 5)."""
    with_level, without = 0, 0
    for seed in range(5):
        x, times, (start, end) = _smooth_day(seed, bump=True)
        inside = [a for a in _alerts(x, times, seed, 12) if start <= a < end]
        with_level += bool(inside)
        without += bool([a for a in _alerts(x, times, seed, 0) if start <= a < end])
    assert with_level >= 4 and without == 0


def test_the_river_series_detector_scores_the_recent_level_through_waiting_points():
    """score_one takes the recent level over the points learned but not yet in a batch
    (without them, a run of unusual points waiting for their batch would not count)."""
    from emstream.river_series import SeriesDetector

    x, _, _ = _smooth_day(0, bump=False)
    detectors = {w: SeriesDetector(season=144, seed=0, batch_size=50, level_window=w)
                 for w in (12, 0)}
    for detector in detectors.values():
        for v in x[:4000]:
            detector.learn_one({"v": float(v)})
    # (4,000 points: the last batch is complete, so the run below waits in the next one)
    high = float(x[:4000].max()) + 4.0  # far above any level seen, reached in small steps
    steps = np.linspace(float(x[3999]), high, 40)
    scores = {}
    for w, detector in detectors.items():
        for v in steps[:30]:
            detector.learn_one({"v": float(v)})
        assert len(detector._rows) == 30  # (waiting for their batch)
        scores[w] = detector.score_one({"v": float(steps[30])})
    monitor = detectors[12].monitor
    level = monitor.level_score(np.vstack(detectors[12]._rows + [
        monitor.features.peek(np.array([[steps[30]]]))[0]]), detectors[12]._context())
    assert scores[12] >= level > 0.9999 > scores[0]


def test_a_series_monitor_restored_from_its_state_scores_on_exactly():
    """The run of level surprises and the level's history are state: a monitor rebuilt from
    the model and the state at the halfway point scores the rest as the one that went on.
    A state from before the channel (no "level") starts it afresh."""
    import copy

    x, times, _ = _smooth_day(1, bump=True)

    def monitor():
        return SeriesMonitor(DriftMonitor(GaussianMixture(3, random_state=1)),
                             TemporalFeatures(season="auto"))

    whole, half = monitor(), None
    scores = []
    for i in range(0, x.size, 100):
        if i == 3000:
            half = (copy.deepcopy(whole.monitor), whole.state())
        scores.append(whole.update(x[i:i + 100, None], times[i:i + 100]).score)
    drift, state = half
    assert state["level"]["window"] == 12 and len(state["level"]["tail"]) == 11
    resumed = SeriesMonitor(drift, TemporalFeatures(season="auto")).restore(state)
    again = [resumed.update(x[i:i + 100, None], times[i:i + 100]).score
             for i in range(3000, x.size, 100)]
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(scores[30:]))
    old = {k: v for k, v in state.items() if k != "level"}
    fresh = SeriesMonitor(copy.deepcopy(drift), TemporalFeatures(season="auto")).restore(old)
    assert fresh.level is not None and fresh.level.state()["tail"] == []


def test_the_daemon_takes_a_level_window_of_at_most_1000_points():
    """Up to 10**6 was taken: a window's tail is state (8 MB per series at 10**6) and each
    one-row batch cost about a second."""
    from emstreamd import config

    assert config.validate({"features": {"level_window": 1000}})["features"][
        "level_window"] == 1000
    with pytest.raises(config.ConfigError, match="level_window must be at most 1,000"):
        config.validate({"features": {"level_window": 1001}})
    # The library's own classes have the same bound (a window of 10**12 was a MemoryError).
    from emstream.calibration import TailCalibrator
    from emstream.level import RecentLevel

    RecentLevel(1000)
    with pytest.raises(ValueError, match="window must be an integer from 1 to 1000"):
        RecentLevel(1001)
    with pytest.raises(ValueError, match="size must be an integer from 10 to 1e[+]08"):
        TailCalibrator(10**8 + 1)
