"""Pictures of mixtures: density over a histogram (1 feature), covariance ellipses (2), a grid of
every pair's 2-D projection with each feature's density on the diagonal (3 or more); one mixture,
or two overlaid (``emstream diff --plot``).

A projection of a Gaussian mixture onto some features is exact: the same weights, the means'
and covariances' entries for those features.  Needs matplotlib (``pip install
'emstream[plot]'``); the functions raise ImportError without it.
"""

from __future__ import annotations

import numpy as np

from .compare import full_covariances

MAX_FEATURES = 8  # a grid of 8 x 8 panels is still readable
STYLES = ({"color": "C0", "linestyle": "-"}, {"color": "C3", "linestyle": "--"})


def projection(model, features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means (K, F) and covariances (K, F, F) of ``model`` on the listed features."""
    k, d = model.means_.shape
    covs = full_covariances(model.covariances_, model.covariance_type, k, d)
    index = np.asarray(features)
    return model.weights_, model.means_[:, index], covs[:, index][:, :, index]


def _features(model, features) -> list[int]:
    d = model.means_.shape[1]
    chosen = list(range(d)) if features is None else list(features)
    if not chosen or any(not 0 <= f < d for f in chosen):
        raise ValueError(f"features to plot must lie in 0..{d - 1}, got {chosen}")
    if len(chosen) > MAX_FEATURES:
        raise ValueError(f"the model has {len(chosen)} features; choose at most "
                         f"{MAX_FEATURES} to plot (--features 0,1,...)")
    return chosen


def _density_panel(ax, parts, lo, hi, *, components: bool):
    grid = np.linspace(lo, hi, 800)
    for (label, (weights, means, covs)), style in zip(parts, STYLES):
        sd = np.sqrt(covs[:, 0, 0])
        each = weights[:, None] * np.exp(-0.5 * ((grid - means[:, :1]) / sd[:, None]) ** 2) / (
            sd[:, None] * np.sqrt(2 * np.pi))
        ax.plot(grid, each.sum(axis=0), label=label, linewidth=1.8, **style)
        if components:
            for i, curve in enumerate(each):
                ax.plot(grid, curve, linewidth=0.8, linestyle=":", color=f"C{i % 10}",
                        label=f"component {i}")


def _ellipse_panel(ax, parts, *, components: bool):
    from matplotlib.patches import Ellipse

    for (label, (weights, means, covs)), style in zip(parts, STYLES):
        for i in range(len(weights)):
            values, vectors = np.linalg.eigh(covs[i])
            angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
            color = f"C{i % 10}" if components else style["color"]
            for n_sd in (1, 2):
                ax.add_patch(Ellipse(means[i], 2 * n_sd * np.sqrt(values[-1]),
                                     2 * n_sd * np.sqrt(values[0]), angle=angle, fill=False,
                                     color=color, linestyle=style["linestyle"],
                                     alpha=1.0 if n_sd == 1 else 0.5))
            name = f"component {i} (w={weights[i]:.2f})" if components else (
                label if i == 0 else None)
            ax.plot(*means[i], "x", color=color, label=name)
        ax.autoscale_view()


def _range(parts, data, f: int) -> tuple[float, float]:
    lo = min((means[:, f] - 4 * np.sqrt(covs[:, f, f])).min() for _, (_, means, covs) in parts)
    hi = max((means[:, f] + 4 * np.sqrt(covs[:, f, f])).max() for _, (_, means, covs) in parts)
    if data is not None:
        lo, hi = min(lo, data[:, f].min()), max(hi, data[:, f].max())
    return lo, hi


def draw(models, *, labels=None, data=None, features=None):
    """A matplotlib Figure of one or two fitted mixtures on the chosen features (default all).

    Parameters
    ----------
    models : list of one or two fitted GaussianMixture of the same number of features
    labels : names for the legend (default "mixture", or "A" and "B")
    data : ndarray of shape (n, D), optional; drawn under the first mixture
    features : list of int, optional
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = _features(models[0], features)
    labels = labels or (["mixture"] if len(models) == 1 else ["A", "B"])
    parts = [(label, projection(m, chosen)) for label, m in zip(labels, models)]
    shown = None if data is None else data[:, chosen]
    one = len(models) == 1
    n = len(chosen)
    if n <= 2:
        fig, ax = plt.subplots(figsize=(8, 5))
        if n == 1:
            if shown is not None:
                ax.hist(shown[:, 0], bins=min(100, max(10, len(shown) // 5)), density=True,
                        color="0.85", label="data")
            _density_panel(ax, parts, *_range(parts, shown, 0), components=one)
            ax.set_xlabel(f"feature {chosen[0]}")
            ax.set_ylabel("density")
        else:
            if shown is not None:
                ax.scatter(shown[:, 0], shown[:, 1], s=3, color="0.6", label="data")
            _ellipse_panel(ax, parts, components=one)
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_xlabel(f"feature {chosen[0]}")
            ax.set_ylabel(f"feature {chosen[1]}")
        _as_written(ax.legend(loc="best", fontsize="small"))
        fig.tight_layout()
        return fig
    fig, axes = plt.subplots(n, n, figsize=(2.2 * n + 1, 2.2 * n + 1), squeeze=False)
    for row in range(n):
        for col in range(n):
            ax = axes[row, col]
            if row == col:
                if shown is not None:
                    ax.hist(shown[:, row], bins=min(50, max(10, len(shown) // 10)),
                            density=True, color="0.85")
                single = [(label, (w, m[:, [row]], c[:, [row]][:, :, [row]]))
                          for label, (w, m, c) in parts]
                _density_panel(ax, single, *_range(parts, shown, row), components=False)
            else:
                if shown is not None:
                    ax.scatter(shown[:, col], shown[:, row], s=1, color="0.6")
                pair = [col, row]  # x: the column's feature, y: the row's
                projected = [(label, (w, m[:, pair], c[:, pair][:, :, pair]))
                             for label, (w, m, c) in parts]
                _ellipse_panel(ax, projected, components=one)
            if row == n - 1:
                ax.set_xlabel(f"feature {chosen[col]}")
            if col == 0:
                ax.set_ylabel(f"feature {chosen[row]}")
            ax.tick_params(labelsize="x-small")
    handles, names = axes[0, 1].get_legend_handles_labels()
    _as_written(fig.legend(handles, names, loc="upper center", ncol=min(len(names), 4),
                           fontsize="small"))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (2.2 * n + 1)))  # room for the legend on top
    return fig


def _as_written(legend):
    """A legend whose labels (file names among them) are drawn as written: ``a$x^$.json``
    was read as mathematics and failed to draw."""
    for text in legend.get_texts():
        text.set_parse_math(False)
    return legend


def _save(fig, path) -> None:
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path)
    finally:
        plt.close(fig)


def plot_mixture(model, path, *, data=None, features=None) -> None:
    """Draw ``model`` to the image file ``path`` (png, svg, pdf: from the extension), over
    ``data`` (shape (n, D)) if given; 3 or more features as a grid of pairs."""
    _save(draw([model], data=data, features=features), path)


def plot_diff(a, b, path, *, labels=("A", "B"), features=None) -> None:
    """Draw two mixtures overlaid (``a`` solid, ``b`` dashed) to the image file ``path``."""
    if a.means_.shape[1] != b.means_.shape[1]:
        raise ValueError(f"the models have {a.means_.shape[1]} and {b.means_.shape[1]} "
                         "features; they cannot be drawn together")
    _save(draw([a, b], labels=list(labels), features=features), path)
