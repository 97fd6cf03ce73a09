"""emstreamd on a stream that changes: alarm, refit, stable labels, recorded events (issue 6)."""

import subprocess
import sys

import numpy as np

from emstream import checkpoint

from .conftest import ROOT

DAEMON = [sys.executable, "-m", "emstreamd"]
CONFIG = str(ROOT / "config.yaml")
WEIGHTS = [0.3, 0.5, 0.2]


def _lines(rng, n, means):
    k = rng.choice(3, n, p=WEIGHTS)
    values = np.asarray(means)[k] + rng.normal(size=n)
    return "".join(f"{v:.6f}\n" for v in values)


def _run(*args):
    done = subprocess.run([*DAEMON, "--config", CONFIG, *args], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    return done


def test_abrupt_jump_alarm_refit_labels_and_history(tmp_path):
    """500,000 points, then every mean +3; the daemon resumes from a checkpoint at the jump."""
    rng = np.random.default_rng(0)
    data, state = tmp_path / "stream.txt", tmp_path / "state"
    data.write_text(_lines(rng, 500_000, [-4.0, 0.0, 5.0]))
    _run("--no-output", "--input", str(data), "--checkpoint", str(state))
    before = checkpoint.load(state)
    assert before.meta["counters"]["alarms"] == 0
    with open(data, "a") as handle:
        handle.write(_lines(rng, 20_000, [-1.0, 3.0, 8.0]))
    out = tmp_path / "labels.csv"
    done = _run("--input", str(data), "--checkpoint", str(state), "--set",
                f"output.path={out}")
    err = done.stderr.decode()
    assert "drift alarm (page-hinkley, surprise)" in err and "drift refit" in err
    after = checkpoint.load(state)
    counters, history = after.meta["counters"], after.meta["history"]
    assert counters["alarms"] == 1 and counters["refits"] == 1
    assert counters["rows"] == 520_000
    drift, refit = [e for e in history if e["event"] in ("drift", "refit")]
    assert drift["event"] == "drift" and 500_000 < drift["rows"] < 500_100
    assert refit["reason"] == "drift" and refit["points"] >= 500
    assert refit["log_likelihood_after"] > refit["log_likelihood_before"]
    # Every component moved by +3 and kept its label.
    np.testing.assert_allclose(after.model.means_, before.model.means_ + 3.0, atol=0.15)
    rows = np.loadtxt(out, delimiter=",")
    assert rows.shape == (20_000, 6)  # line, label, probability, surprise, score, anomaly
    tail = rows[rows[:, 0] > 505_000]  # well after the refit
    assert tail[:, 5].mean() < 0.01  # few anomalies once the model has caught up


def test_unchanged_components_keep_their_labels(tmp_path):
    rng = np.random.default_rng(1)
    data = tmp_path / "stream.txt"
    data.write_text(_lines(rng, 60_000, [-4.0, 0.0, 5.0]) + _lines(rng, 5000, [-4.0, 0.0, 11.0]))
    out = tmp_path / "labels.csv"
    _run("--input", str(data), "--checkpoint", str(tmp_path / "state"), "--set",
         f"output.path={out}")
    rows = np.loadtxt(out, delimiter=",")
    values = np.loadtxt(data)[rows[:, 0].astype(int) - 1]
    labels = rows[:, 1].astype(int)
    early, late = rows[:, 0] <= 60_000, rows[:, 0] > 61_000

    def label_near(mask, centre):
        near = mask & (np.abs(values - centre) < 0.5)
        return np.bincount(labels[near]).argmax()

    assert label_near(early, -4.0) == label_near(late, -4.0)
    assert label_near(early, 0.0) == label_near(late, 0.0)
    assert label_near(early, 5.0) == label_near(late, 11.0)
    history = checkpoint.load(tmp_path / "state").meta["history"]
    assert [e["event"] for e in history if e["event"] != "upkeep"] == ["drift", "refit"]


def test_a_wild_value_is_reported_but_not_learned(tmp_path):
    rng = np.random.default_rng(2)
    data = tmp_path / "stream.txt"
    text = _lines(rng, 10_000, [-4.0, 0.0, 5.0])
    data.write_text(text + "1000000\n" + _lines(rng, 1000, [-4.0, 0.0, 5.0]))
    out = tmp_path / "labels.csv"
    _run("--input", str(data), "--checkpoint", str(tmp_path / "state"), "--set",
         f"output.path={out}")
    rows = np.loadtxt(out, delimiter=",")
    wild = rows[rows[:, 0] == 10_001][0]
    assert wild[5] == 1 and wild[4] > 0.9999 and wild[3] > 1e10  # flagged, even inside an episode
    saved = checkpoint.load(tmp_path / "state")
    assert saved.meta["counters"]["gated"] == 1 and saved.meta["counters"]["alarms"] == 0
    assert np.abs(saved.model.means_).max() < 6


def test_a_refit_window_too_small_for_the_resumed_model_is_said_so(tmp_path):
    """Resumed with model.n_components 1 and refit.window 2 (valid together) on a model of 3
    components: every refit was skipped as "the model is still warming up", after thousands
    of points (found by an attack helper)."""
    rng = np.random.default_rng(0)
    data, state = tmp_path / "stream.txt", tmp_path / "state"
    data.write_text(_lines(rng, 3000, [-4.0, 0.0, 5.0]))
    _run("--no-output", "--input", str(data), "--checkpoint", str(state))
    with open(data, "a") as handle:
        handle.write(_lines(rng, 3000, [-4.0, 0.0, 5.0]))
    err = _run("--no-output", "--input", str(data), "--checkpoint", str(state),
               "--set", "model.n_components=1", "--set", "refit.window=2",
               "--set", "refit.every_points=1000").stderr.decode()
    assert ("refit (schedule) skipped: its window holds 2 rows, fewer than the model's 3 "
            "components (refit.window 2)") in err, err[-2000:]
    assert "still warming up" not in err
