"""emstream's river adapters against river's own cluster.KMeans, side by side in one run.

Usage::

    python benchmarks/bench_river.py [--quick]

Prints points/s for (1) learn_one + predict_one per point on 1-D and 2-D three-component
streams, and (2) learn_many on 1,000-row data frames against KMeans.learn_one per point, with
the ratios and the acceptance targets (>= 1x and >= 20x); (2) twice, over the whole stream and
after its first 1,000 points (emstream's warm-up, a batch EM fit, is then behind it): each
side's best over 41 alternating samples of ~30 ms, and the median of the 41 side-by-side ratios
(see ``learn_many_rates``); then (2) again over a stream ten times as long, where the warm-up's
fixed cost weighs a tenth as much.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from river import cluster

from emstream.river import OnlineGaussianMixture

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_machine  # noqa: E402


def stream(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, n, p=[0.2, 0.5, 0.3])
    return np.array([-4.0, 0.0, 5.0])[labels][:, None] + rng.normal(size=(n, d))


def as_dicts(X: np.ndarray) -> list[dict]:
    return [{f"x{j}": float(v) for j, v in enumerate(row)} for row in X]


def interleaved(ours, theirs, rounds: int = 5) -> tuple[float, float]:
    """Best time of each of two runs, alternated so that machine noise hits both.

    A run's time is its wall time, or what it returns (seconds) if it times itself.
    """
    best = [float("inf"), float("inf")]
    for r in range(rounds):
        for i, fn in (((0, ours), (1, theirs)) if r % 2 == 0 else ((1, theirs), (0, ours))):
            start = time.perf_counter()
            timed = fn()
            best[i] = min(best[i], time.perf_counter() - start if timed is None else timed)
    return best[0], best[1]


def learn_and_predict(model_factory, points):
    def run():
        model = model_factory()
        for x in points:
            model.learn_one(x)
            model.predict_one(x)
    return run


def main() -> None:
    print_machine()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    n = 20_000 if parser.parse_args().quick else 100_000
    print("learn_one+predict_one: best of 5 interleaved rounds, the model built fresh in every "
          "round (warm-up included); learn_many: see learn_many_rates")
    print(f"{'measure':<44} {'emstream':>12} {'river KMeans':>14} {'ratio':>8} {'target':>7}")
    for d in (1, 2):
        points = as_dicts(stream(n, d))
        ours, theirs = interleaved(
            learn_and_predict(lambda: OnlineGaussianMixture(3, seed=0), points),
            learn_and_predict(lambda: cluster.KMeans(n_clusters=3, seed=0), points))
        print(f"{f'learn_one+predict_one, {d}-D, points/s':<44} {n / ours:>12,.0f} "
              f"{n / theirs:>14,.0f} {theirs / ours:>7.2f}x {'>= 1x':>7}")
    for d in (1, 2):
        X = stream(n, d)
        frames = [pd.DataFrame(X[i:i + 1000], columns=[f"x{j}" for j in range(d)])
                  for i in range(0, n, 1000)]
        rates = learn_many_rates(frames, as_dicts(X))
        whole, after, theirs = rates["best"]
        paired_whole, paired_after = rates["paired"]
        print(f"{f'learn_many (1,000-row frames) vs learn_one, {d}-D':<44} {whole:>12,.0f} "
              f"{theirs:>14,.0f} {whole / theirs:>7.2f}x {'>= 20x':>7}")
        print(f"{'  side by side (median of 41 paired ratios)':<44} {'':>12} {'':>14} "
              f"{paired_whole:>7.2f}x {'>= 20x':>7}")
        label = f"  after the warm-up ({rates['warm-up']:,} points)"
        print(f"{label:<44} {after:>12,.0f} "
              f"{theirs:>14,.0f} {after / theirs:>7.2f}x {'>= 20x':>7}")
        print(f"{'  after the warm-up, side by side':<44} {'':>12} {'':>14} "
              f"{paired_after:>7.2f}x {'>= 20x':>7}")
    # The warm-up is a fixed cost per model (3-5 ms), 12-15% of a 100,000-point stream: the
    # same measure over a stream ten times as long shows what it amounts to in a longer run.
    long = 10 * n
    for d in (1, 2):
        X = stream(long, d)
        frames = [pd.DataFrame(X[i:i + 1000], columns=[f"x{j}" for j in range(d)])
                  for i in range(0, long, 1000)]
        # KMeans samples ten times as long too, so that both windows stay alike (~0.3 s)
        rates = learn_many_rates(frames, as_dicts(X[:2 * n]), rounds=15,
                                 slice_points=50_000)
        whole, _, theirs = rates["best"]
        print(f"{f'learn_many, {d}-D, whole stream of {long:,} points':<44} {whole:>12,.0f} "
              f"{theirs:>14,.0f} {whole / theirs:>7.2f}x {'>= 20x':>7}")
        print(f"{'  side by side (median of 15 paired ratios)':<44} {'':>12} {'':>14} "
              f"{rates['paired'][0]:>7.2f}x {'>= 20x':>7}")


def learn_many_rates(frames, points, rounds: int = 41, slice_points: int = 5000):
    """emstream's learn_many and KMeans.learn_one, points/s, sampled alternately.

    This machine's speed drifts by up to 2x within seconds, so both sides are sampled in short
    windows of similar length (~30 ms), alternately: one emstream sample is the whole stream
    with a fresh model (also timed after its warm-up: the frames until its learner's last
    provisional refit, about 1,600 points; the upkeep's checks after it are counted); one
    KMeans sample is the next ``slice_points`` points of one model learning the stream from
    its start (its cost per point does not depend on where it is in the stream).

    Returns
    -------
    dict
        ``"best"``: each side's best rate (whole stream, after the warm-up, KMeans);
        ``"paired"``: the median over rounds of the ratio of the two samples taken side by
        side (whole stream, after the warm-up), which the drift affects least; and
        ``"warm-up"``: the points the warm-up took.
    """
    n = sum(len(frame) for frame in frames)
    whole, after, theirs = [], [], []
    kmeans, position = cluster.KMeans(n_clusters=3, seed=0), 0
    for _ in range(rounds):
        model = OnlineGaussianMixture(3, seed=0)
        start = time.perf_counter()
        warm, warm_points, seen = None, None, 0
        for frame in frames:
            model.learn_many(frame)
            seen += len(frame)
            if warm is None and _warmed_up(model):
                warm, warm_points = time.perf_counter(), seen
        end = time.perf_counter()
        whole.append(n / (end - start))
        after.append((n - warm_points) / (end - warm))
        if position + slice_points > len(points):
            kmeans, position = cluster.KMeans(n_clusters=3, seed=0), 0
        part = points[position:position + slice_points]
        start = time.perf_counter()
        for x in part:
            kmeans.learn_one(x)
        theirs.append(len(part) / (time.perf_counter() - start))
        position += slice_points
    whole, after, theirs = np.array(whole), np.array(after), np.array(theirs)
    return {"best": (whole.max(), after.max(), theirs.max()),
            "paired": (float(np.median(whole / theirs)), float(np.median(after / theirs))),
            "warm-up": warm_points}


def _warmed_up(model) -> bool:
    """Whether the adapter's learner is past its warm-up (no public attribute says so)."""
    return model._model._is_fitted() and not model._model._learner().warming_up


if __name__ == "__main__":
    main()
