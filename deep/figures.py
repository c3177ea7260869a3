"""Figures of deep runs: one run's metrics and samples, and several runs overlaid (Figure 2)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stability.errors import UsageError
from stability.runs.runfolder import atomic_write_text


def run_figures(folder, metrics: dict, generated: Callable[[int], np.ndarray], cfg) -> list[str]:
    """DIR/figures/metrics.png (every metric against t) and samples.png (the first 8 images of
    every iteration, rows t) of a deep run; `generated(t)` gives iteration t's uint8 images
    (N, C, H, W); cfg is the run's DeepConfig. Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from stability.runs.plots import save_figure

    paths = []
    ts = sorted(int(t) for t in metrics)
    names = [k for k in metrics[str(ts[0])] if k != "train_images"]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.plot(ts, [metrics[str(t)][name] for t in ts], "o-")
        ax.set_title(name)
        ax.set_xlabel("iteration t")
    fig.suptitle(
        f"{MODEL_TITLES[cfg.model]} retraining on {cfg.data}, {cfg.policy}, lambda = {cfg.lam:g}"
    )
    fig.tight_layout()
    path = folder.file("figures", "metrics.png")
    save_figure(fig, path)
    paths.append(str(path))
    # A grid of the first 8 images of every iteration (rows: t).
    fig, axes = plt.subplots(len(ts), 8, figsize=(8 * 1.1, len(ts) * 1.1), squeeze=False)
    for i, t in enumerate(ts):
        imgs = generated(t)[:8]
        for j in range(8):
            ax = axes[i, j]
            img = imgs[j].transpose(1, 2, 0)
            ax.imshow(
                img[..., 0] if img.shape[2] == 1 else img,
                cmap="gray" if img.shape[2] == 1 else None,
            )
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(f"t={t}")
    fig.tight_layout()
    path = folder.file("figures", "samples.png")
    save_figure(fig, path)
    paths.append(str(path))
    return paths


MODEL_TITLES = {"edm": "EDM", "otcfm": "OT-CFM", "ddpm": "DDPM"}
COMPARED = ("fid", "precision", "recall", "param_distance")


def compare_runs(runs: list[str | Path], out: str | Path) -> dict:
    """Overlay the per-iteration metrics of several deep runs (one line per run, as Figure 2 does
    per lambda): writes OUT/compare.csv (run, model, policy, lam, t, metric, value) and
    OUT/compare.png; returns their paths and the rows."""
    import csv
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from stability.runs.plots import save_figure

    loaded = []
    for run in runs:
        run = Path(run)
        cfg_path, met_path = run / "config.json", run / "metrics.json"
        if not cfg_path.is_file() or not met_path.is_file():
            raise UsageError(f"{str(run)!r} is not a deep run folder (no config.json/metrics.json)")
        opts = json.loads(cfg_path.read_text())["options"]
        metrics = json.loads(met_path.read_text())
        if not metrics:
            raise UsageError(f"{str(run)!r} has no finished iteration yet")
        loaded.append((run, opts, metrics))
    names = [m for m in COMPARED if any(m in row for _, _, mt in loaded for row in mt.values())]
    if not names:
        names = ["loss"]
    rows = []
    for run, opts, metrics in loaded:
        for t in sorted(metrics, key=int):
            for name in names:
                if name in metrics[t]:
                    rows.append([str(run), opts.get("model", "edm"), opts["policy"], opts["lam"],
                                 int(t), name, metrics[t][name]])  # fmt: skip
    out = Path(out)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run", "model", "policy", "lam", "t", "metric", "value"])
    writer.writerows(rows)
    atomic_write_text(out / "compare.csv", buf.getvalue())
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for _, opts, metrics in loaded:
            ts = sorted(int(t) for t in metrics if name in metrics[t])
            lam = float(opts["lam"])
            label = (
                f"{MODEL_TITLES.get(opts.get('model', 'edm'), '?')}, "
                + ("fully synthetic" if math.isinf(lam) else f"lambda = {lam:g}")
                + ("" if opts["policy"] == "mix" else f" ({opts['policy']})")
            )
            ax.plot(ts, [metrics[str(t)][name] for t in ts], "o-", ms=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("retraining iteration t")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "compare.png")
    return {"csv": str(out / "compare.csv"), "figure": str(out / "compare.png"), "rows": rows}
