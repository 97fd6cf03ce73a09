"""Batch EM on a 2-process dask LocalCluster against numpy in one process, in one run.

Usage::

    python benchmarks/bench_dask.py              # 20,000,000 1-D points, K=3, 1,000,000 per block
    python benchmarks/bench_dask.py --quick      # 2,000,000 points, 200,000 per block

The data (means -4, 0, 5, sd 1, weights .2/.5/.3) are generated on the workers with
``dask.array.random`` and persisted there; the numpy side gets the same rows, computed to the
client once.  Both fits start from the same ``weights_init``/``means_init``/``precisions_init``
with ``tol=0``; a fit of ``--iterations`` iterations and one of a single iteration are timed
(best of ``--repeats``, the two sides interleaved) and the *marginal* time per iteration,
``(t(M) - t(1)) / (M - 1)``, leaves out the fixed costs of a fit (the dask side's validation
pass over the blocks).  Prints the dask/numpy ratio of that per-iteration time (target <= 1.3).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_machine  # noqa: E402

SIZES = {"full": (20_000_000, 1_000_000), "quick": (2_000_000, 200_000)}


def generate(n: int, block: int, seed: int = 0):
    """The 1-D three-component mixture as a dask array of shape (n, 1), built on the workers."""
    import dask.array as da

    rng = da.random.default_rng(seed)
    u = rng.random(n, chunks=block)
    centre = da.where(u < 0.2, -4.0, da.where(u < 0.7, 0.0, 5.0))
    return (centre + rng.standard_normal(n, chunks=block))[:, None]


def starting_point(X: np.ndarray) -> dict:
    """One EM iteration's parameters from a k-means++ start on a subset: the shared start."""
    from emstream import GaussianMixture

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(3, max_iter=1, random_state=0).fit(X[::100])
    return dict(weights_init=gm.weights_, means_init=gm.means_, precisions_init=gm.precisions_)


def timed_fit(X, start: dict, max_iter: int, scheduler=None):
    import dask

    from emstream import GaussianMixture

    model = GaussianMixture(3, tol=0.0, max_iter=max_iter, **start)
    with warnings.catch_warnings(), dask.config.set(scheduler=scheduler):
        warnings.simplefilter("ignore")
        began = time.perf_counter()
        model.fit(X)
        return time.perf_counter() - began, model


def main() -> None:
    print_machine()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    n, block = SIZES["quick" if args.quick else "full"]
    M = args.iterations

    import dask

    from emstream.distributed import connect

    print(f"batch EM, {n:,} x 1-D points, K=3, blocks of {block:,}; {args.workers}-process "
          f"LocalCluster vs numpy in one process; load average {os.getloadavg()[0]:.2f}")
    with connect(f"local:{args.workers}") as client:
        began = time.perf_counter()
        X = dask.persist(generate(n, block), scheduler=client)[0]
        X_np = X.compute(scheduler=client)
        print(f"data generated on the workers and fetched once: "
              f"{time.perf_counter() - began:.1f} s")
        start = starting_point(X_np)
        best = {("numpy", 1): np.inf, ("numpy", M): np.inf, ("dask", 1): np.inf,
                ("dask", M): np.inf}
        models = {}
        for r in range(args.repeats):
            sides = ["numpy", "dask"] if r % 2 == 0 else ["dask", "numpy"]
            for side in sides:
                for iterations in (1, M):
                    data, scheduler = (X_np, "synchronous") if side == "numpy" else (X, client)
                    seconds, model = timed_fit(data, start, iterations, scheduler)
                    best[side, iterations] = min(best[side, iterations], seconds)
                    models[side] = model
            print(f"  round {r + 1}: " + ", ".join(f"{s} {i} it {best[s, i]:.2f} s"
                                                  for s, i in best))
    per_iteration = {side: (best[side, M] - best[side, 1]) / (M - 1) for side in ("numpy", "dask")}
    whole = {side: best[side, M] / M for side in ("numpy", "dask")}
    gap = abs(models["dask"].lower_bound_ - models["numpy"].lower_bound_)
    print(f"\n{'':<34}{'numpy':>10}{'dask':>10}{'dask/numpy':>12}")
    print(f"{'seconds per iteration (marginal)':<34}{per_iteration['numpy']:10.3f}"
          f"{per_iteration['dask']:10.3f}{per_iteration['dask'] / per_iteration['numpy']:12.2f}")
    print(f"{f'seconds per iteration ({M}-it fit)':<34}{whole['numpy']:10.3f}{whole['dask']:10.3f}"
          f"{whole['dask'] / whole['numpy']:12.2f}")
    ratio = per_iteration["dask"] / per_iteration["numpy"]
    print(f"|d lower_bound| {gap:.2e}; target dask/numpy <= 1.30 per iteration: "
          f"{'PASS' if ratio <= 1.3 else 'FAIL'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
