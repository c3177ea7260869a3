"""Shared by the gallery's scripts: run settings of `stability simulate model`, draw panels.

Each script runs a few settings with the Python API (`simulations.plugin_sim`; the command line
`stability simulate model` runs the same), each into its own run folder under --out, and draws
one figure, OUT/<script>.png. ``--quick`` shrinks every size so that the test suite can execute
the scripts in seconds.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from simulations.plugin_sim import PluginSimConfig, run_plugin_simulation
from stability.runs.runfolder import read_summary


def arguments(name: str, description: str) -> argparse.Namespace:
    """--out (default runs/gallery) and --quick."""
    p = argparse.ArgumentParser(prog=f"examples/gallery/{name}.py", description=description)
    p.add_argument("--out", default="runs/gallery", help="folder of the run folders and figure")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds; for the tests)")
    args = p.parse_args()
    args.folder = Path(args.out) / name
    return args


def run(folder: Path, label: str, **config) -> list[dict]:
    """Run (or reuse) one setting in folder/label; its summary rows."""
    out = folder / label
    run_plugin_simulation(PluginSimConfig(**config), out, figures=False)
    return read_summary(out / "summary.csv")


def curve(rows: list[dict], metric: str, lam: float, stat: str = "mean"):
    """t, the mean and its band (mean +- 2 se), or with stat="q50" the median and q05-q95."""
    rs = sorted(
        (r for r in rows if r["metric"] == metric and r["lam"] == lam), key=lambda r: r["t"]
    )
    t, mean, se, q05, q50, q95 = (
        np.array([r[k] for r in rs]) for k in ("t", "mean", "se", "q05", "q50", "q95")
    )
    if stat == "q50":
        return t, q50, (q05, q95)
    return t, mean, (mean - 2 * se, mean + 2 * se)


def figure(path: Path, title: str, panels: list) -> Path:
    """Panels side by side, each (metric label, [(legend, t, y, band, style)]), saved as PNG.

    band is (low, high), shaded; a curve with band None is a reference (a closed form), dotted.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from stability.runs.plots import save_figure

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (ylabel, curves) in zip(axes[0], panels):
        for legend, t, y, band, style in curves:
            if band is None:
                ax.plot(t, y, ":", label=legend, **{"color": "k", "lw": 1.4, **style})
                continue
            line = ax.plot(t, y, label=legend, **style)[0]
            ax.fill_between(t, band[0], band[1], color=line.get_color(), alpha=0.2)
        ax.set_xlabel("retraining iteration t")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    return path


def lam_label(lam: float) -> str:
    return "fully synthetic" if math.isinf(lam) else f"lambda = {lam:g}"
