"""How often an ordinary point reaches each score level: the calibration of the anomaly score.

The score is ``1 - p``, p a point's upper-tail probability among the last 1,000 surprises
(``emstream/calibration.py``), so on a stream with no anomaly a level L should be reached by a
fraction ``1 - L`` of the points.  This prints, for each level, the fraction observed divided
by that nominal one (1.00x = exact, above 1 = more flags than the level promises), over
stationary streams fed in mini-batches of 1,000 as the daemon feeds them:

* surprises drawn from fixed shapes (normal, exponential, gamma with shape 0.5 and 1.5,
  Gumbel), scored by a ``TailCalibrator`` alone;
* a seasonal AR(1) series (daily period of 288 points) through the daemon's
  ``SeriesMonitor`` with the shipped settings and the temporal features on (its conditional
  surprise and the recent level), and the same without the recent level
  (``features.level_window: 0``: what that second score costs in flags);
* a three-component 1-D mixture (means -4/0/5, sd 1) through the same monitor with features
  off (the daemon's default for a plain stream of numbers).

    python benchmarks/bench_calibration.py            # 1,000,000 points per stream
    python benchmarks/bench_calibration.py --points 200000

Real data: with ``--nab RESULTS`` (a results folder of ``benchmarks/bench_nab.py --out RESULTS``,
the daemon with the shipped config) it also prints the same ratios for the NAB kit's real
series, over their points outside NAB's labelled anomaly windows and after NAB's probationary
first 15%.  Those points are not all ordinary (NAB labels the anomalies it knows of), and
their scores are the daemon's output, halved within an alerted episode.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "daemon"))

from emstream import GaussianMixture  # noqa: E402
from emstream.calibration import TailCalibrator  # noqa: E402
from emstream.drift import DriftMonitor  # noqa: E402
from emstream.series import SeriesMonitor  # noqa: E402
from emstreamd import config as daemon_config  # noqa: E402

LEVELS = (0.99, 0.999, 0.9999, 0.99995)
BATCH = 1000
SKIPPED = 20 * BATCH  # points left out at the start of a stream: the warm-ups


def ratios(scores: np.ndarray) -> str:
    return " ".join(f"{np.mean(scores >= level) / (1 - level):>8.2f}x" for level in LEVELS)


def calibrator_scores(surprise: np.ndarray) -> np.ndarray:
    calibrator = TailCalibrator()
    scores = [calibrator.score(surprise[i:i + BATCH]) for i in range(0, surprise.size, BATCH)]
    return np.concatenate(scores)[5 * BATCH:]


def monitor_scores(X: np.ndarray, features: bool, level: bool = True) -> np.ndarray:
    config = daemon_config.load(ROOT / "config.yaml")
    if not level:
        config["features"]["level_window"] = 0
    model = GaussianMixture(**daemon_config.model_settings(config))
    monitor = SeriesMonitor(DriftMonitor(model, **daemon_config.monitor_settings(config)),
                            *daemon_config.series_parts(config, features))
    scores, start, size = [], 0, 100
    while start < X.shape[0]:
        update = monitor.update(X[start:start + size])
        start += size
        if update.score is not None and start > SKIPPED:  # past the warm-up
            scores.append(update.score)
        size = min(BATCH, 2 * size)
    return np.concatenate(scores)


def nab_ratios(results: Path, kit: Path) -> dict:
    """Category -> (scores of the points outside the labelled windows, after probation)."""
    import csv
    import json

    windows = json.loads((kit / "labels" / "combined_windows.json").read_text())
    out = {}
    for name in sorted(windows):
        if not name.startswith("real"):
            continue
        with open(results / name, newline="") as f:
            rows = list(csv.DictReader(f))
        stamps = np.array([r["timestamp"].replace(" ", "T")[:19] for r in rows],
                          dtype="datetime64[s]")
        scores = np.array([float(r["anomaly_score"]) for r in rows])
        outside = np.ones(len(rows), dtype=bool)
        outside[:int(0.15 * len(rows))] = False
        for start, stop in windows[name]:
            start = np.datetime64(start.replace(" ", "T")[:19])
            stop = np.datetime64(stop.replace(" ", "T")[:19])
            outside[(stamps >= start) & (stamps <= stop)] = False
        category = name.split("/")[0]
        out[category] = np.concatenate([out.get(category, np.empty(0)), scores[outside]])
    out["all real series"] = np.concatenate(list(out.values()))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--nab", type=Path, metavar="RESULTS",
                        help="also the NAB kit's real series, from bench_nab.py's results")
    parser.add_argument("--kit", type=Path, default=ROOT.parent / "shared" / "nab")
    args = parser.parse_args(argv)
    n = args.points
    if n <= SKIPPED:
        parser.error(f"--points must exceed {SKIPPED:,}: the rates leave out the first "
                     f"{SKIPPED:,} points (the model's and the calibration's warm-up)")
    rng = np.random.default_rng(0)
    print(f"observed / nominal rate of scores >= level, stationary streams of {n:,} points\n")
    print(f"{'stream':<42}" + "".join(f"{level:>9}" for level in LEVELS))
    shapes = {"normal": rng.normal(size=n), "exponential": rng.exponential(size=n),
              "gamma(0.5), a 1-D Gaussian's": rng.gamma(0.5, size=n),
              "gamma(1.5)": rng.gamma(1.5, size=n), "Gumbel": rng.gumbel(size=n)}
    for name, surprise in shapes.items():
        print(f"{'surprise ~ ' + name:<42}{ratios(calibrator_scores(surprise))}")
    noise = rng.normal(size=n)
    ar = np.empty(n)
    ar[0] = noise[0]
    for i in range(1, n):  # AR(1), coefficient 0.8
        ar[i] = 0.8 * ar[i - 1] + noise[i]
    seasonal = 10 * np.sin(2 * np.pi * np.arange(n) / 288) + ar
    print(f"{'seasonal AR(1), features on':<42}{ratios(monitor_scores(seasonal[:, None], True))}")
    print(f"{'  the same without the recent level':<42}"
          f"{ratios(monitor_scores(seasonal[:, None], True, level=False))}")
    labels = rng.choice(3, n, p=[0.2, 0.5, 0.3])
    mixture = np.array([-4.0, 0.0, 5.0])[labels] + rng.normal(size=n)
    print(f"{'3-component 1-D mixture, features off':<42}"
          f"{ratios(monitor_scores(mixture[:, None], False))}")
    if args.nab is not None:
        print("\nreal data: NAB series, points outside the labelled windows (daemon's scores)")
        for category, scores in nab_ratios(args.nab, args.kit).items():
            print(f"{category + f' ({scores.size:,} points)':<42}{ratios(scores)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
