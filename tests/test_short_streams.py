"""Short streams (issue 13): 300 points, K=3, through every entry point.

Every point after the first mini-batch is scored, and the final model is within 0.05 nats per
point per feature of batch EM on the same rows (held-out, on fresh draws of the same mixture).
"""

import subprocess
import sys

import numpy as np
import pytest

from emstream import GaussianMixture, checkpoint
from emstream.drift import DriftMonitor

from .conftest import ROOT, mixture_1d, mixture_2d

N, BATCH = 300, 50


def _data(make, seed=0):
    rng = np.random.default_rng(seed)
    return make(N, rng), make(20_000, rng)


def _close_to_batch_em(model, X, held):
    batch = GaussianMixture(3, n_init=8, random_state=0).fit(X)
    gap = (batch.score(held) - model.score(held)) / X.shape[1]
    assert gap <= 0.05, gap
    return gap


@pytest.mark.parametrize("make", [mixture_1d, mixture_2d], ids=["1-D", "2-D"])
def test_partial_fit(make):
    X, held = _data(make)
    gm = GaussianMixture(3, random_state=0)
    assert gm.partial_fit_scored(X[:BATCH]) is None  # the first batch makes the first model
    for start in range(BATCH, N, BATCH):
        step = gm.partial_fit_scored(X[start:start + BATCH])
        assert step is not None and np.isfinite(step.log_prob).all()
    _close_to_batch_em(gm, X, held)


@pytest.mark.parametrize("make", [mixture_1d, mixture_2d], ids=["1-D", "2-D"])
def test_drift_monitor(make):
    X, held = _data(make)
    monitor = DriftMonitor(GaussianMixture(3, random_state=0))
    scored = 0
    for start in range(0, N, BATCH):
        update = monitor.update(X[start:start + BATCH])
        if update.log_prob is not None:
            scored += len(update.log_prob)
    assert scored == N - BATCH
    _close_to_batch_em(monitor.model, X, held)


def test_daemon(tmp_path):
    X, held = _data(mixture_1d)
    source = tmp_path / "short.txt"
    np.savetxt(source, X, fmt="%.6f")
    done = subprocess.run([sys.executable, "-m", "emstreamd", "--config",
                           str(ROOT / "config.yaml"), "--input", str(source), "--checkpoint",
                           str(tmp_path / "state")], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    lines = [int(row.split(",")[0]) for row in done.stdout.decode().splitlines()]
    assert lines == list(range(101, N + 1))  # batch.first_rows = 100
    _close_to_batch_em(checkpoint.load(tmp_path / "state").model, X, held)


def test_river_detector():
    from emstream.river import GaussianMixtureDetector

    X, held = _data(mixture_2d)
    detector = GaussianMixtureDetector(seed=0)
    scores = []
    for row in X:
        x = {"a": float(row[0]), "b": float(row[1])}
        scores.append(detector.score_one(x))
        detector.learn_one(x)
    assert np.isfinite(scores).all() and all(s > 0 for s in scores[2:])
    # Far points score higher than central ones from the first few points on.
    assert detector.score_one({"a": 40.0, "b": 40.0}) > detector.score_one({"a": 1.0, "b": 1.0})
    _close_to_batch_em(detector.model, X[:detector.model.n_seen_], held)
