"""Figures from tidy summaries: each metric against t, one line per (policy, lambda), with bands."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from stability.runs.runfolder import atomic_write_bytes

LOG_METRICS = {"trace_cov", "trace_sqrt_cov", "w2", "theta_err", "mean_err2", "w1", "w2_sliced"}


def _label(policy: str, lam: float) -> str:
    if math.isinf(lam):
        return "fully synthetic" if policy == "mix" else f"{policy}, lam=inf"
    return f"lam={lam:g}" if policy == "mix" else f"{policy}, lam={lam:g}"


def metric_figure(
    rows: list[dict], metric: str, title: str = "", overlays=None, band: str = "quantile"
):
    """A matplotlib figure of `metric` against t from summary rows.

    band = "quantile" shades q05-q95; band = "std" shades mean +- std over runs (Figure 7 style).
    overlays : list of (label, t array, values array, style dict) reference curves.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    for r in rows:
        if r["metric"] == metric:
            groups[(r["policy"], r["lam"])].append(r)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    positive = True
    for (policy, lam), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        rs = sorted(rs, key=lambda r: r["t"])
        t = np.array([r["t"] for r in rs])
        mean = np.array([r["mean"] for r in rs])
        if band == "std":
            sd = np.array([r["se"] * math.sqrt(max(r["runs"], 1)) for r in rs])
            lo, hi = mean - sd, mean + sd
        else:
            lo = np.array([r["q05"] for r in rs])
            hi = np.array([r["q95"] for r in rs])
        style = dict(ls="--", marker="^", markevery=max(1, len(t) // 10)) if math.isinf(lam) else {}
        line = ax.plot(t, mean, label=_label(policy, lam), **style)[0]
        ok = np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(t[ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.18, lw=0)
        positive &= bool(np.all(mean[np.isfinite(mean)] > 0))
    for label, t, values, style in overlays or []:
        ax.plot(t, values, label=label, **style)
    if metric in LOG_METRICS and positive:
        ax.set_yscale("log")
    ax.set_xlabel("retraining iteration t")
    ax.set_ylabel(metric)
    ax.set_title(title or metric)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path) -> None:
    """Save a figure as PNG atomically and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
