"""Pictures of a mixture: density over a histogram (1-D), covariance ellipses (2-D).

Needs matplotlib (``pip install 'emstream[plot]'``); importing this module without it raises
ImportError.
"""

from __future__ import annotations

import numpy as np

from .compare import full_covariances


def plot_mixture(model, path, *, data=None) -> None:
    """Draw ``model`` (1-D or 2-D) to the image file ``path``, over ``data`` if given.

    Parameters
    ----------
    model : fitted GaussianMixture
    path : str or path-like
        Output file; the format follows the extension (png, svg, pdf).
    data : ndarray of shape (n, D), optional
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    k, d = model.means_.shape
    if d not in (1, 2):
        raise ValueError(f"plots are drawn for 1-D and 2-D models; this one has {d} features")
    covs = full_covariances(model.covariances_, model.covariance_type, k, d)
    fig, ax = plt.subplots(figsize=(8, 5))
    if d == 1:
        sd = np.sqrt(covs[:, 0, 0])
        lo = min((model.means_[:, 0] - 4 * sd).min(), data.min() if data is not None else np.inf)
        hi = max((model.means_[:, 0] + 4 * sd).max(), data.max() if data is not None else -np.inf)
        grid = np.linspace(lo, hi, 800)[:, None]
        if data is not None:
            ax.hist(data[:, 0], bins=min(100, max(10, len(data) // 5)), density=True,
                    color="0.85", label="data")
        ax.plot(grid[:, 0], np.exp(model.score_samples(grid)), color="k", label="mixture")
        for i in range(k):
            z = (grid[:, 0] - model.means_[i, 0]) / sd[i]
            ax.plot(grid[:, 0], model.weights_[i] * np.exp(-0.5 * z**2) / (sd[i] * np.sqrt(2 * np.pi)),
                    linestyle="--", label=f"component {i}")
        ax.set_xlabel("x")
        ax.set_ylabel("density")
    else:
        if data is not None:
            ax.scatter(data[:, 0], data[:, 1], s=3, color="0.6", label="data")
        for i in range(k):
            values, vectors = np.linalg.eigh(covs[i])
            angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
            for n_sd in (1, 2):
                ax.add_patch(Ellipse(model.means_[i], 2 * n_sd * np.sqrt(values[-1]),
                                     2 * n_sd * np.sqrt(values[0]), angle=angle, fill=False,
                                     color=f"C{i}", alpha=1.0 if n_sd == 1 else 0.5))
            ax.plot(*model.means_[i], "x", color=f"C{i}",
                    label=f"component {i} (w={model.weights_[i]:.2f})")
        ax.autoscale_view()
        ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
