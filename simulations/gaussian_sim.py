"""`stability simulate gaussian`: Monte-Carlo of Algorithm 1 with a Gaussian model, in a run folder.

Runs are simulated in blocks of `block_size` runs (1000; fixed on the command line, since the
numbers depend on it: the same seed, runs and block size give the same numbers). Block b of a
lambda value draws its real data
from the stream SeedSequence(seed, spawn_key=(0, b)) -- the same real data for every lambda, as
Algorithm 1 draws D_real once -- and its synthetic data from SeedSequence(seed, spawn_key=(1,
key(policy, lambda), b)). Results therefore do not depend on the number of workers, on how the
blocks are grouped, or on which other lambda values are simulated; each finished block is saved
atomically, so an interrupted run resumes where it stopped and gives the same numbers.

A run is a set of tasks for a pool of worker processes (all the cores by default): the blocks,
then, as soon as a lambda's blocks are all saved, one summary per metric (read from the saved
blocks, so the numbers do not depend on whether a block was computed now or before a crash);
this process draws each metric's figure from its summary as soon as it is in. Only the
workers hold per-run values, one block or one metric at a time; the saved blocks are what a
resumed run needs, and are removed once summary.csv is written (kept with ``keep_blocks``).

A run whose numbers leave float64 (NaN, or an infinity other than the log-determinant and
precision of a collapsed covariance) stops with a `RunError` naming the metric, run, iteration
and lambda; the folder then has no summary.csv, so it does not count as finished.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from simulations.data import DATASETS, TWO_D, DataSource, check_seed, check_sizes, make_source
from simulations.gaussian import (
    ENGINES,
    ESTIMATORS,
    METRICS,
    GaussianModel,
    GaussianStats,
    Metrics,
    sample_real_stats,
)
from simulations.gaussian_blocks import block_path, read_member, remove_blocks, save_block
from stability.errors import RunError, UsageError, check_dim, check_lam, check_n
from stability.loop import PointSet, Policy, retrain, synthetic_count
from stability.runs.resources import available_cores, available_memory, check_memory
from stability.runs.runfolder import (
    RunFolder,
    describe_run,
    format_lam,
    read_summary,
    summary_rows,
    write_summary,
)

# Runs x iterations x lambdas below which a run stays in this process by default: about half
# a second of the exact engine at d = 2, less than starting worker processes pays back.
INLINE_WORK = 2_000_000

# The two infinities a collapsed (numerically singular) covariance legitimately gives: its log
# determinant and the distance of its precision matrix to theta*. Any other non-finite number
# means the run left float64.
COLLAPSE_LIMITS = {"logdet_cov": -math.inf, "theta_err": math.inf}


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
        """Validate every option (UsageError with one line) and fill the defaults.

        Everything is checked before anything large is allocated: the memory one worker needs
        (`memory_estimate`) is compared with the memory available before the data's moments
        are built.

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
        check_seed(self.seed)
        check_n(self.block_size, "block_size", minimum=1)
        is_file = self.data not in DATASETS
        source = make_source(self.data, self.dim, self.data_cond) if is_file else None
        n = self.n
        if n is None:
            n = len(source.points) if is_file else 100
        check_sizes(n, self.runs, self.iterations)
        dim = source.dim if is_file else (2 if self.dim is None or self.data in TWO_D else self.dim)
        check_dim(dim, "--dim")
        policies = [Policy(self.policy, lam, self.n_fresh, self.subsample_size) for lam in lams]
        self._check_training_sets(policies, n, dim)
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_source"}
        cfg = GaussianSimConfig(**{**values, "dim": dim, "n": n, "lams": lams})
        check_memory(memory_estimate(cfg, 1), *_memory_words(cfg, 1))
        if source is None:
            source = make_source(self.data, self.dim, self.data_cond)
        if source.is_file and n > len(source.points):
            raise UsageError(f"--n {n} exceeds the {len(source.points)} rows of the data file")
        if self.policy == "fresh" and source.is_file and (self.n_fresh or n) > len(source.points):
            raise UsageError("--n-fresh exceeds the rows of the data file")
        return replace(cfg, _source=source), source, policies

    def _check_training_sets(self, policies: list[Policy], n: int, dim: int) -> None:
        """Refuse training sets too small for a covariance estimate, or a singular one."""
        if self.estimator == "unbiased" and n < 2:
            raise UsageError("n must be >= 2")
        if self.policy == "accumulate-subsample" and self.engine == "exact":
            raise UsageError(
                "policy accumulate-subsample has no exact (sufficient-statistics) form; use --engine sample"
            )
        for pol in policies:
            smallest = min(pol.sizes(n, 1))
            if smallest - ESTIMATORS[self.estimator] <= 0:
                raise UsageError(f"{pol.label}: a training set of {smallest} point(s) is too small")
            if smallest <= dim:
                # n points span at most n - 1 dimensions: log det = -inf and no precision
                # matrix from the first fit on, for every run.
                raise UsageError(
                    f"{pol.label}: a training set of {smallest} points in dimension {dim} has a "
                    f"singular covariance; use --n > {dim}"
                )

    def options(self) -> dict:
        """The options recorded in config.json (JSON types; lambda as number or 'inf')."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_source"}
        d["lams"] = [v if math.isfinite(v) else "inf" for v in self.lams]
        return d

    @property
    def blocks(self) -> int:
        """Blocks of `block_size` runs per lambda, the last one possibly shorter: the unit of
        work, of random streams (block b draws from SeedSequence(seed, spawn_key=(0, b)) and
        (1, key(policy, lambda), b)) and of saving, ceil(runs / block_size)."""
        return math.ceil(self.runs / self.block_size)


def memory_estimate(cfg: GaussianSimConfig, workers: int) -> float:
    """Peak memory in bytes of a run with `workers` processes (a conservative estimate).

    Each worker holds one block at a time: its (B, d, d) matrices (statistics, covariances,
    factors, Wishart draws, eigen-decompositions: about 24 alive at once), the points of the
    sample engine (real data, training set and a copy, up to the largest training set), and
    the block's metrics (6 x B x (T+1), and the archive being written); or, when summarising,
    one metric of every run (R x (T+1): gathered, transposed, partitioned). The parent holds
    only summaries.

    Parameters
    ----------
    cfg : GaussianSimConfig
        A configuration with `dim` and `n` filled in.
    workers : int
    """
    d, t1 = cfg.dim, cfg.iterations + 1
    b = min(cfg.block_size, cfg.runs)
    engine = 8.0 * b * 24 * d * d
    if cfg.engine == "sample":
        largest = 0
        for lam in cfg.lams:
            k = synthetic_count(lam, cfg.n)
            if cfg.policy.startswith("accumulate"):
                largest = max(largest, cfg.n + cfg.iterations * k)
            else:
                largest = max(largest, (cfg.n_fresh or cfg.n) + k, cfg.n)
        engine += 8.0 * b * d * 3 * (largest + cfg.n)
    block = engine + 8.0 * len(METRICS) * b * t1 * 2
    summary = 8.0 * cfg.runs * t1 * 3
    return workers * max(block, summary)


def _memory_words(cfg: GaussianSimConfig, workers: int) -> tuple[str, str]:
    what = (
        f"simulate gaussian ({cfg.runs} runs x {cfg.iterations} iterations, d = {cfg.dim}, "
        f"n = {cfg.n}, {cfg.engine} engine, {workers} worker(s))"
    )
    return what, "use fewer --runs or --iterations, a smaller --dim or --n, or fewer --workers"


def choose_workers(cfg: GaussianSimConfig, workers: int | None, tasks: int) -> int:
    """Worker processes for a run: `workers` if given (checked against the memory available),
    else every available core, as many as the tasks and the memory allow, or 1 (this process)
    for a run too small to pay for starting processes (below `INLINE_WORK`).

    Parameters
    ----------
    cfg : GaussianSimConfig
        A resolved configuration.
    workers : int or None
        The --workers option (None: automatic).
    tasks : int
        Blocks still to simulate.
    """
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
            raise UsageError(f"--workers must be an integer >= 1, got {workers!r}")
        check_memory(memory_estimate(cfg, workers), *_memory_words(cfg, workers))
        return int(workers)
    if cfg.runs * (cfg.iterations + 1) * len(cfg.lams) < INLINE_WORK or tasks <= 1:
        return 1
    chosen = min(available_cores(), tasks)
    free = available_memory()
    if free is not None:
        per_worker = memory_estimate(cfg, 1)
        chosen = max(1, min(chosen, int(free // max(per_worker, 1.0))))
    return chosen


def _lam_key(policy: str, lam: float) -> int:
    return zlib.crc32(f"{policy}|{format_lam(lam)}".encode())


def _block_streams(cfg: GaussianSimConfig, lam: float, block: int):
    """The block's two random streams: its real data (the same for every lambda) and its
    synthetic data (this lambda's own)."""
    rng_real = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(0, block)))
    rng = np.random.default_rng(
        np.random.SeedSequence(cfg.seed, spawn_key=(1, _lam_key(cfg.policy, lam), block))
    )
    return rng_real, rng


def _draw_real(source: DataSource, exact: bool, runs: int, size: int, rng):
    """`size` real points for each of `runs` runs: their sufficient statistics (exact engine)
    or the points themselves."""
    if exact:
        return sample_real_stats(source, runs, size, rng)
    return PointSet(source.sample_runs(runs, size, rng))


def simulate_block(
    cfg: GaussianSimConfig, lam: float, block: int, source: DataSource | None = None
) -> dict:
    """Metrics of the runs of one block for one lambda: dict metric -> array (B, T+1).

    Raises
    ------
    RunError
        When a number leaves float64 (`first_nonfinite`) or a factorisation fails: one line
        with the metric, run, iteration and lambda.
    """
    source = source or cfg._source or make_source(cfg.data, cfg.dim, cfg.data_cond)
    policy = Policy(cfg.policy, lam, cfg.n_fresh, cfg.subsample_size)
    first = block * cfg.block_size
    b = min(cfg.block_size, cfg.runs - first)
    rng_real, rng = _block_streams(cfg, lam, block)
    exact = cfg.engine == "exact"
    real = _draw_real(source, exact, b, cfg.n, rng_real)

    def fresh(m, r):
        return _draw_real(source, exact, b, m, r)

    model = GaussianModel(cfg.engine, ESTIMATORS[cfg.estimator])
    metrics = Metrics(source.mean, source.cov)
    # (T+1, B) while recording: each iteration writes one contiguous row. float64: collapsing
    # runs reach precisions far beyond float32's range.
    rows = {m: np.empty((cfg.iterations + 1, b)) for m in METRICS}
    done = [-1]

    def record(t, model, data):
        for name, values in metrics(model.mu, model.cov).items():
            rows[name][t] = values
        done[0] = t

    where = f"lambda = {format_lam(lam)}, runs {first}..{first + b - 1}"
    try:
        # Overflow is detected in the results below, with its iteration and run; numpy's
        # warnings would only add lines without saying where.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            retrain(
                model, real, policy, cfg.iterations, rng, on_iteration=record, fresh_source=fresh
            )
    except np.linalg.LinAlgError as exc:
        raise RunError(
            f"the covariance could not be factorised at iteration t = {done[0] + 1}, {where}: {exc}"
        ) from None
    values = {m: v.T for m, v in rows.items()}
    bad = first_nonfinite(values)
    if bad is not None:
        t, name, run, value = bad
        raise RunError(
            f"{name} = {value} in run {first + run} at iteration t = {t}, lambda = "
            f"{format_lam(lam)}: the numbers left float64 (data too large or too degenerate)"
        )
    return values


def first_nonfinite(values: dict[str, np.ndarray]) -> tuple[int, str, int, float] | None:
    """The earliest number that left float64 in a block's metrics, or None.

    NaN anywhere, or an infinity other than `COLLAPSE_LIMITS` (the log determinant and the
    precision distance of a collapsed covariance) after t = 0: the fit on the real data
    (t = 0) has a non-singular covariance, so an infinity there means it under- or overflowed.

    Parameters
    ----------
    values : dict of str to numpy.ndarray, each of shape (B, T+1)

    Returns
    -------
    tuple or None
        (t, metric, run within the block, value) of the earliest iteration with such a number.
    """
    found = None
    for name, v in values.items():
        bad = ~np.isfinite(v)
        limit = COLLAPSE_LIMITS.get(name)
        if limit is not None:
            bad[:, 1:] &= v[:, 1:] != limit
        per_t = bad.any(axis=0)
        if per_t.any():
            t = int(np.argmax(per_t))
            if found is None or t < found[0]:
                run = int(np.argmax(bad[:, t]))
                found = (t, name, run, float(v[run, t]))
    return found


# ---- the tasks of a run, executed by worker processes (or inline) --------------------------
# A worker receives the resolved configuration once (its data source can be a large file),
# then small task tuples.
_WORKER: dict = {}


def _init_worker(cfg: GaussianSimConfig) -> None:
    _WORKER.clear()
    _WORKER["cfg"] = cfg


def _run_task(args):
    li, lam, block, path = args
    values = simulate_block(_WORKER["cfg"], lam, block)
    save_block(path, values)
    return li, block


def _read_block(li: int, lam: float, block: int, path: Path, metric: str) -> np.ndarray:
    """One metric of a saved block, shape (B, T+1); a missing or damaged block is recomputed."""
    cfg = _WORKER["cfg"]
    shape = (min(cfg.block_size, cfg.runs - block * cfg.block_size), cfg.iterations + 1)
    buffer = _WORKER.get("read_buffer")
    if buffer is None or buffer.nbytes < 8 * math.prod(shape):
        buffer = _WORKER["read_buffer"] = np.empty(8 * cfg.block_size * shape[1], dtype=np.uint8)
    try:
        values = read_member(path, metric, buffer)
        if values.shape == shape and values.dtype == np.float64:
            return values
    except (OSError, ValueError, KeyError, EOFError, SyntaxError, zipfile.BadZipFile, zlib.error):
        pass
    values = simulate_block(cfg, lam, block)
    save_block(path, values)
    return values[metric]


def _summary_task(args):
    li, lam, metric, paths = args
    cfg = _WORKER["cfg"]
    # Runs in block order, each t contiguous (Fortran order): the layout in which the saved
    # blocks were always summarised, and numpy's sums over runs depend on the layout in the
    # last bits (pairwise along contiguous memory, sequential across it).
    shape = (cfg.runs, cfg.iterations + 1)
    values = _WORKER.get("gather")
    if values is None or values.shape != shape:
        # Kept for the worker's next metric: a fresh array of this size costs its page faults
        # again (0.06 s of CPU per metric at 1e5 runs x 101).
        values = _WORKER["gather"] = np.empty(shape, order="F")
    for block, path in enumerate(paths):
        lo = block * cfg.block_size
        values[lo : lo + cfg.block_size] = _read_block(li, lam, block, path, metric)
    return summary_rows(cfg.policy, lam, metric, values)


def summarise_saved_blocks(
    cfg: GaussianSimConfig, li: int, metric: str, paths: list[Path]
) -> list[dict]:
    """Summary rows of one metric of lambda number `li`, read from its saved blocks in this
    process: what a worker of the command does (for benchmarks).

    Parameters
    ----------
    cfg : GaussianSimConfig
        A resolved configuration.
    li : int
        Index of the lambda in ``cfg.lams``.
    metric : str
    paths : list of Path
        The block files of that lambda, in block order (a missing one is computed and saved).
    """
    if _WORKER.get("cfg") is not cfg:
        _init_worker(cfg)
    return _summary_task((li, cfg.lams[li], metric, paths))


class _Inline:
    """The executor of a single worker: runs each task when it is submitted, in this process.

    Exceptions propagate from `submit` at once, so a failing block stops the run before the
    next one starts.
    """

    def __init__(self, initializer, initargs):
        initializer(*initargs)

    def submit(self, fn, *args):
        future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        _WORKER.clear()  # this process is not a worker: free the gathered runs


def _executor(workers: int, cfg: GaussianSimConfig):
    if workers == 1:
        return _Inline(_init_worker, (cfg,))
    return ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(cfg,))


def _simulate(
    cfg: GaussianSimConfig, folder: RunFolder, pool, bar, draw_figures: bool = True
) -> list[dict]:
    """Run the missing blocks, summarise each lambda as soon as its blocks are saved, and draw
    each metric's figure here as soon as its summaries are in (while the workers summarise the
    other metrics: one matplotlib in this process instead of one per worker)."""
    futures: dict = {}
    left = [0] * len(cfg.lams)
    summaries: dict = {}
    figures = folder.file("figures")

    def summarise(li: int) -> None:
        paths = [block_path(folder, li, b) for b in range(cfg.blocks)]
        for metric in METRICS:
            task = (li, cfg.lams[li], metric, paths)
            futures[pool.submit(_summary_task, task)] = ("summary", li, metric)

    def draw(metric: str) -> None:
        path = figures / f"{metric}.png"
        if not path.exists():
            from simulations.gaussian_figures import draw_figure

            # The rows as read back from summary.csv: lambda as a number.
            rows = [
                {**r, "lam": float(r["lam"])}
                for li in range(len(cfg.lams))
                for r in summaries[li, metric]
            ]
            draw_figure(cfg, rows, metric, path)

    for li, lam in enumerate(cfg.lams):
        for b in range(cfg.blocks):
            path = block_path(folder, li, b)
            if not path.exists():
                left[li] += 1
                futures[pool.submit(_run_task, (li, lam, b, path))] = ("block", li, b)
    if bar is not None:
        bar.update(len(cfg.lams) * cfg.blocks - sum(left))
    if futures and not isinstance(pool, _Inline):
        # This process only waits while the workers compute: it loads matplotlib now rather
        # than when the first summary is in, where it delayed the figures at the run's end.
        from stability.runs.plots import warm_up

        warm_up()
    for li in range(len(cfg.lams)):
        if left[li] == 0:
            summarise(li)
    while futures:
        done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
        for future in done:
            kind, li, what = futures.pop(future)
            result = future.result()
            if kind == "summary":
                summaries[li, what] = result
                if draw_figures and all((lj, what) in summaries for lj in range(len(cfg.lams))):
                    draw(what)
                continue
            if bar is not None:
                bar.update()
            left[li] -= 1
            if left[li] == 0:
                summarise(li)
    return [row for li in range(len(cfg.lams)) for m in METRICS for row in summaries[li, m]]


def run_gaussian_simulation(
    config: GaussianSimConfig,
    out: str | Path,
    workers: int | None = None,
    progress: bool = False,
    keep_blocks: bool = False,
    figures: bool = True,
) -> dict:
    """Run (or resume) a simulation in folder `out`; returns a dict describing the results.

    Validates everything before writing anything (UsageError on bad input, memory included),
    then holds the folder's lock for the whole run (a second command on the same folder gets a
    UsageError naming this process).

    Parameters
    ----------
    config : GaussianSimConfig
    out : str or Path
        The run folder.
    workers : int or None
        Worker processes; None uses every available core (`choose_workers`). The numbers do
        not depend on it.
    progress : bool
        Show a progress bar (blocks) on stderr.
    keep_blocks : bool
        Keep the per-run metrics in DIR/blocks/ after the summary is written.
    figures : bool
        Draw DIR/figures/*.png (one per metric); a caller that draws its own from the summary
        (`stability reproduce`: 7 runs, 42 figures, nearly all of its Gaussian part's time at
        the tiny size) passes False and gets no paths.
    """
    from simulations.gaussian_figures import write_figures  # matplotlib only when drawing

    cfg, source, _ = config.resolve()
    folder = RunFolder(out, "simulate gaussian", cfg.options())
    folder.check_writable()
    todo = sum(
        not block_path(folder, li, b).exists()
        for li in range(len(cfg.lams))
        for b in range(cfg.blocks)
    )
    workers = choose_workers(cfg, workers, todo)
    with folder.locked():
        summary_path = folder.file("summary.csv")
        if summary_path.exists():
            rows = read_summary(summary_path)
            drawn = write_figures(cfg, rows, folder.file("figures")) if figures else []
            return describe(cfg, folder, rows, drawn)
        folder.write_config(
            extra={"data_moments": {"mean": source.mean.tolist(), "cov": source.cov.tolist()}}
        )
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(cfg.lams) * cfg.blocks, desc="gaussian", unit="block")
        pool = _executor(workers, cfg)
        try:
            write_summary(summary_path, _simulate(cfg, folder, pool, bar, figures))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if bar is not None:
                bar.close()
        if not keep_blocks:
            remove_blocks(folder, len(cfg.lams), cfg.blocks)
        rows = read_summary(summary_path)
        # drawn already: their paths
        drawn = write_figures(cfg, rows, folder.file("figures")) if figures else []
    return describe(cfg, folder, rows, drawn)


def describe(
    cfg: GaussianSimConfig, folder: RunFolder, rows: list[dict], figures: list[str]
) -> dict:
    """Summary of a finished run: paths and each metric's mean +- se at the last iteration."""
    return describe_run(folder, rows, figures, cfg.iterations)


__all__ = [
    "GaussianSimConfig",
    "run_gaussian_simulation",
    "simulate_block",
    "summarise_saved_blocks",
    "GaussianStats",
]
