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


def _wide(n, rng, d=60):
    """Three clusters in 60 features (the same clusters for every draw): full covariances need
    2 (D + 1) = 122 rows per component, more than the stream's 300."""
    centres = np.random.default_rng(7).normal(scale=3.0, size=(3, d))
    return centres[rng.choice(3, n, p=[0.2, 0.5, 0.3])] + rng.normal(size=(n, d))


def _learned_in_batches(X) -> GaussianMixture:
    gm = GaussianMixture(3, random_state=0)
    assert gm.partial_fit_scored(X[:BATCH]) is None  # the first batch makes the first model
    for start in range(BATCH, N, BATCH):
        step = gm.partial_fit_scored(X[start:start + BATCH])
        assert step is not None and np.isfinite(step.log_prob).all()
    return gm


# (60 features: a first provisional model of full covariances waited for 366 rows, so a
# 300-point stream was never scored, and river's Yeast, 103 features, got no model in 300
# rows; a first one of diagonal covariances serves until then, and batch EM with full
# covariances on 300 rows of 60 features is far worse held out)
@pytest.mark.parametrize("make", [mixture_1d, mixture_2d, _wide], ids=["1-D", "2-D", "60-D"])
def test_partial_fit(make):
    X, held = _data(make)
    _close_to_batch_em(_learned_in_batches(X), X, held)


@pytest.mark.parametrize("make", [mixture_1d, mixture_2d, _wide], ids=["1-D", "2-D", "60-D"])
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


def test_many_features_get_full_covariances_once_the_rows_allow():
    """The diagonal first model of 60 features gives way to full covariances once there are
    2 (D + 1) rows per component (a correlation is learned there)."""
    X, _ = _data(_wide)
    gm = _learned_in_batches(X)
    more = _wide(600, np.random.default_rng(5))
    for start in range(0, 600, BATCH):
        gm.partial_fit(more[start:start + BATCH])
    covs = gm.covariances_
    assert np.abs(covs - np.einsum("kd,de->kde", np.diagonal(covs, axis1=1, axis2=2),
                                   np.eye(covs.shape[1]))).max() > 0


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
