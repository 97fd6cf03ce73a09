"""Online learning on real data (issue 13): river's bundled sets, offline.

Each named set, shuffled so that the stream is stationary, is learned in one pass (mini-batches
of 100, the daemon's shipped defaults) on 80% and compared with batch EM (best of 8 starts, same
settings, same rows) on the other 20%.  ``benchmarks/bench_real_data.py`` runs more shuffles
and sets the defaults were not tuned on.
"""

import subprocess
import sys

import numpy as np
import pytest

from .conftest import ROOT
from .real_data import NAMED, one_pass, rows, table


@pytest.mark.slow
def test_one_pass_on_real_sets_is_within_005_nats_per_feature_of_batch_em():
    outcomes = [one_pass(name) for name in NAMED]
    in_order = [one_pass(name, order="original") for name in NAMED]
    print("\n" + table(outcomes + in_order))
    for o in outcomes:
        assert o.gap <= 0.05, (o.name, o.batch, o.online)
        assert o.alarms <= 1, (o.name, o.alarms)
    for o in in_order:  # a stream that is not stationary: a finite model, no crash
        assert np.isfinite(o.online), o.name


@pytest.mark.slow
@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer"])
def test_a_small_real_set_that_ends_inside_the_warm_up_is_fitted_like_batch_em(name):
    # 120 to 455 rows, fewer than the warm-up's 1,000: the model is the warm-up's provisional
    # one, whose prior must have faded by then (clusters far thinner than the spread: iris's
    # petal widths, breast cancer's 30 correlated measurements).
    from sklearn import datasets

    X = getattr(datasets, f"load_{name}")().data.astype(float)
    gaps = [one_pass(name, seed, data=X).gap for seed in range(5)]
    assert max(gaps) <= 0.05, gaps


@pytest.mark.slow
def test_a_tight_cluster_under_a_broad_component_is_found_before_the_stream_ends():
    # WaterFlow (1,014 training rows): 2% of the values repeat at 24.26, a sparse tail reaches
    # 100, the rest sit near 102.  A warm-up that put one broad component over the first two
    # (and two over the last) never left that optimum; 5 of these 20 shuffles ended 0.09-0.13
    # nats per point below batch EM, the stream over before the first scheduled check.
    gaps = [one_pass("WaterFlow", seed).gap for seed in range(20)]
    assert max(gaps) <= 0.05, gaps


@pytest.mark.slow
def test_one_far_held_out_row_does_not_keep_a_worse_warm_up_optimum():
    # ImageSegments (18 features): two rows 19 sd out in one of them.  Judged uncapped, every
    # fresh start of the warm-up's last search lost on those two rows alone (-77,000 nats
    # each), and the provisional model's worse optimum stayed: shuffle 11 ended 0.16 nats per
    # point per feature below batch EM, shuffle 3 0.053.
    gaps = [one_pass("ImageSegments", seed).gap for seed in range(20)]
    assert max(gaps) <= 0.05, np.round(gaps, 3)


@pytest.mark.slow
def test_rare_rows_the_model_learned_do_not_keep_a_worse_optimum_on_shuttle():
    # Shuffle 6 ended 0.079 nats per point per feature below batch EM while the upkeep's judge
    # was uncapped (now 0.027): as traced on river's detector (seed 114), a few rare held-out
    # rows the model in use had learned outweighed candidates better on all the others.
    outcome = one_pass("Shuttle", 6)
    assert outcome.gap <= 0.05, outcome


def _shuttle():
    from river import datasets

    return list(datasets.Shuttle())


def _auc_score_then_learn(model, data):
    scores = []
    for x, _ in data:
        scores.append(model.score_one(x))
        model.learn_one(x)
    return np.array(scores)


@pytest.mark.slow
def test_shuttle_detector_with_defaults_ranks_at_least_as_well_as_half_space_trees():
    from river import anomaly, preprocessing
    from sklearn.metrics import roc_auc_score

    from emstream.river import GaussianMixtureDetector

    data = _shuttle()
    y = np.array([label for _, label in data])
    trees = _auc_score_then_learn(preprocessing.MinMaxScaler()
                                  | anomaly.HalfSpaceTrees(seed=42), data)
    # The detector's default seed is random: seeds 0-4 stand for it, and the six of 0-419
    # that ranked the first 20,000 rows at 0.68 (114, 296, 301, 340) or 0.91 (133, 210) while
    # the upkeep's judge was uncapped (refit.JUDGE_CAP): now 0.969 or better for all 420.
    for seed in [0, 1, 2, 3, 4, 114, 133, 210, 296, 301, 340]:
        ours = _auc_score_then_learn(preprocessing.StandardScaler()
                                     | GaussianMixtureDetector(seed=seed), data)
        for n in (20_000, len(data)):
            theirs, mine = roc_auc_score(y[:n], trees[:n]), roc_auc_score(y[:n], ours[:n])
            print(f"\nShuttle, first {n} rows, seed {seed}: GaussianMixtureDetector {mine:.4f}, "
                  f"HalfSpaceTrees {theirs:.4f}")
            assert mine >= theirs, (seed, n, mine, theirs)


@pytest.mark.slow
def test_the_daemons_surprise_on_shuttle_ranks_at_least_as_well_as_half_space_trees(tmp_path):
    from river import anomaly, preprocessing
    from sklearn.metrics import roc_auc_score

    data = _shuttle()
    y = np.array([label for _, label in data])
    X = rows("Shuttle")
    source = tmp_path / "shuttle.csv"
    np.savetxt(source, X, fmt="%d", delimiter=",")
    done = subprocess.run([sys.executable, "-m", "emstreamd", "--config",
                           str(ROOT / "config.yaml"), "--input", str(source), "--checkpoint",
                           str(tmp_path / "state")], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = np.loadtxt(done.stdout.decode().splitlines(), delimiter=",")
    lines, surprise = out[:, 0].astype(int), out[:, 3]
    assert lines[0] == 101 and len(lines) == len(X) - 100  # all after the first batch
    trees = _auc_score_then_learn(preprocessing.MinMaxScaler()
                                  | anomaly.HalfSpaceTrees(seed=42), data)
    for n in (20_000, len(X)):
        scored = lines <= n
        mine = roc_auc_score(y[lines[scored] - 1], surprise[scored])
        theirs = roc_auc_score(y[:n], trees[:n])
        print(f"\nShuttle through emstreamd, first {n} rows: surprise {mine:.4f}, "
              f"HalfSpaceTrees {theirs:.4f}")
        assert mine >= theirs, (n, mine, theirs)
