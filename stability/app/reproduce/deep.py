"""The deep part of the report: EDM retrained on the bundled digits (Figure 2 at toy scale).

Two ``deep retrain`` runs (`deep.retrain.run_deep`) under ``out/parts/deep``: lambda = 1, which
fits the t = 0 network on the real data, and fully synthetic, which starts from that network (as
in the paper every lambda fine-tunes the same pretrained model). One section, "deep-digits":
FID, precision and recall per iteration; the verdict is the ordering at the last iteration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from stability.app.reproduce.section import EngineClock, Section, pyplot, save
from stability.app.reproduce.sizes import DeepSize, ReproduceSize

LAMBDAS = (1.0, math.inf)
METRICS = ("fid", "precision", "recall")


@dataclass(frozen=True)
class DeepRun:
    """One ``deep retrain`` run of the part: its lambda, folder and the keyword arguments of
    `deep.retrain.quick_config` (its DeepConfig)."""

    lam: float
    folder: Path
    options: dict


def plan(size: DeepSize, seed: int, folder: Path) -> list[DeepRun]:
    """The part's runs in the order they must run: lambda = 1 fits the t = 0 network, fully
    synthetic starts from it."""
    common = dict(
        data="digits",
        resolution=size.resolution,
        n=size.real_images,
        iterations=size.iterations,
        kimg=size.kimg_per_iteration,
        n_gen=size.generated_images,
        batch=size.batch_size,
        sampler_steps=size.sampler_steps,
        lr=size.learning_rate,
        lr_rampup_kimg=size.lr_rampup_kimg,
        ema_halflife_kimg=size.ema_halflife_kimg,
        seed=seed,
    )
    first = folder / "lam_1"
    return [
        DeepRun(1.0, first, dict(common, lam=1.0, init_kimg=size.initial_kimg)),
        DeepRun(
            math.inf,
            folder / "lam_inf",
            dict(
                common,
                lam=math.inf,
                init=str(first / "checkpoints" / "train_t0.pt"),
                init_kimg=0.0,
            ),
        ),
    ]


def part_deep(out: Path, size: ReproduceSize, seed: int, clock: EngineClock) -> list[Section]:
    """Run (or resume) both runs and return the section "deep-digits"."""
    results = {}
    for run in plan(size.deep, seed, out / "parts" / "deep"):
        with clock.running():
            from deep.retrain import quick_config, run_deep

            results[run.lam] = run_deep(quick_config(**run.options), run.folder)["metrics"]
    T = size.deep.iterations
    figure = metrics_figure(out, results)
    fid = {lam: results[lam][str(T)]["fid"] for lam in results}
    prec = {lam: results[lam][str(T)]["precision"] for lam in results}
    holds = fid[math.inf] > fid[1.0] and prec[math.inf] < prec[1.0]

    def path(lam, name, fmt):
        return " -> ".join(format(results[lam][str(t)][name], fmt) for t in range(T + 1))

    return [
        Section(
            "deep-digits",
            "deep",
            "EDM on digits: fully synthetic ends farther from the data than lambda = 1",
            "Fully synthetic retraining degrades FID; with real data mixed in it stays close",
            "Figure 2 (EDM rows), at toy scale",
            "holds" if holds else "inconclusive",
            f"FID for t = 0..{T}: {path(1.0, 'fid', '.0f')} with lambda = 1, "
            f"{path(math.inf, 'fid', '.0f')} fully synthetic; precision "
            f"{path(1.0, 'precision', '.2f')} vs {path(math.inf, 'precision', '.2f')} (features "
            "of a small network trained on the real digits). At this toy budget FID rises with "
            "lambda = 1 too, partly because every retraining restarts the learning-rate and EMA "
            "ramps as in the paper's code (`--rampup continue` halves the rise of the quick EDM "
            "run); only the ordering at the last iteration is the verdict.",
            numbers={f"{lam:g}": results[lam][str(T)] for lam in results},
            figures=[figure],
        )
    ]


def metrics_figure(out: Path, results: dict) -> str:
    """FID, precision and recall against t, one line per lambda."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, name in zip(axes, METRICS):
        for lam, m in results.items():
            ts = sorted(int(t) for t in m)
            label = "fully synthetic" if math.isinf(lam) else f"lambda = {lam:g}"
            ax.plot(ts, [m[str(t)][name] for t in ts], "o-", label=label)
        ax.set_title(name)
        ax.set_xlabel("iteration t")
    axes[0].legend()
    fig.suptitle("EDM retrained on 16x16 digits (digits feature network)")
    fig.tight_layout()
    return save(fig, out / "figures" / "deep_digits.png")
