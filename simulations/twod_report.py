"""Numbers and figures of a 2D run folder, finished or still running (Figures 3 and 4).

``python -m simulations.twod_report DIR [--at 0 10 50 100] [--figures PREFIX]`` reads the
folder's ``config.json`` and its group checkpoints (written after every iteration), prints each
lambda's W2, ``mode_weight_tv`` and ``mode_spread_ratio`` at the chosen iterations as mean +- se
over runs, and with one run the se of the mode metrics within the run: over the 8 modes for the
spread ratio (the standard error of the mean of the 8 per-mode ratios) and by a multinomial
bootstrap of the mode counts for the total variation, both from run 0's snapshot of n_eval
samples. ``--figures PREFIX`` writes PREFIX_density.png (the density grid) and
PREFIX_<metric>.png (the curves) for the iterations done so far.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from simulations.twod_modes import has_modes, mode_statistics


def load_run(folder: Path):
    """The simulation of a run folder and each lambda's metric history so far.

    Returns
    -------
    sim : TwoDSimulation
    histories : dict of int to dict of str to ndarray, shape (R, t + 1)
    """
    import torch

    from simulations.twod_sim import TwoDConfig, TwoDSimulation

    options = json.loads((folder / "config.json").read_text())["options"]
    options["lams"] = tuple(math.inf if v == "inf" else v for v in options["lams"])
    sim = TwoDSimulation(TwoDConfig(**options), folder)
    histories = {}
    for lis in sim.groups():
        name = "lam" + "-".join(map(str, lis)) + ".pt"
        ck = torch.load(folder / "checkpoints" / name, weights_only=True)
        for li in lis:
            h = ck["histories"][str(li)]
            histories[li] = {k: np.stack([np.asarray(v) for v in vals], 1) for k, vals in h.items()}
    return sim, histories


def within_run_se(samples: np.ndarray, data: str, rng: np.random.Generator) -> tuple[float, float]:
    """Standard errors of mode_weight_tv and mode_spread_ratio within one run's samples (N, 2)."""
    from simulations.data import mode_centres_and_spread

    centres, spread = mode_centres_and_spread(data)
    weights, spreads = mode_statistics(samples[None], centres)
    counts = rng.multinomial(len(samples), weights[0], size=400) / len(samples)
    tv = 0.5 * np.abs(counts - 1 / len(centres)).sum(1)
    ratios = spreads[0][np.isfinite(spreads[0])] / spread
    return float(tv.std(ddof=1)), float(ratios.std(ddof=1) / math.sqrt(len(ratios)))


def table(sim, histories: dict, at: list[int]) -> list[str]:
    """Lines of the report: per lambda and iteration, each metric's mean +- se."""
    cfg = sim.cfg
    modes = has_modes(cfg.data)
    metrics = ["w2", "w2_sliced"] + (["mode_weight_tv", "mode_spread_ratio"] if modes else [])
    lines = ["lambda  t    " + "  ".join(f"{m:>22}" for m in metrics)]
    rng = np.random.default_rng(0)
    for li, lam in enumerate(cfg.lams):
        h = histories[li]
        snaps = sim.snapshots(li)
        for t in (t for t in at if t < h["w2"].shape[1]):
            cells = []
            for m in metrics:
                v = h[m][:, t]
                se = v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else math.nan
                cells.append(f"{v.mean():.4f} +- {se:.4f}")
            if modes and cfg.runs == 1:
                se_tv, se_sp = within_run_se(np.asarray(snaps[t]), cfg.data, rng)
                cells[-2] = f"{h['mode_weight_tv'][0, t]:.4f} +- {se_tv:.4f}w"
                cells[-1] = f"{h['mode_spread_ratio'][0, t]:.4f} +- {se_sp:.4f}w"
            lines.append(f"{lam:<7g} {t:<4d} " + "  ".join(f"{c:>22}" for c in cells))
    import torch

    floor = torch.load(sim.folder.file("checkpoints", "t0.pt"), weights_only=True)["floor"]
    w2 = np.asarray(floor["w2_floor"])
    lines.append(f"floor (W2 between two real samples of n_eval points): {w2.mean():.4f}")
    lines.append("t = 0 is the shared fit on the real data; w: se within run 0 (module docstring)")
    return lines


def figures(sim, histories: dict, prefix: str) -> list[str]:
    """The density grid and metric curves of the iterations done so far, as PREFIX_*.png."""
    import shutil
    import tempfile

    from simulations.twod_figures import density_grid, grid_columns, metric_curves, row_label
    from simulations.twod_job import RealData
    from stability.runs.runfolder import read_summary, summary_rows, write_summary

    cfg = sim.cfg
    done = min(h["w2"].shape[1] for h in histories.values()) - 1
    rows = []
    for li, lam in enumerate(cfg.lams):
        for m, v in histories[li].items():
            rows.extend(summary_rows(cfg.policy, lam, m, v[:, : done + 1]))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        # through the CSV, as the figures of a finished run read their rows
        write_summary(Path(tmp) / "summary.csv", rows)
        rows = read_summary(Path(tmp) / "summary.csv")
        model = cfg.fm if cfg.model == "flow" else "DDPM"
        what = f"{cfg.model} ({model}), {cfg.data}, n={cfg.n}, {cfg.runs} runs, t <= {done}"
        for path in metric_curves(rows, Path(tmp), what, done):
            dest = f"{prefix}_{Path(path).name}"
            shutil.copy(path, dest)
            out.append(dest)
    real = RealData(cfg, sim.source, [0]).heldout[0]
    dest = f"{prefix}_density.png"
    density_grid(
        Path(dest),
        real,
        [sim.snapshots(i) for i in range(len(cfg.lams))],
        [row_label(lam) for lam in cfg.lams],
        grid_columns(done),
        f"{cfg.model}, {cfg.data}, n = {cfg.n}: densities of run 0 ({cfg.n_eval} samples each)",
    )
    return out + [dest]


def main(argv=None) -> int:
    """``python -m simulations.twod_report FOLDER [--at T ...] [--figures PREFIX]``.

    Prints each metric's value per lambda at the iterations ``--at`` from a running or finished
    2D run folder (its checkpoints), and with ``--figures`` draws the density grid and curves.
    Returns the exit code (0).
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--at", type=int, nargs="+", default=[0, 10, 50, 100])
    p.add_argument("--figures", default=None, help="write PREFIX_density.png, PREFIX_<metric>.png")
    args = p.parse_args(argv)
    sim, histories = load_run(args.folder)
    print("\n".join(table(sim, histories, args.at)))
    if args.figures:
        print("\n".join(figures(sim, histories, args.figures)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
