"""`stability simulate gaussian`: Monte-Carlo of Algorithm 1 with a Gaussian model, in a run folder.

Runs are simulated in blocks of `block_size` runs (1000; fixed on the command line, since the
numbers depend on it: the same seed, runs and block size give the same numbers). Block b of a
lambda value draws its real data
from the stream SeedSequence(seed, spawn_key=(0, b)) -- the same real data for every lambda, as
Algorithm 1 draws D_real once -- and its synthetic data from SeedSequence(seed, spawn_key=(1,
key(policy, lambda), b)). Results therefore do not depend on the number of workers, on how the
blocks are grouped, or on which other lambda values are simulated; each finished block is saved
atomically, so an interrupted run resumes where it stopped and gives the same numbers.
"""

from __future__ import annotations

import math
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from simulations.data import DataSource, check_sizes, make_source
from simulations.gaussian import (
    ENGINES,
    ESTIMATORS,
    METRICS,
    GaussianModel,
    GaussianStats,
    Metrics,
    sample_real_stats,
)
from stability.errors import UsageError, check_lam, check_n
from stability.loop import PointSet, Policy, retrain
from stability.runs.runfolder import (
    RunFolder,
    atomic_save_npz,
    describe_run,
    format_lam,
    read_summary,
    summary_rows,
    write_summary,
)


@dataclass(frozen=True)
class GaussianSimConfig:
    """Everything that determines the numbers of a Gaussian retraining simulation."""

    dim: int | None = None
    n: int | None = None
    lams: tuple = (0.0, 0.5, 1.0, math.inf)
    policy: str = "mix"
    iterations: int = 100
    runs: int = 1000
    seed: int = 0
    engine: str = "exact"
    data: str = "gaussian"
    estimator: str = "unbiased"
    n_fresh: int | None = None
    subsample_size: int | None = None
    data_cond: float = 1.0
    block_size: int = 1000
    _source: DataSource | None = field(default=None, compare=False, repr=False)

    def resolve(self) -> tuple[GaussianSimConfig, DataSource, list[Policy]]:
        """Validate every option (ValueError with one line) and fill the defaults.

        Returns the completed config, the data source and one Policy per lambda.
        """
        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine {self.engine!r}; choose exact or sample")
        if self.estimator not in ESTIMATORS:
            raise UsageError(f"unknown estimator {self.estimator!r}; choose unbiased or mle")
        if not self.lams:
            raise UsageError("give at least one lambda")
        lams = tuple(check_lam(v) for v in self.lams)
        if len(set(lams)) != len(lams):
            raise UsageError("lambda values must be distinct")
        source = make_source(self.data, self.dim, self.data_cond)
        n = self.n
        if n is None:
            n = len(source.points) if source.is_file else 100
        check_sizes(n, self.runs, self.iterations)
        check_n(self.block_size, "block_size", minimum=1)
        if source.is_file and n > len(source.points):
            raise UsageError(f"--n {n} exceeds the {len(source.points)} rows of the data file")
        if self.estimator == "unbiased" and n < 2:
            raise UsageError("n must be >= 2")
        policies = [Policy(self.policy, lam, self.n_fresh, self.subsample_size) for lam in lams]
        if self.policy == "accumulate-subsample" and self.engine == "exact":
            raise UsageError(
                "policy accumulate-subsample has no exact (sufficient-statistics) form; use --engine sample"
            )
        if self.policy == "fresh" and source.is_file and (self.n_fresh or n) > len(source.points):
            raise UsageError("--n-fresh exceeds the rows of the data file")
        for pol in policies:
            sizes = pol.sizes(n, 1)
            if min(sizes) - ESTIMATORS[self.estimator] <= 0:
                raise UsageError(
                    f"{pol.label}: a training set of {min(sizes)} point(s) is too small"
                )
        cfg = GaussianSimConfig(
            dim=source.dim,
            n=n,
            lams=lams,
            policy=self.policy,
            iterations=self.iterations,
            runs=self.runs,
            seed=self.seed,
            engine=self.engine,
            data=self.data,
            estimator=self.estimator,
            n_fresh=self.n_fresh,
            subsample_size=self.subsample_size,
            data_cond=self.data_cond,
            block_size=self.block_size,
            _source=source,
        )
        return cfg, source, policies

    def options(self) -> dict:
        """The options recorded in config.json (JSON types; lambda as number or 'inf')."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_source"}
        d["lams"] = [v if math.isfinite(v) else "inf" for v in self.lams]
        return d

    @property
    def blocks(self) -> int:
        return math.ceil(self.runs / self.block_size)


def _lam_key(policy: str, lam: float) -> int:
    return zlib.crc32(f"{policy}|{format_lam(lam)}".encode())


def simulate_block(
    cfg: GaussianSimConfig, lam: float, block: int, source: DataSource | None = None
) -> dict:
    """Metrics of the runs of one block for one lambda: dict metric -> array (B, T+1)."""
    source = source or cfg._source or make_source(cfg.data, cfg.dim, cfg.data_cond)
    policy = Policy(cfg.policy, lam, cfg.n_fresh, cfg.subsample_size)
    b = min(cfg.block_size, cfg.runs - block * cfg.block_size)
    rng_real = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(0, block)))
    rng = np.random.default_rng(
        np.random.SeedSequence(cfg.seed, spawn_key=(1, _lam_key(cfg.policy, lam), block))
    )
    exact = cfg.engine == "exact"
    if exact:
        real = sample_real_stats(source, b, cfg.n, rng_real)
    else:
        real = PointSet(source.sample_runs(b, cfg.n, rng_real))

    def fresh(m, r):
        if exact:
            return sample_real_stats(source, b, m, r)
        return PointSet(source.sample_runs(b, m, r))

    model = GaussianModel(cfg.engine, ESTIMATORS[cfg.estimator])
    metrics = Metrics(source.mean, source.cov)
    # (T+1, B) while recording: each iteration writes one contiguous row. float64: collapsing
    # runs reach precisions far beyond float32's range.
    rows = {m: np.empty((cfg.iterations + 1, b)) for m in METRICS}

    def record(t, model, data):
        for name, values in metrics(model.mu, model.cov).items():
            rows[name][t] = values

    retrain(model, real, policy, cfg.iterations, rng, on_iteration=record, fresh_source=fresh)
    return {m: v.T for m, v in rows.items()}


def _block_path(folder: RunFolder, li: int, block: int) -> Path:
    return folder.file("blocks", f"lam{li}_block{block:05d}.npz")


def _run_task(args):
    cfg, li, lam, block, path = args
    values = simulate_block(cfg, lam, block)
    # Summaries are always computed from the stored blocks, so the numbers do not depend on
    # whether a block was computed now or read back after a crash.
    atomic_save_npz(path, **values)
    return li, block


def run_gaussian_simulation(
    config: GaussianSimConfig,
    out: str | Path,
    workers: int = 1,
    progress: bool = False,
    keep_blocks: bool = False,
) -> dict:
    """Run (or resume) a simulation in folder `out`; returns a dict describing the results.

    Validates everything before writing anything (ValueError on bad input).
    """
    cfg, source, _ = config.resolve()
    check_n(workers, "workers", minimum=1)
    folder = RunFolder(out, "simulate gaussian", cfg.options())
    folder.check_writable()
    summary_path = folder.file("summary.csv")
    if not summary_path.exists():
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_config(
            extra={"data_moments": {"mean": source.mean.tolist(), "cov": source.cov.tolist()}}
        )
        tasks = [
            (cfg, li, lam, b, _block_path(folder, li, b))
            for li, lam in enumerate(cfg.lams)
            for b in range(cfg.blocks)
            if not _block_path(folder, li, b).exists()
        ]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=len(cfg.lams) * cfg.blocks,
                initial=len(cfg.lams) * cfg.blocks - len(tasks),
                desc="gaussian",
                unit="block",
            )
        if workers == 1 or len(tasks) <= 1:
            for task in tasks:
                _run_task(task)
                if bar:
                    bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for _ in pool.map(_run_task, tasks):
                    if bar:
                        bar.update()
        if bar:
            bar.close()
        rows = []
        for li, lam in enumerate(cfg.lams):
            for metric in METRICS:
                vals = np.concatenate(
                    [np.load(_block_path(folder, li, b))[metric] for b in range(cfg.blocks)]
                )
                rows.extend(summary_rows(cfg.policy, lam, metric, vals))
        write_summary(summary_path, rows)
        if not keep_blocks:
            for li in range(len(cfg.lams)):
                for b in range(cfg.blocks):
                    _block_path(folder, li, b).unlink(missing_ok=True)
            try:
                folder.file("blocks").rmdir()
            except OSError:
                pass
    rows = read_summary(summary_path)
    figures = write_figures(cfg, rows, folder.file("figures"))
    return describe(cfg, folder, rows, figures)


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


def write_figures(cfg: GaussianSimConfig, rows: list[dict], folder: Path) -> list[str]:
    """One PNG per metric (skipping files that already exist); returns their paths."""
    from simulations.gaussian import METRIC_DOC
    from stability.runs.plots import metric_figure, save_figure

    paths = []
    for metric in METRICS:
        path = folder / f"{metric}.png"
        if not path.exists():
            overlays = _alpha_overlays(cfg, rows) if metric == "trace_sqrt_cov" else None
            title = f"{METRIC_DOC[metric]}\n{cfg.policy}, n={cfg.n}, d={cfg.dim}, {cfg.runs} runs ({cfg.engine})"
            save_figure(metric_figure(rows, metric, title, overlays), path)
        paths.append(str(path))
    return paths


def describe(
    cfg: GaussianSimConfig, folder: RunFolder, rows: list[dict], figures: list[str]
) -> dict:
    """Summary of a finished run: paths and each metric's mean +- se at the last iteration."""
    return describe_run(folder, rows, figures, cfg.iterations)


__all__ = ["GaussianSimConfig", "run_gaussian_simulation", "simulate_block", "GaussianStats"]
