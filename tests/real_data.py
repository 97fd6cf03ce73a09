"""River's bundled real data sets as arrays, and the one-pass comparison with batch EM.

Shared by ``tests/test_real_data.py`` and ``benchmarks/bench_real_data.py``: every set loads
offline (river ships them).  A set's rows are its numeric features in sorted order; for the
regression sets whose target is the series itself (WaterFlow, AirlinePassengers, ChickWeights'
weights) the target too.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The sets issue 13 names, and others that the defaults were not tuned on.
NAMED = ("Shuttle", "ImageSegments", "Phishing", "TrumpApproval", "Bananas", "SP500Stocks")
OTHERS = ("SolarFlare", "ChickWeights", "WaterFlow", "AirlinePassengers", "Yeast")
WITH_TARGET = ("ChickWeights", "WaterFlow", "AirlinePassengers")
CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"


def rows(name: str) -> np.ndarray:
    """The data set as an (n, D) float array, in river's order."""
    from river import datasets

    out = []
    for x, y in getattr(datasets, name)():
        values = [float(v) for _, v in sorted(x.items())
                  if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if name in WITH_TARGET:
            values.append(float(y))
        out.append(values)
    return np.array(out)


def daemon_defaults() -> tuple[dict, dict]:
    """GaussianMixture's and DriftMonitor's settings from the shipped config.yaml."""
    from emstreamd import config

    settings = config.load(str(CONFIG))
    return config.model_settings(settings), config.monitor_settings(settings)


@dataclass
class Outcome:
    name: str
    order: str
    n_features: int
    batch: float  # held-out log-likelihood per point per feature, batch EM (best of 8)
    online: float  # the same, one pass of the daemon's defaults in mini-batches of 100
    alarms: int
    replaced: int  # models the learner's upkeep replaced
    seconds: float

    @property
    def gap(self) -> float:
        return self.batch - self.online


def one_pass(name: str, seed: int = 0, order: str = "shuffled", batch_rows: int = 100,
             data: np.ndarray | None = None, learned: int | None = None) -> Outcome:
    """Shuffle (unless ``order="original"``), learn 80% in one pass through a DriftMonitor
    with the daemon's defaults, and compare held-out log-likelihood with batch EM (best of 8
    starts, same settings, same rows) on the other 20%.  ``learned``: a short stream instead,
    its first ``learned`` rows learned and the next 1,000 (at most) held out."""
    from emstream import GaussianMixture
    from emstream.drift import DriftMonitor

    X = rows(name) if data is None else data
    if order == "shuffled":
        X = X[np.random.default_rng(seed).permutation(len(X))]
    n = int(0.8 * len(X)) if learned is None else learned
    train, test = X[:n], X[n:] if learned is None else X[n:n + 1000]
    model_settings, monitor_settings = daemon_defaults()
    d = X.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a batch run that stops at max_iter
        batch = GaussianMixture(**{**model_settings, "n_init": 8}).fit(train).score(test) / d
    model = GaussianMixture(**model_settings)
    monitor = DriftMonitor(model, **monitor_settings)
    start = time.perf_counter()
    for i in range(0, n, batch_rows):
        monitor.update(train[i:i + batch_rows])
    seconds = time.perf_counter() - start
    # (no model yet: fewer rows than a first provisional model needs)
    online = model.score(test) / d if model._is_fitted() else float("nan")
    return Outcome(name, order, d, batch, online, monitor.n_alarms_,
                   model._online.upkeep.replaced, seconds)


def table(outcomes) -> str:
    lines = ["| data set | order | D | batch EM | online | gap | alarms | upkeep | s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for o in outcomes:
        lines.append(f"| {o.name} | {o.order} | {o.n_features} | {o.batch:.4f} | "
                     f"{o.online:.4f} | {o.gap:+.4f} | {o.alarms} | {o.replaced} | "
                     f"{o.seconds:.1f} |")
    return "\n".join(lines)
