"""Fit the project's headline series (shared/seeds/003) by batch EM and by online EM.

Run: python examples/seed_series.py

The 50-point series has 13 repeats of 44.4457: the likelihood's global maximum is a degenerate
spike on that value, which naive EM from random starts falls into.  emstream's batch EM starts
from the best of several k-means++ seedings and lands on the same proper solution for every
random_state.  Online EM sees the points one at a time, in time order, after a 20-point warm-up
(11 of whose points are that repeat); a variance floor in the data's units (reg_covar=1e-2,
about 2e-4 of the series' variance) keeps it off the spike.
"""

from pathlib import Path

import numpy as np

from emstream import GaussianMixture

series = np.loadtxt(Path(__file__).with_name("seed_series.txt"))[:, None]


def show(title: str, gm: GaussianMixture) -> None:
    print(f"{title}  (average log-likelihood {gm.score(series):.4f})")
    print("  component   weight     mean   std dev")
    for k in np.argsort(gm.means_.ravel()):
        print(f"  {k:9d} {gm.weights_[k]:8.3f} {gm.means_[k, 0]:8.3f} "
              f"{np.sqrt(gm.covariances_.ravel()[k]):9.3f}")


batch = GaussianMixture(3, random_state=0).fit(series)
show(f"Batch EM (k-means++ start, {batch.n_iter_} iterations)", batch)

online = GaussianMixture(3, warmup_size=20, reg_covar=1e-2, random_state=0)
for row in series:  # one observation at a time, in time order
    online.partial_fit(row[None, :])
show(f"Online EM ({online.n_seen_} points, one pass in time order)", online)
