"""The deep part of the report: Figure 2 at toy scale, EDM retrained on the bundled digits.

As Figure 2 is drawn: lambda in {0, 0.5, 1, inf} (lambda = 0, retraining on real data only, is
the control), FID, precision and recall against the retraining iteration, mean and standard
error over independent seeds. Each (seed, lambda) is one ``deep retrain`` run
(`deep.retrain.run_deep`) under ``out/parts/deep/seed{s}/lam_{lambda}``; within a seed every
lambda starts from the same t = 0 network (lambda = 0's fit on the real data, as in the paper
every lambda fine-tunes the same pretrained model) and generates from the same seeds, so at
t = 0 their metrics are equal and afterwards only the data policy differs.

Work shared rather than repeated (`share_t0`, `share_features`): the t = 0 stage of a seed (the
fitted network, its generated images, their metrics) is computed once, by the baseline, and
handed to the seed's other lambdas through the run folders' resume files, so each of them starts
at t = 1 with exactly the state it would have computed; the digits feature network and the real
images' features (one per part: they depend on the real images only) are trained once and
handed to every later run the same way. No run draws its own figures: the part draws one.

The verdict compares each lambda with the lambda = 0 baseline at the last iteration T, Monte-Carlo
style: per seed the difference FID(lambda) - FID(0) at T (paired: both runs share the seed's
t = 0 network and generation seeds, so the noise of FID on a few hundred images, which moves
every lambda of a seed together, cancels), its mean over the seeds against its standard error,
with Student's t critical value for seeds - 1 degrees of freedom (two-sided 95%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from stability.app.reproduce.section import EngineClock, Section, pyplot, save
from stability.app.reproduce.share import share_features, share_t0
from stability.app.reproduce.sizes import DeepSize, ReproduceSize
from stability.runs.runfolder import summary_rows, write_summary

LAMBDAS = (0.0, 0.5, 1.0, math.inf)
BASELINE = 0.0  # the control: retraining on real data only; it fits the shared t = 0 network
METRICS = ("fid", "precision", "recall")
LEVEL = 0.95  # two-sided level of every comparison with the baseline
# Figure 2's line styles: the baseline dashed black with circles, lambda = 1 solid yellow,
# fully synthetic dashed red with triangles.
STYLES = {
    0.0: dict(color="k", ls="--", marker="o"),
    0.5: dict(color="tab:orange", ls="-", marker="s"),
    1.0: dict(color="gold", ls="-", marker="o"),
    math.inf: dict(color="tab:red", ls="--", marker="^"),
}


@dataclass(frozen=True)
class DeepRun:
    """One ``deep retrain`` run of the part.

    Attributes
    ----------
    seed : int
        The run's seed (network initialisation, minibatches, noise, generation seeds).
    lam : float
        lambda of Algorithm 1 (inf: fully synthetic).
    folder : Path
        Its run folder.
    options : dict
        Keyword arguments of `deep.retrain.quick_config` (the run's DeepConfig).
    """

    seed: int
    lam: float
    folder: Path
    options: dict


def run_seeds(size: DeepSize, seed: int) -> tuple[int, ...]:
    """The seeds of the replicates: seed, seed + 1, ..., seed + size.seeds - 1."""
    return tuple(seed + k for k in range(size.seeds))


def plan(size: DeepSize, seed: int, folder: Path) -> list[DeepRun]:
    """Every run of the part, in the order they must run: per seed, the baseline first (it fits
    the t = 0 network on the real data), then the other lambdas starting from that network."""
    common = dict(
        data="digits",
        resolution=size.resolution,
        n=size.real_images,
        iterations=size.iterations,
        kimg=size.kimg_per_iteration,
        n_gen=size.real_images,
        batch=size.batch_size,
        sampler_steps=size.sampler_steps,
        lr=size.learning_rate,
        lr_rampup_kimg=size.lr_rampup_kimg,
        ema_halflife_kimg=size.ema_halflife_kimg,
        rampup=size.rampup,
    )
    runs = []
    for s in run_seeds(size, seed):
        first = run_folder(folder, s, BASELINE)
        for lam in (BASELINE, *(lam for lam in LAMBDAS if lam != BASELINE)):
            if lam == BASELINE:
                start = dict(init_kimg=size.initial_kimg)
            else:
                start = dict(init=str(first / "checkpoints" / "train_t0.pt"), init_kimg=0.0)
            options = dict(common, lam=lam, seed=s, **start)
            runs.append(DeepRun(s, lam, run_folder(folder, s, lam), options))
    return runs


def run_folder(folder: Path, seed: int, lam: float) -> Path:
    """The run folder of (seed, lambda) under the part's folder."""
    return folder / f"seed{seed}" / f"lam_{lam:g}"


def part_deep(out: Path, size: ReproduceSize, seed: int, clock: EngineClock) -> list[Section]:
    """Run (or resume) every (seed, lambda) run and return the section "deep-digits"."""
    folder = out / "parts" / "deep"
    metrics = {}
    runs = plan(size.deep, seed, folder)
    for run in runs:
        share_features(runs[0].folder, run.folder)
        if run.lam != BASELINE:
            share_t0(run_folder(folder, run.seed, BASELINE), run.folder)
        with clock.running():
            from deep.retrain import quick_config, run_deep

            result = run_deep(quick_config(**run.options), run.folder, figures=False)
        metrics[run.seed, run.lam] = result["metrics"]
    seeds = run_seeds(size.deep, seed)
    values = metric_arrays(metrics, seeds, size.deep.iterations)
    write_summary(folder / "summary.csv", tidy_rows(values))
    figure = metrics_figure(out, values, size.deep)
    return [digits_section(values, size.deep, figure)]


def metric_arrays(metrics: dict, seeds: tuple[int, ...], iterations: int) -> dict:
    """The runs' metrics as arrays: ``values[lam][name]`` of shape (seeds, iterations + 1).

    Parameters
    ----------
    metrics : dict
        (seed, lambda) -> the run's metrics.json (iteration t as a string -> metric -> value).
    """
    return {
        lam: {
            name: np.array(
                [[metrics[s, lam][str(t)][name] for t in range(iterations + 1)] for s in seeds]
            )
            for name in METRICS
        }
        for lam in LAMBDAS
    }


def tidy_rows(values: dict) -> list[dict]:
    """summary.csv rows (policy mix, lam, t, metric, runs = seeds, mean, se, quantiles)."""
    return [
        row
        for lam in LAMBDAS
        for name in METRICS
        for row in summary_rows("mix", lam, name, values[lam][name])
    ]


@dataclass(frozen=True)
class Comparison:
    """The mean over seeds of per-seed differences, with its standard error.

    Attributes
    ----------
    diff : float
        Mean over seeds of the per-seed differences.
    se : float
        Its standard error (NaN with one seed).
    critical : float
        Student's t critical value (two-sided, `LEVEL`) for seeds - 1 degrees of freedom.
    """

    diff: float
    se: float
    critical: float

    @property
    def lower(self) -> float:
        """Lower end of the confidence interval of the difference (NaN with one seed)."""
        return self.diff - self.critical * self.se

    def as_dict(self) -> dict:
        """The fields and the interval's lower end, for results.json."""
        return {"diff": self.diff, "se": self.se, "critical": self.critical, "lower": self.lower}


def paired(differences: np.ndarray) -> Comparison:
    """Mean, standard error and t critical value of per-seed differences, shape (seeds,)."""
    d = np.asarray(differences, dtype=float)
    if d.size < 2:
        return Comparison(float(d.mean()), math.nan, math.nan)
    se = float(d.std(ddof=1) / math.sqrt(d.size))
    critical = float(stats.t.ppf(0.5 + LEVEL / 2, d.size - 1))
    return Comparison(float(d.mean()), se, critical)


def difference(values: dict, lam: float, name: str = "fid") -> np.ndarray:
    """Per seed, metric(lambda) - metric(baseline) at the last iteration, shape (seeds,)."""
    return values[lam][name][:, -1] - values[BASELINE][name][:, -1]


def baseline_comparisons(values: dict, name: str = "fid") -> dict[float, Comparison]:
    """Every lambda but the baseline against it: the paired difference of metric `name` at T."""
    return {lam: paired(difference(values, lam, name)) for lam in LAMBDAS if lam != BASELINE}


def baseline_drift(values: dict, name: str = "fid") -> Comparison:
    """What retraining alone does: per seed, the baseline's metric at T minus at t = 0."""
    v = values[BASELINE][name]
    return paired(v[:, -1] - v[:, 0])


def verdict(values: dict) -> str:
    """Figure 2's claim on FID at the last iteration, against the lambda = 0 baseline.

    "holds": fully synthetic ends above the baseline (the confidence interval of the paired
    difference excludes 0) and every finite lambda's difference is below half of fully
    synthetic's. "fails": fully synthetic ends above the baseline and a finite lambda ends
    significantly beyond that halfway point (its per-seed difference minus half the fully
    synthetic one has a confidence interval above 0). Anything else, one seed included, is
    "inconclusive".
    """
    comparisons = baseline_comparisons(values)
    synthetic = comparisons[math.inf]
    if not synthetic.lower > 0:
        return "inconclusive"
    finite = [lam for lam in LAMBDAS if math.isfinite(lam) and lam != BASELINE]
    half = difference(values, math.inf) / 2
    if any(paired(difference(values, lam) - half).lower > 0 for lam in finite):
        return "fails"
    if all(comparisons[lam].diff < synthetic.diff / 2 for lam in finite):
        return "holds"
    return "inconclusive"


def lam_label(lam: float) -> str:
    """How a lambda is named in the report."""
    return "fully synthetic" if math.isinf(lam) else f"lambda = {lam:g}"


def metrics_figure(out: Path, values: dict, size: DeepSize) -> str:
    """FID, precision and recall against t, one line per lambda with mean +- one standard
    error over the seeds (Figure 2's layout)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(11, 3.4))
    ts = np.arange(size.iterations + 1)
    for ax, name in zip(axes, METRICS):
        for i, lam in enumerate(LAMBDAS):
            v = values[lam][name]
            se = v.std(axis=0, ddof=1) / math.sqrt(len(v)) if len(v) > 1 else None
            # A small horizontal offset per lambda keeps the error bars apart.
            ax.errorbar(ts + 0.04 * (i - 1.5), v.mean(axis=0), yerr=se, ms=4, capsize=2,
                        label=lam_label(lam), **STYLES[lam])  # fmt: skip
        ax.set_title(name)
        ax.set_xlabel("retraining iteration t")
        ax.set_xticks(ts)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"EDM retrained on {size.resolution}x{size.resolution} digits: mean +- se over "
        f"{size.seeds} seeds (digits feature network)"
    )
    fig.tight_layout()
    return save(fig, out / "figures" / "deep_digits.png")


def digits_section(values: dict, size: DeepSize, figure: str) -> Section:
    """The section "deep-digits": the verdict, a table per lambda, every number."""
    comparisons = {m: baseline_comparisons(values, m) for m in METRICS}
    numbers = {
        f"{lam:g}": {
            **{
                m: {"mean": values[lam][m].mean(axis=0), "se": _se(values[lam][m])} for m in METRICS
            },
            **{
                f"{m}_minus_baseline": comparisons[m][lam].as_dict()
                for m in METRICS
                if lam != BASELINE
            },
        }
        for lam in LAMBDAS
    }
    drift = baseline_drift(values)
    numbers |= {"baseline_fid_drift": drift.as_dict(), "seeds": size.seeds}
    fid, precision = comparisons["fid"], comparisons["precision"]
    T = size.iterations
    return Section(
        "deep-digits",
        "deep",
        "EDM on digits, Figure 2's lambdas: fully synthetic drifts away, mixed data stays near "
        "the real-data baseline",
        "Fully synthetic retraining degrades FID; with real data mixed in (lambda = 0.5, 1) FID "
        "stays close to retraining on real data only (lambda = 0)",
        "Figure 2 (EDM rows), at toy scale",
        verdict(values),
        f"{size.seeds} seeds; n = {size.real_images} digits at {size.resolution}x"
        f"{size.resolution}; {T} retrainings of {size.kimg_per_iteration:g} kimg after a "
        f"{size.initial_kimg:g} kimg fit shared by every lambda of a seed (ramp-ups: "
        f"{size.rampup}). FID minus lambda = 0's at t = {T}, mean (se) over seeds: "
        + ", ".join(f"{lam_label(lam)} {fid[lam].diff:+.1f} ({fid[lam].se:.1f})" for lam in fid)
        + f" (Student's t critical value {fid[math.inf].critical:.2f}, {LEVEL:.0%}, "
        f"{size.seeds - 1} degrees of freedom); precision: "
        + ", ".join(
            f"{lam_label(lam)} {precision[lam].diff:+.3f} ({precision[lam].se:.3f})"
            for lam in precision
        )
        + f". Lambda = 0 itself moved by {drift.diff:+.1f} (se {drift.se:.1f}) in FID from t = 0 "
        f"to {T}: what retraining alone does at this budget.",
        numbers=numbers,
        figures=[figure],
        table=digits_table(values, comparisons, T),
    )


def digits_table(values: dict, comparisons: dict, T: int) -> list[list[str]]:
    """Rows per lambda: FID at t = 0 and T, FID and precision minus the baseline's at T with the
    t statistic of the FID difference, recall at T (mean (se) over seeds)."""

    def cell(lam, name, t):
        return f"{values[lam][name][:, t].mean():.3g} ({_se(values[lam][name])[t]:.2g})"

    def versus(lam, name, fmt):
        c = comparisons[name][lam]
        return f"{c.diff:+{fmt}} ({c.se:{fmt}})"

    rows = [["lambda", "FID t = 0", f"FID t = {T}", "FID - baseline", "t statistic",
             f"precision t = {T}", "precision - baseline", f"recall t = {T}"]]  # fmt: skip
    for lam in LAMBDAS:
        if lam == BASELINE:
            fid, t_stat, prec = "(baseline)", "-", "(baseline)"
        else:
            c = comparisons["fid"][lam]
            fid, prec = versus(lam, "fid", ".1f"), versus(lam, "precision", ".3f")
            t_stat = f"{c.diff / c.se:.2f}" if c.se > 0 else "-"
        rows.append(
            [
                lam_label(lam),
                cell(lam, "fid", 0),
                cell(lam, "fid", T),
                fid,
                t_stat,
                cell(lam, "precision", T),
                prec,
                cell(lam, "recall", T),
            ]  # fmt: skip
        )
    return rows


def _se(v: np.ndarray) -> np.ndarray:
    """Standard error over seeds (axis 0) of an array (seeds, T + 1); NaN with one seed."""
    if len(v) < 2:
        return np.full(v.shape[1], math.nan)
    return v.std(axis=0, ddof=1) / math.sqrt(len(v))
