"""A copy of the NAB kit with outages and dropped readings cut into its real series.

Real monitoring data has holes: an agent restarts, a collector is down for a night, readings
go missing one by one.  The kit's series are nearly gap-free (the ad exchange ones and two
known-cause ones aside), so they cannot show whether the time-series features survive holes.
This script writes a copy of the kit whose series have them, with the kit's labels, scorer
and profiles unchanged, for ``bench_nab.py --kit``:

    python benchmarks/nab_gaps.py /tmp/nab-gaps
    python benchmarks/bench_nab.py --kit /tmp/nab-gaps

Per series (seeded by its place in the sorted list, so every run writes the same copy): three
outages of 2 to 36 hours (every row in the span removed; never touching a labelled window, the
first tenth of the series or more than an eighth of it), then 3% of the other rows outside the
windows dropped one by one.  The published detectors' scores the scorer prints beside yours are
the kit's, on the series without holes: compare your own runs, not those rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUTAGES, SHORTEST, LONGEST, DROPPED = 3, 2 * 3600.0, 36 * 3600.0, 0.03


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp[:19]).timestamp()


def holes(times: np.ndarray, windows: list, rng: np.random.Generator) -> np.ndarray:
    """Which rows to keep, shape (n,) bool: the outages and dropped rows described above."""
    n = times.shape[0]
    labelled = np.zeros(n, dtype=bool)
    for start, end in windows:
        labelled |= (times >= _seconds(start)) & (times <= _seconds(end))
    keep = np.ones(n, dtype=bool)
    for _ in range(OUTAGES):
        for _attempt in range(50):
            first = int(rng.integers(n // 10, n))
            span = (times >= times[first]) & (times < times[first] + rng.uniform(SHORTEST,
                                                                                  LONGEST))
            if not (span & labelled).any() and span.sum() < n // 8:
                keep &= ~span
                break
    keep &= ~((rng.random(n) < DROPPED) & ~labelled)
    return keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where the copy goes (replaced if it exists)")
    parser.add_argument("--kit", type=Path, default=ROOT.parent / "shared" / "nab")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(args.kit, args.out, ignore=shutil.ignore_patterns("data"))
    windows = json.loads((args.kit / "labels" / "combined_windows.json").read_text())
    for place, path in enumerate(sorted((args.kit / "data").glob("*/*.csv"))):
        relative = path.relative_to(args.kit / "data").as_posix()
        with open(path, newline="") as f:
            header, *rows = list(csv.reader(f))
        times = np.array([_seconds(row[0]) for row in rows])
        keep = holes(times, windows.get(relative, []), np.random.default_rng(place))
        target = args.out / "data" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(row for row, kept in zip(rows, keep) if kept)
        print(f"{relative}: {len(rows) - int(keep.sum())} of {len(rows)} rows removed")


if __name__ == "__main__":
    main()
