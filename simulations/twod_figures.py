"""Figures of a 2D simulation: metric curves and the density grid of Figures 3 and 4.

The density grid is drawn as the paper draws it: one row per lambda, one column per selected
iteration (0, 1, 5, 10, 20, 50, 100, those available), the first column the true density; each
panel a Gaussian kernel density estimate of one run's samples (``scipy.stats.gaussian_kde``,
Scott's bandwidth) on a common grid and a common colour scale (the true density's maximum, so a
mode that collapses shows brighter and smaller, and lost mass shows as a darker mode).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

GRID_ITERATIONS = (0, 1, 5, 10, 20, 50, 100)  # the columns of the density grid, when run
CURVES = ("w1", "w2", "w2_sliced", "param_distance", "mode_weight_tv", "mode_spread_ratio")
TITLES = {
    "param_distance": "||theta_t - theta_0|| / sqrt(p)  (Figure 8)",
    "mode_weight_tv": "total variation of the mode weights from uniform",
    "mode_spread_ratio": "mean per-mode spread / the data's (1 = data)",
}


def grid_columns(iterations: int) -> list[int]:
    """The iterations shown: those of ``GRID_ITERATIONS`` that ran, and always the last."""
    return sorted({t for t in GRID_ITERATIONS if t <= iterations} | {iterations})


def metric_curves(rows: list[dict], out: Path, what: str, iterations: int) -> list[str]:
    """One figure per metric of ``CURVES`` present in the summary rows, with the real floor.

    Parameters
    ----------
    rows : list of dict
        Summary rows (``stability.runs.runfolder.summary_rows``).
    out : Path
        The figures folder; an existing figure is kept.
    what : str
        The setting, printed under each title.
    iterations : int
        T.

    Returns
    -------
    list of str
        The figures' paths.
    """
    from stability.runs.plots import metric_figure, save_figure

    present = {r["metric"] for r in rows}
    paths = []
    for metric in (m for m in CURVES if m in present):
        path = out / f"{metric}.png"
        if not path.exists():
            overlays = []
            floor = [r for r in rows if r["metric"] == f"{metric}_floor"]
            t = np.arange(iterations + 1)
            if floor:
                line = np.full(t.shape, floor[0]["mean"])
                overlays.append(("floor: two real samples", t, line, dict(color="k", ls=":", lw=1)))
            if metric == "mode_spread_ratio":
                overlays.append(("data", t, np.ones(t.shape), dict(color="k", ls=":", lw=1)))
            title = TITLES.get(metric, f"{metric} to held-out real data (Figure 7)")
            fig = metric_figure(rows, metric, f"{title}\n{what}", overlays, band="std")
            save_figure(fig, path)
        paths.append(str(path))
    return paths


def density_grid(
    path: Path, real: np.ndarray, snapshots: list, labels: list[str], columns: list[int], title: str
) -> None:
    """The density grid of Figures 3 and 4 (see the module docstring).

    Parameters
    ----------
    path : Path
        The PNG to write.
    real : ndarray, shape (N, 2)
        Held-out real points (the first column's density).
    snapshots : list of list of ndarray
        Per lambda (row), one run's samples at t = 0..T, each of shape (N_t, 2).
    labels : list of str
        Row labels.
    columns : list of int
        Iterations shown.
    title : str
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from stability.runs.plots import save_figure

    lo, hi = real.min(0) - 1.0, real.max(0) + 1.0
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
    truth = _kde(real, gx, gy)
    vmax = float(truth.max())
    fig, axes = plt.subplots(
        len(snapshots),
        len(columns) + 1,
        figsize=(1.9 * (len(columns) + 1), 1.9 * len(snapshots) + 0.4),
        squeeze=False,
    )
    extent = (lo[0], hi[0], lo[1], hi[1])
    for i, (snaps, label) in enumerate(zip(snapshots, labels)):
        panels = [truth] + [_kde(np.asarray(snaps[t]), gx, gy) for t in columns]
        for j, density in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(density, origin="lower", extent=extent, vmin=0, vmax=vmax, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("true density" if j == 0 else f"t = {columns[j - 1]}", fontsize=9)
        axes[i, 0].set_ylabel(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def _kde(points: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Gaussian KDE of points (N, 2) on the grid (gx, gy), shape gx.shape; 0 if degenerate."""
    from scipy.stats import gaussian_kde

    finite = points[np.all(np.isfinite(points), axis=1)]
    if len(finite) < 3:
        return np.zeros(gx.shape)
    try:
        kde = gaussian_kde(finite.T)
    except np.linalg.LinAlgError:  # all samples on a line or a point: no density to draw
        return np.zeros(gx.shape)
    return kde(np.stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)


def row_label(lam: float) -> str:
    """The row label of a lambda, as in the paper's figures."""
    return "fully synthetic" if math.isinf(lam) else f"lambda = {lam:g}"
