"""The calibrated score: its shortcut for callers that only flag gives the exact scores that flag."""

import numpy as np
import pytest

from emstream.calibration import TailCalibrator, tail_probability


def _history(rng, n):
    shape, scale = rng.uniform(0.3, 3.0), rng.uniform(0.01, 100.0)
    return np.sort(rng.gamma(shape, size=n) * scale + rng.normal() * 10.0)


@pytest.mark.parametrize("level", [0.5, 0.85, 0.9, 0.99, 0.999, 0.9999, 0.99995, 0.999999])
def test_flag_level_keeps_every_score_that_reaches_it(level):
    rng = np.random.default_rng(int(level * 1e6))
    for _ in range(60):
        history = _history(rng, int(rng.integers(10, 2000)))
        spread = history.std() * rng.uniform(0.0, 5.0)
        surprise = np.concatenate([rng.choice(history, 400) + rng.normal(size=400) * spread,
                                   history[-3:] * 2.0 + 5.0])
        exact = tail_probability(surprise, history)
        quick = tail_probability(surprise, history, only_below=1.0 - level)
        flags = 1.0 - exact >= level
        np.testing.assert_array_equal(1.0 - quick >= level, flags)
        np.testing.assert_array_equal(quick[flags], exact[flags])
        # The rest are either exact or "not rare" (probability 1), never in between.
        assert np.all((quick == 1.0) | (quick == exact))


def test_scores_below_the_flag_level_come_out_as_zero():
    rng = np.random.default_rng(0)
    cal = TailCalibrator(1000)
    cal.remember(rng.normal(size=1000))
    surprise = np.r_[rng.normal(size=5000), 8.0, np.inf, np.nan]
    exact = cal.score(surprise, remember=False)
    quick = cal.score(surprise, remember=False, flag_level=0.9999)
    assert quick.min() >= 0.0 and quick.max() <= 1.0
    high = exact >= 0.9999
    assert high[-3:].all() and high.sum() < 10  # the outlier, and non-finite surprises
    np.testing.assert_array_equal(quick[high], exact[high])
    assert np.all(quick[~high] == 0.0)


def test_the_calibration_benchmark_refuses_a_stream_shorter_than_its_warm_up():
    """``bench_calibration.py --points 1000`` crashed in np.concatenate (every point lies in
    the 20,000 it leaves out); it is a usage error saying why."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_calibration.py"
    done = subprocess.run([sys.executable, str(script), "--points", "1000"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "--points must exceed 20,000" in done.stderr and "Traceback" not in done.stderr


def test_a_flat_history_is_not_a_tail_of_no_width():
    """A flat series' surprises are all the same: one a millionth of a nat above them is as
    ordinary (old code: 0.999999, the exponential tail's scale collapsing to 1e-9), one equal
    to them is not unusual at all (old code: 0.898), and one a few nats above is an anomaly."""
    calibrator = TailCalibrator()
    calibrator.remember(np.full(1000, -3.2879))
    same, sliver, clear = calibrator.score(np.array([-3.2879, -3.2878999, -1.0]),
                                           remember=False)
    assert same == 0.0 and sliver < 0.9999 and clear > 0.9999


def test_ties_count_as_not_below():
    """The rank of a surprise equal to many past ones is the count strictly below it."""
    history = np.sort(np.r_[np.arange(100.0), np.full(900, 100.0)])
    p = tail_probability(np.array([100.0, 50.0]), history)
    assert p[0] == pytest.approx(901 / 1001, abs=0.01)  # 900 ties and itself: ordinary
    assert p[1] == pytest.approx(951 / 1001, abs=0.01)


def test_a_surprise_a_hair_above_a_flat_history_is_a_tie_not_a_rarity():
    """A flat series' model, moved by one blip it learned, gives its ordinary points a
    surprise 3e-7 nats above the history (all alike): above every one of them, they scored
    0.999001 until the history had refilled (1,300 points of a flat gauge)."""
    from emstream.calibration import TailCalibrator

    cal = TailCalibrator(1000)
    cal.remember(np.full(1000, -0.32351476))
    ordinary, blip = cal.score(np.array([-0.3235145, -0.32351476 + 6.0]), remember=False)
    assert ordinary == 0.0 and blip > 0.9999


def test_a_flat_gauge_after_one_blip_scores_its_ordinary_points_as_ordinary(tmp_path):
    import subprocess
    import sys

    from .conftest import ROOT

    n = 6000
    times = np.datetime64("2024-01-01T00:00") + np.arange(n) * np.timedelta64(5, "m")
    values = np.full(n, 45.0)
    values[3000] = 46.0
    data = tmp_path / "flat.csv"
    data.write_text("timestamp,value\n" + "".join(
        f"{str(t).replace('T', ' ')},{v}\n" for t, v in zip(times, values)))
    done = subprocess.run([sys.executable, "-m", "emstreamd", "--config",
                           str(ROOT / "config.yaml"), "--input", str(data), "--checkpoint",
                           str(tmp_path / "s")], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    rows = [line.split(",") for line in done.stdout.decode().splitlines()]
    line = np.array([int(r[0]) for r in rows])
    score = np.array([float(r[5]) for r in rows])
    assert score[line == 3002][0] > 0.9999  # the blip (data row 3000)
    assert score[line > 3002].max() < 0.5
