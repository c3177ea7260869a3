"""Figures of a Gaussian retraining run (`stability simulate gaussian`), drawn from its summary.

One PNG per metric against t, a line and a 5-95% band per lambda (`stability.runs.plots`);
on tr sqrt(Sigma_t) of the fully synthetic runs, the collapse rate of Proposition 1,
alpha(n)^t (eq 19), and in dimension 2 or 3 the multivariate rate alpha_d(n)^t (Lemma A.2).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simulations.gaussian import METRIC_DOC, METRICS

if TYPE_CHECKING:
    from simulations.gaussian_sim import GaussianSimConfig


def _alpha_overlays(cfg: GaussianSimConfig, rows: list[dict]):
    """alpha(n)^t (Proposition 1) scaled to the fully synthetic run's t = 0 mean."""
    from stability import rates

    start = [
        r for r in rows if r["metric"] == "trace_sqrt_cov" and math.isinf(r["lam"]) and r["t"] == 0
    ]
    if not start or cfg.policy != "mix":
        return []
    t = np.arange(cfg.iterations + 1)
    scale = start[0]["mean"]
    # One refit multiplies E[sqrt(variance)] by alpha(n) with the unbiased estimator (eq 19);
    # the maximum-likelihood estimator adds sqrt((n-1)/n).
    step = 1.0 if cfg.estimator == "unbiased" else math.sqrt((cfg.n - 1) / cfg.n)
    overlays = [
        (
            "alpha(n)^t (Prop. 1, 1D rate)",
            t,
            scale * (rates.alpha(cfg.n) * step) ** t,
            dict(color="k", ls=":", lw=1.2),
        )
    ]
    if cfg.dim > 1 and cfg.dim <= 3 and cfg.n - 1 >= cfg.dim and cfg.n <= rates.QUADRATURE_MAX_N:
        a_d = rates.alpha_d_quadrature(cfg.n, cfg.dim)
        overlays.append(
            (
                f"alpha_{cfg.dim}(n)^t (Lemma A.2)",
                t,
                scale * (a_d * step) ** t,
                dict(color="gray", ls="-.", lw=1.0),
            )
        )
    return overlays


def draw_figure(cfg: GaussianSimConfig, rows: list[dict], metric: str, path: Path) -> None:
    """Draw one metric against t from the summary rows and save it as a PNG at `path`.

    Parameters
    ----------
    cfg : GaussianSimConfig
        The run's resolved configuration (title, and n, d, policy for the overlays).
    rows : list of dict
        Summary rows (`stability.runs.runfolder.read_summary`), at least those of `metric`.
    metric : str
    path : Path
    """
    from stability.runs.plots import metric_figure, save_figure

    overlays = _alpha_overlays(cfg, rows) if metric == "trace_sqrt_cov" else None
    title = f"{METRIC_DOC[metric]}\n{cfg.policy}, n={cfg.n}, d={cfg.dim}, {cfg.runs} runs ({cfg.engine})"
    save_figure(metric_figure(rows, metric, title, overlays), path)


def write_figures(cfg: GaussianSimConfig, rows: list[dict], folder: Path) -> list[str]:
    """One PNG per metric, drawn from the summary rows (existing files are kept).

    Parameters
    ----------
    cfg : GaussianSimConfig
    rows : list of dict
        The summary rows (`stability.runs.runfolder.read_summary`).
    folder : Path
        Where the figures go.
    """
    paths = []
    for metric in METRICS:
        path = Path(folder) / f"{metric}.png"
        if not path.exists():
            draw_figure(cfg, [r for r in rows if r["metric"] == metric], metric, path)
        paths.append(str(path))
    return paths
