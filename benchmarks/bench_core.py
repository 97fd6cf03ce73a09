"""Side-by-side speed of emstream and scikit-learn's GaussianMixture, in one run.

Usage::

    python benchmarks/bench_core.py           # full run (a few minutes on 2 cores)
    python benchmarks/bench_core.py --quick   # smaller data, for smoke-checking

Prints plain-text tables with emstream/sklearn ratios and the acceptance targets.  Timings are
wall-clock, best (minimum) of ``--repeats`` rounds, with the two libraries interleaved (order
alternating each round) so that machine noise hits both.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import sklearn
import sklearn.mixture
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

import emstream

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_machine  # noqa: E402

LIBS = {"emstream": emstream.GaussianMixture, "sklearn": sklearn.mixture.GaussianMixture}
PARAM_ATTRS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")

# name -> (size of case (a), size of case (b), EM iterations per fit, partial_fit batch caps)
SIZES = {
    "full": dict(n_a=1_000_000, n_b=100_000, max_iter=10, stream_calls={1: 2000, 100: 2000,
                                                                         10_000: 99}),
    "quick": dict(n_a=100_000, n_b=20_000, max_iter=4, stream_calls={1: 300, 100: 300,
                                                                      10_000: 9}),
}
WARMUP = 1000  # emstream's default warmup_size; sklearn's peer gets the same rows first


# ---------------------------------------------------------------------------- data
def case_a(n: int, rng: np.random.Generator) -> np.ndarray:
    """1-D mixture: means -4, 0, 5, sd 1, weights .2/.5/.3."""
    z = rng.choice(3, size=n, p=[0.2, 0.5, 0.3])
    return (np.array([-4.0, 0.0, 5.0])[z] + rng.standard_normal(n))[:, None]


def case_b(n: int, rng: np.random.Generator, k: int = 8, d: int = 10) -> np.ndarray:
    """10-D mixture of 8 Gaussians with random means and random full covariances."""
    means = rng.normal(0.0, 4.0, (k, d))
    factors = rng.normal(0.0, 0.4, (k, d, d)) + 0.7 * np.eye(d)
    z = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 5.0)))
    return means[z] + np.einsum("nij,nj->ni", factors[z], rng.standard_normal((n, d)))


# ---------------------------------------------------------------------------- timing
def stopwatch(fn: Callable, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def interleaved_best(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Minimum over ``repeats`` rounds of each ``runs[name]()`` (which returns seconds)."""
    best = {name: np.inf for name in runs}
    for r in range(repeats):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            best[name] = min(best[name], runs[name]())
    return best


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    line = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
    print(f"\n== {title} ==")
    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))


def rate(points_per_s: float) -> str:
    return f"{points_per_s / 1e6:.3g} M/s" if points_per_s >= 1e5 else f"{points_per_s:,.0f} /s"


# ---------------------------------------------------------------------------- 1. batch EM
def bench_batch_em(X: np.ndarray, k: int, cov: str, max_iter: int, repeats: int):
    """Seconds per EM iteration for both libraries from the same initial parameters.

    Also returns "marginal" seconds per iteration, (t(max_iter) - t(1)) / (max_iter - 1), which
    drops each fit's fixed costs (validation, sklearn's initial M-step and final E-step), and
    both fitted models.
    """
    init = LIBS["sklearn"](k, covariance_type=cov, max_iter=1, random_state=0).fit(X)
    common = dict(n_components=k, covariance_type=cov, tol=0.0, random_state=0,
                  init_params="random_from_data", weights_init=init.weights_,
                  means_init=init.means_, precisions_init=init.precisions_)
    fitted = {}

    def fit_run(lib: str, n_iter: int) -> Callable[[], float]:
        def run() -> float:
            model = LIBS[lib](max_iter=n_iter, **common)
            seconds = stopwatch(model.fit, X)
            assert model.n_iter_ == n_iter, (lib, model.n_iter_)
            if n_iter == max_iter:
                fitted[lib] = model
            return seconds / model.n_iter_
        return run

    runs = {(lib, n): fit_run(lib, n) for lib in LIBS for n in (max_iter, 1)}
    best = interleaved_best(runs, repeats)
    per_iter = {lib: best[lib, max_iter] for lib in LIBS}
    marginal = {lib: (best[lib, max_iter] * max_iter - best[lib, 1]) / (max_iter - 1)
                for lib in LIBS}
    return per_iter, marginal, fitted


# ---------------------------------------------------------------------------- 2. inference
def bench_inference(X: np.ndarray, fitted: dict, repeats: int):
    """Points/s of score_samples and predict, sklearn given emstream's fitted parameters."""
    em_model, sk_model = fitted["emstream"], fitted["sklearn"]
    for attr in PARAM_ATTRS:
        setattr(sk_model, attr, getattr(em_model, attr).copy())
    results = {}
    for method in ("score_samples", "predict"):
        fns = {lib: getattr(m, method) for lib, m in (("emstream", em_model),
                                                       ("sklearn", sk_model))}
        best = interleaved_best({lib: lambda f=f: stopwatch(f, X) for lib, f in fns.items()},
                                repeats)
        out = {lib: f(X) for lib, f in fns.items()}
        if method == "score_samples":
            check = f"max|dlogp|={np.abs(out['emstream'] - out['sklearn']).max():.1e}"
        else:
            check = f"agree={np.mean(out['emstream'] == out['sklearn']):.4%}"
        results[method] = ({lib: len(X) / s for lib, s in best.items()}, check)
    return results


# ---------------------------------------------------------------------------- 3. streaming
def stream_run(lib: str, X: np.ndarray, batch: int, n_calls: int) -> Callable[[], float]:
    """One timed pass of ``n_calls`` mini-batches after an untimed warm-up on WARMUP rows."""
    def run() -> float:
        if lib == "emstream":
            model = emstream.GaussianMixture(3, random_state=0, warmup_size=WARMUP)
            step = model.partial_fit
        else:
            model = sklearn.mixture.GaussianMixture(3, random_state=0, warm_start=True,
                                                    max_iter=1)
            step = model.fit
        step(X[:WARMUP])  # emstream: completes the warm-up buffer; sklearn: first fit
        batches = [X[WARMUP + i * batch: WARMUP + (i + 1) * batch] for i in range(n_calls)]

        def feed():
            for b in batches:
                step(b)
        return stopwatch(feed)
    return run


def bench_streaming(X: np.ndarray, calls: dict[int, int], repeats: int):
    results = {}
    for batch, cap in calls.items():
        n_calls = min(cap, (len(X) - WARMUP) // batch)
        # sklearn cannot fit fewer than max(2, n_components) rows.
        libs = [lib for lib in LIBS if lib == "emstream" or batch >= 3]
        best = interleaved_best({lib: stream_run(lib, X, batch, n_calls) for lib in libs},
                                repeats)
        results[batch] = (n_calls, {lib: batch * n_calls / s for lib, s in best.items()})
    return results


# ---------------------------------------------------------------------------- report
def blas_summary() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not importable; env " + env_threads()
    libs = [f"{i['internal_api']}({i.get('version')}) threads={i['num_threads']}"
            for i in threadpool_info()]
    return "; ".join(libs) + "; env " + env_threads()


def env_threads() -> str:
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return " ".join(f"{n}={os.environ.get(n, '-')}" for n in names)


def report_batch_em(cases, max_iter: int, repeats: int):
    rows, ratios, fitted_by_case = [], {}, {}
    for key, label, X, k, cov in cases:
        per_iter, marginal, fitted = bench_batch_em(X, k, cov, max_iter, repeats)
        fitted_by_case[key] = fitted
        ratios[key] = per_iter["emstream"] / per_iter["sklearn"]
        bound_gap = abs(fitted["emstream"].lower_bound_ - fitted["sklearn"].lower_bound_)
        rows.append([label, f"{per_iter['emstream'] * 1e3:.1f} ms",
                     f"{per_iter['sklearn'] * 1e3:.1f} ms", f"{ratios[key]:.3f}x",
                     f"{marginal['emstream'] / marginal['sklearn']:.3f}x", f"{bound_gap:.1e}"])
    table(f"1. Batch EM: time per iteration (fit / n_iter_, max_iter={max_iter}, tol=0, "
          "same initial parameters)",
          ["case", "emstream", "sklearn", "ratio em/sk", "marginal ratio*", "|d lower_bound|"],
          rows)
    print("   * marginal = (t(max_iter) - t(1)) / (max_iter - 1): excludes fixed per-fit costs "
          "(sklearn runs an\n     initial M-step from init_params even when all *_init are "
          "given, and a final E-step).")
    return ratios, fitted_by_case


def report_inference(cases, fitted_by_case, repeats: int) -> dict:
    rows, ratios = [], {}
    for key, label, X, _, _ in cases:
        for method, (pts, check) in bench_inference(X, fitted_by_case[key], repeats).items():
            ratios[key] = ratios.get(key, {}) | {method: pts["emstream"] / pts["sklearn"]}
            rows.append([label, method, rate(pts["emstream"]), rate(pts["sklearn"]),
                         f"{ratios[key][method]:.2f}x", check])
    table("2. Inference throughput (points/s, same fitted parameters)",
          ["case", "method", "emstream", "sklearn", "ratio em/sk", "check"], rows)
    return ratios


def report_streaming(X: np.ndarray, calls: dict[int, int], repeats: int) -> dict:
    stream = bench_streaming(X, calls, repeats)
    rows = []
    for batch, (n_calls, pts) in stream.items():
        em, sk = pts["emstream"], pts.get("sklearn")
        rows.append([f"{batch:,}", f"{n_calls:,}", rate(em), rate(sk) if sk else "n/a",
                     f"{em / sk:.2f}x" if sk else "n/a"])
    table(f"3. Online EM throughput on case (a) rows (points/s, after an untimed warm-up of "
          f"{WARMUP} rows)",
          ["batch rows", "calls", "emstream partial_fit", "sklearn fit(warm_start, max_iter=1)",
           "ratio em/sk"], rows)
    print("   sklearn has no partial_fit; its peer refits each mini-batch with warm_start=True, "
          "max_iter=1.\n   It needs >= n_components (3) rows per fit, so batch size 1 is n/a.")
    return {batch: pts["emstream"] for batch, (_, pts) in stream.items()}


def report_targets(em_ratio: dict, score_ratio: dict, stream: dict, quick: bool) -> None:
    targets = [  # (measure, measured, target, passed)
        ("batch EM s/iter, case (a)", f"{em_ratio['a']:.3f}x", "<= 0.10x sklearn",
         em_ratio["a"] <= 0.10),
        ("batch EM s/iter, case (b) full", f"{em_ratio['b']:.3f}x", "<= 0.25x sklearn",
         em_ratio["b"] <= 0.25),
        *[(f"score_samples pts/s, case ({key})", f"{score_ratio[key]['score_samples']:.2f}x",
           ">= 10x sklearn", score_ratio[key]["score_samples"] >= 10) for key in ("a", "b")],
        ("partial_fit pts/s, 10,000-row batches", f"{stream[10_000]:,.0f} pts/s",
         ">= 1,000,000 pts/s", stream[10_000] >= 1e6),
    ]
    table("4. Acceptance targets" + (" (quick mode: targets are meant for the full run)"
                                     if quick else ""),
          ["measure", "measured", "target", "result"],
          [[name, value, target, "PASS" if ok else "FAIL"] for name, value, target, ok in targets])


def run(args: argparse.Namespace) -> None:
    size = SIZES["quick" if args.quick else "full"]
    warnings.simplefilter("ignore", SklearnConvergenceWarning)
    warnings.simplefilter("ignore", emstream.ConvergenceWarning)
    rng = np.random.default_rng(12345)
    Xa, Xb = case_a(size["n_a"], rng), case_b(size["n_b"], rng)
    cases = [("a", f"(a) {len(Xa):,} x 1-D, K=3, full", Xa, 3, "full"),
             ("b", f"(b) {len(Xb):,} x 10-D, K=8, full", Xb, 8, "full"),
             ("b-diag", f"(b) {len(Xb):,} x 10-D, K=8, diag [info]", Xb, 8, "diag")]

    print(f"emstream {emstream.__version__} vs scikit-learn {sklearn.__version__} | numpy "
          f"{np.__version__} | Python {platform.python_version()} | {os.cpu_count()} CPUs | "
          f"load avg {os.getloadavg()[0]:.2f} | mode={'quick' if args.quick else 'full'} | "
          f"best of {args.repeats}, interleaved")
    print(f"BLAS/OpenMP: {blas_summary()}")
    em_ratio, fitted = report_batch_em(cases, size["max_iter"], args.repeats)
    score_ratio = report_inference(cases[:2], fitted, args.repeats)
    stream = report_streaming(Xa, size["stream_calls"], args.repeats)
    report_targets(em_ratio, score_ratio, stream, args.quick)


def main() -> None:
    print_machine()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, for smoke-checking")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per timing (best kept)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS/OpenMP threads (threadpoolctl); default: leave as is")
    args = parser.parse_args()
    if args.blas_threads is None:
        run(args)
        return
    from threadpoolctl import threadpool_limits
    with threadpool_limits(args.blas_threads):
        run(args)

if __name__ == "__main__":
    main()
