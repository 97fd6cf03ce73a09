"""River's Shuttle with features missing: the river detector's ranking when points lack one.

Each point loses one feature, chosen at random, with probability 0, 10% or 30% (seed 0);
``StandardScaler() | GaussianMixtureDetector(seed=0)`` and river's documented
``MinMaxScaler() | HalfSpaceTrees(seed=42)`` score then learn every point, shipped defaults.
Prints ROC AUC on the first 20,000 points and on all 49,097 (offline: river bundles Shuttle).

    python benchmarks/shuttle_missing_features.py            # both detectors
    python benchmarks/shuttle_missing_features.py --mine     # emstream's only
"""

from __future__ import annotations

import argparse
import random

import numpy as np
from river import anomaly, datasets, preprocessing
from sklearn.metrics import roc_auc_score

from emstream.river import GaussianMixtureDetector


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mine", action="store_true", help="emstream's detector only")
    args = parser.parse_args()
    data = list(datasets.Shuttle())
    labels = np.array([label for _, label in data])
    for share in (0.0, 0.1, 0.3):
        rng = random.Random(0)
        stream = []
        for x, _ in data:
            x = dict(x)
            if rng.random() < share:
                del x[rng.choice(sorted(x))]
            stream.append(x)
        detectors = [("emstream", preprocessing.StandardScaler()
                      | GaussianMixtureDetector(seed=0))]
        if not args.mine:
            detectors.append(("HalfSpaceTrees", preprocessing.MinMaxScaler()
                              | anomaly.HalfSpaceTrees(seed=42)))
        shown = []
        for name, model in detectors:
            scores = []
            for x in stream:
                scores.append(model.score_one(x))
                model.learn_one(x)
            shown.append(f"{name} {roc_auc_score(labels[:20_000], scores[:20_000]):.4f} / "
                         f"{roc_auc_score(labels, scores):.4f}")
        print(f"one feature missing in {share:.0%} of points: " + "; ".join(shown), flush=True)


if __name__ == "__main__":
    main()
