"""emstream's array-fed Page–Hinkley test against river's ``drift.PageHinkley``, in one run.

Usage::

    python benchmarks/bench_page_hinkley.py

Prints (1) the time to import each in a fresh interpreter (``river.drift`` imports
``river.datasets``, which imports scikit-learn and ``scipy.stats`` when they are installed),
and (2) values/s over 1,000,000 values fed in batches of 200 (the drift monitor feeds the block
means of one mini-batch: 200 for 10,000 points in blocks of 50), with the ratio.  Both raise
the same alarms, up to rounding at exact ties (``tests/test_page_hinkley.py``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_machine  # noqa: E402


def import_seconds(statement: str, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        best = min(best, float(out.stdout))
    return best


def main() -> None:
    print_machine()
    from river import drift

    from emstream.page_hinkley import PageHinkley

    ours_import = import_seconds("import numpy; import emstream.page_hinkley")
    river_import = import_seconds("import numpy; import river.drift")
    values = np.random.default_rng(0).normal(size=1_000_000)
    params = dict(delta=0.005, threshold=1e9, alpha=1.0, mode="up")  # no alarm: full cost

    best_ours = best_river = float("inf")
    for _ in range(3):
        detector = PageHinkley(**params)
        start = time.perf_counter()
        for i in range(0, values.size, 200):
            detector.update_many(values[i:i + 200])
        best_ours = min(best_ours, time.perf_counter() - start)
        detector = drift.PageHinkley(**params)
        start = time.perf_counter()
        for value in values.tolist():
            detector.update(value)
        best_river = min(best_river, time.perf_counter() - start)
    print(f"{'measure':<48} {'emstream':>10} {'river':>10} {'ratio':>7}")
    print(f"{'import (with numpy), s':<48} {ours_import:>10.3f} {river_import:>10.3f} "
          f"{river_import / ours_import:>6.1f}x")
    print(f"{'values/s, batches of 200 / one per call':<48} {values.size / best_ours:>10,.0f} "
          f"{values.size / best_river:>10,.0f} {best_river / best_ours:>6.1f}x")


if __name__ == "__main__":
    main()
