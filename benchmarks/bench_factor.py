"""Precision factors of K covariances: LAPACK one component at a time vs numpy's stacked call.

Usage::

    python benchmarks/bench_factor.py

The M-step factors every covariance on every online step.  numpy's stacked ``cholesky`` and
``inv`` make one call for all components but pay ~20 µs of wrappers per call; scipy's LAPACK
``dpotrf``/``dtrtri`` pay ~6 µs per component.  ``emstream.gaussian._factor_each`` picks the
route; this prints the time of both (best of 7, interleaved), their ratio and the route taken.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

import numpy as np

from emstream import gaussian

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_machine  # noqa: E402


def main() -> None:
    print_machine()
    rng = np.random.default_rng(0)
    print(f"{'K':>3} {'D':>3} {'route':>10} {'LAPACK each':>12} {'numpy stacked':>14} "
          f"{'stacked/each':>13}")
    for d in (2, 5, 10, 30):
        for k in (1, 3, d + 2, d + 5, 3 * d + 10):
            factor = rng.normal(size=(k, d, d + 3))
            covs = factor @ factor.transpose(0, 2, 1)
            np.testing.assert_allclose(gaussian._precision_cholesky_each(covs.copy()),
                                       gaussian._precision_cholesky_stacked(covs.copy()),
                                       rtol=1e-9, atol=1e-12)
            times = {"each": np.inf, "stacked": np.inf}
            for r in range(7):
                for name in (("each", "stacked") if r % 2 == 0 else ("stacked", "each")):
                    fn = getattr(gaussian, f"_precision_cholesky_{name}")
                    times[name] = min(times[name],
                                      timeit.timeit(lambda: fn(covs), number=200) / 200)
            route = "each" if gaussian._factor_each(k, d) else "stacked"
            print(f"{k:>3} {d:>3} {route:>10} {times['each'] * 1e6:>10.1f}us "
                  f"{times['stacked'] * 1e6:>12.1f}us {times['stacked'] / times['each']:>12.2f}x")


if __name__ == "__main__":
    main()
