"""`stability simulate model`: Algorithm 1 with any model plugin on point data, in a run folder.

The model (``--model kde``, ``my.py:Model``, ``package.module:Model``; `stability.plugin_models`)
and the policy (``--policy curate``...; `stability.policies`) are plugins; the data are a
built-in data set (`simulations.data`: gaussian, moons, 8gaussians, a .npy file) or a data
plugin (group ``stability.data``: an object with ``sample(n, rng)`` returning (n, *point shape)).
Before anything is written the model is tried on two runs (fit, sample, state, its metrics, and
one training set of every lambda, refitted), so a broken plugin is a one-line usage error.

Runs are simulated in blocks of `block_size` (part of the configuration: the numbers depend on
it, not on the number of workers). Random streams, numpy SeedSequence(seed, spawn_key=key):

  (0, block)              the block's real data: training set (R, n, ...), held-out set
                          (R, n_eval, ...); the same for every lambda (D_real is drawn once)
  (2, block)              samples of theta_0 for the metrics of t = 0 (shared by every lambda)
  (1, key(lambda), block) the loop: synthetic data, fresh data, subsampling, policy choices
  (3, key(lambda), block) samples of theta_t, t >= 1, for the metrics (so that n_eval does not
                          change the trajectory)

Metrics per run and iteration: W1 and W2 between n_eval model samples and the n_eval held-out
real points (exact: sorted samples in 1D, an assignment otherwise; unless the model sets
``wasserstein = False``), param_distance = ||theta_t - theta_0|| / sqrt(p) over the flattened
arrays of ``state()``, and the model's own ``metrics(heldout)``. After every iteration each
(lambda, block) writes an atomic checkpoint (the pickled model, loop state, generators and
metrics so far), so a run killed with SIGKILL resumes from its last iteration with exactly the
numbers of an uninterrupted run; the folder is locked while the command writes.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from stability.errors import UsageError, check_lam, check_n
from stability.loop import LoopState, PointSet, retrain
from stability.plugin_models import ModelPlugin
from stability.plugins import first_line, format_params, instantiate, parse_params
from stability.policies import build_policy
from stability.runs.lock import lock_run_folder
from stability.runs.runfolder import (
    RunFolder,
    atomic_save_npz,
    atomic_write_bytes,
    describe_run,
    format_lam,
    read_summary,
    summary_rows,
    write_summary,
)

COMMAND = "simulate model"
METRIC_DOC = {
    "w1": "W1(model samples, held-out real data)",
    "w2": "W2(model samples, held-out real data)",
    "param_distance": "||theta_t - theta_0|| / sqrt(p), theta = state()",
}


@dataclass(frozen=True)
class PluginSimConfig:
    """Everything that determines the numbers of a plugin-model simulation.

    Parameters
    ----------
    model, policy, data : plugin specifications (data may also be a built-in data set)
    params, policy_params, data_params : ``KEY=VALUE`` strings for their factories
    dim : dimension of the built-in gaussian data
    n : real data set size; lams : lambda values; iterations : T; runs : R
    block_size : runs simulated together (the numbers depend on it)
    n_eval : samples and held-out points of the W1/W2 metrics (default n)
    seed : the simulation's seed
    """

    model: str = "kde"
    params: tuple = ()
    data: str = "gaussian"
    data_params: tuple = ()
    dim: int | None = None
    n: int = 100
    lams: tuple = (0.0, 0.5, 1.0, math.inf)
    policy: str = "mix"
    policy_params: tuple = ()
    iterations: int = 20
    runs: int = 20
    block_size: int = 10
    n_eval: int | None = None
    seed: int = 0

    def options(self) -> dict:
        """The options recorded in config.json (JSON types; lambda as number or 'inf')."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["lams"] = [v if math.isfinite(v) else "inf" for v in self.lams]
        for key in ("params", "policy_params", "data_params"):
            d[key] = list(d[key])
        return d

    def blocks(self) -> list[tuple[int, int]]:
        """(block index, runs in it) of every block."""
        count = math.ceil(self.runs / self.block_size)
        return [(b, min(self.block_size, self.runs - b * self.block_size)) for b in range(count)]


class PointSource:
    """Real data of a simulation: a built-in data set or a data plugin, checked."""

    def __init__(self, spec: str, dim: int | None, params: dict):
        from simulations.data import DATASETS, make_source

        self.ref = None
        if spec in DATASETS or spec.endswith(".npy"):
            if params:
                raise UsageError("--data-param applies to data plugins, not to built-in data")
            self.source = make_source(spec, dim)
            self.label = f"data {spec!r}"
        else:
            self.source, self.ref = instantiate("data", spec, params, ("sample",), "data source")
            self.label = self.ref.label
            if dim is not None:
                raise UsageError("--dim applies to the built-in gaussian data; use --data-param")

    def describe(self) -> str:
        """The source's own description if it has one, else its label."""
        fn = getattr(self.source, "describe", None)
        return fn() if callable(fn) else self.label

    def sample_runs(self, runs: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """n points for each of `runs` runs, shape (runs, n, *point shape), checked."""
        src = self.source
        try:
            if callable(getattr(src, "sample_runs", None)):
                x = np.asarray(src.sample_runs(runs, n, rng))
            else:
                x = np.stack([np.asarray(src.sample(n, rng)) for _ in range(runs)])
        except UsageError:
            raise
        except Exception as exc:  # the plugin's code failed
            raise UsageError(f"{self.label}: sample({n}, rng) failed: {first_line(exc)}") from None
        if x.ndim == 2:
            x = x[:, :, None]
        if x.shape[:2] != (runs, n) or x.dtype.kind not in "biuf":
            raise UsageError(f"{self.label}: sample({n}, rng) returned shape {x.shape[1:]}")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise UsageError(f"{self.label}: sample({n}, rng) returned non-finite values")
        return x


@dataclass
class Setup:
    """A resolved configuration: plugins loaded and tried, defaults filled."""

    cfg: PluginSimConfig
    model: ModelPlugin
    source: PointSource
    policies: list
    metrics: tuple = ()
    features: tuple = ()

    def plugins(self) -> dict:
        """What each plugin resolved to (config.json's "plugins")."""
        refs = {"model": self.model.ref, "data": self.source.ref}
        return {k: r.record() for k, r in refs.items() if r is not None}


def prepare(config: PluginSimConfig) -> Setup:
    """Validate the options and load the plugins (UsageError with one line; writes nothing)."""
    check_n(config.n, "n")
    check_n(config.runs, "runs", minimum=1)
    check_n(config.iterations, "iterations", minimum=1)
    check_n(config.block_size, "block_size", minimum=1)
    n_eval = config.n if config.n_eval is None else config.n_eval
    check_n(n_eval, "n_eval")
    if not config.lams:
        raise UsageError("give at least one lambda")
    lams = tuple(check_lam(v) for v in config.lams)
    if len(set(lams)) != len(lams):
        raise UsageError("lambda values must be distinct")
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    params = {}
    for key in ("params", "policy_params", "data_params"):
        flag = "--" + key.replace("params", "param").replace("_", "-")
        params[key] = parse_params(values[key], flag)
        values[key] = tuple(format_params(params[key]))  # normalised for config.json
    cfg = PluginSimConfig(**{**values, "lams": lams, "n_eval": n_eval})
    source = PointSource(cfg.data, cfg.dim, params["data_params"])
    model = ModelPlugin(cfg.model, params["params"])
    policies = [build_policy(cfg.policy, lam, params["policy_params"]) for lam in lams]
    return Setup(cfg, model, source, policies)


def resolve(config: PluginSimConfig) -> Setup:
    """`prepare`, then try the model and every policy on two runs (UsageError if they fail)."""
    setup = prepare(config)
    cfg = setup.cfg
    runs = min(2, cfg.runs)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(99,)))
    real = setup.source.sample_runs(runs, cfg.n, rng)
    heldout = PointSet(setup.source.sample_runs(runs, cfg.n_eval, rng))
    setup.features = tuple(real.shape[2:])
    model = setup.model.build(runs, checking=True, features=setup.features)
    model.fit(PointSet(real))
    model.sample(3, rng)
    model.state()
    try:  # every iteration's checkpoint pickles the model
        pickle.loads(pickle.dumps(model.model))
    except Exception as exc:  # whatever pickle raises for the plugin's objects
        raise UsageError(
            f"{setup.model.ref.label}: its model cannot be pickled for checkpoints: "
            f"{first_line(exc)}"
        ) from None
    own = list(model.metrics(heldout)) if model.has_metrics else []
    setup.metrics = (("w1", "w2") if model.wasserstein else ()) + ("param_distance", *own)

    def fresh(m, r):
        return PointSet(setup.source.sample_runs(runs, m, r))

    for policy in setup.policies:
        try:
            data = policy.train_set(1, PointSet(real), model, rng, LoopState(), fresh)
        except UsageError:
            raise
        except Exception as exc:  # a policy plugin or its reward failed on a tiny problem
            raise UsageError(
                f"policy {cfg.policy!r} (lam={format_lam(policy.lam)}) failed at t = 1: "
                f"{first_line(exc)}"
            ) from None
        if np.shape(getattr(data, "x", None))[2:] != setup.features:
            raise UsageError(f"policy {cfg.policy!r} built a training set that is not points")
        model.fit(data)
    return setup


# ---- metrics ----------------------------------------------------------------------------------


SMALL_ASSIGNMENT = 100  # up to this many points scipy's solver is faster than the compiled one


def _assignment_costs(gen: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W1 and W2 per run by scipy's exact assignment, gen and ref of shape (R, m, d)."""
    from scipy.optimize import linear_sum_assignment

    w1, w2 = np.empty(len(gen)), np.empty(len(gen))
    for r in range(len(gen)):
        d2 = np.sum((gen[r][:, None] - ref[r][None]) ** 2, axis=2)
        for out, cost in ((w1, np.sqrt(d2)), (w2, d2)):
            i, j = linear_sum_assignment(cost)
            out[r] = cost[i, j].mean()
    return w1, np.sqrt(w2)


def wasserstein_pair(gen: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact W1 and W2 per run between equal-size samples, shapes (R, m, d) -> (R,), (R,).

    1D: the sorted samples are the optimal coupling. Otherwise the assignment problem: scipy's
    linear_sum_assignment up to SMALL_ASSIGNMENT points, where the compiled solver's fixed cost
    per call dominates (10 runs of 2D points, fastest of 5, 2 busy cores: 0.2 vs 5.5 ms at 20
    points, 2.1 vs 16 ms at 64), `simulations.otmetrics.wasserstein_batch` (numba) above it
    (1.7x faster at 128 points, 8.9x at 500), scipy again where numba is missing.
    """
    gen = np.asarray(gen, dtype=float).reshape(gen.shape[0], gen.shape[1], -1)
    ref = np.asarray(ref, dtype=float).reshape(gen.shape)
    if gen.shape[2] == 1:
        diff = np.sort(gen[:, :, 0], axis=1) - np.sort(ref[:, :, 0], axis=1)
        return np.mean(np.abs(diff), axis=1), np.sqrt(np.mean(diff * diff, axis=1))
    if gen.shape[1] <= SMALL_ASSIGNMENT:
        return _assignment_costs(gen, ref)
    try:
        from simulations.otmetrics import wasserstein_batch

        return wasserstein_batch(gen, ref, 1), wasserstein_batch(gen, ref, 2)
    except ImportError:
        return _assignment_costs(gen, ref)


def flat_state(state: dict) -> np.ndarray:
    """state() as one vector per run, shape (R, p) (keys in sorted order)."""
    return np.concatenate(
        [np.asarray(state[k], dtype=float).reshape(len(state[k]), -1) for k in sorted(state)],
        axis=1,
    )


def evaluate(setup: Setup, model, heldout: np.ndarray, rng, theta0) -> tuple[dict, np.ndarray]:
    """Every metric of the model now, each (R,), and run 0's samples (None without W1/W2)."""
    out, snapshot = {}, None
    if model.wasserstein:
        gen = model.sample(setup.cfg.n_eval, rng).x
        out["w1"], out["w2"] = wasserstein_pair(gen, heldout)
        snapshot = np.asarray(gen[0])
    theta = flat_state(model.state())
    if theta0 is None or theta.shape != theta0.shape:
        # t = 0, or state() changed shape (e.g. a growing pool): no distance.
        out["param_distance"] = (
            np.zeros(len(theta)) if theta0 is None else np.full(len(theta), np.nan)
        )
    else:
        out["param_distance"] = np.linalg.norm(theta - theta0, axis=1) / math.sqrt(theta.shape[1])
    if model.has_metrics:
        out.update(model.metrics(PointSet(heldout)))
    if set(out) != set(setup.metrics):
        raise model.error(f"metrics changed from {list(setup.metrics)} to {list(out)}")
    return out, snapshot


# ---- one block ------------------------------------------------------------------------------


def _lam_key(policy: str, lam: float) -> int:
    return zlib.crc32(f"{policy}|{format_lam(lam)}".encode())


def _stream(cfg: PluginSimConfig, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=key))


def real_data(setup: Setup, block: int, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """The block's training set (R, n, ...) and held-out set (R, n_eval, ...)."""
    rng = _stream(setup.cfg, 0, block)
    train = setup.source.sample_runs(runs, setup.cfg.n, rng)
    return train, setup.source.sample_runs(runs, setup.cfg.n_eval, rng)


def _save(path: Path, obj) -> None:
    atomic_write_bytes(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def stage_zero(setup: Setup, folder: Path, block: int, runs: int) -> None:
    """Fit theta_0 on the block's real data and record its metrics (shared by every lambda)."""
    path = folder / "checkpoints" / f"t0_block{block:05d}.pkl"
    if path.exists():
        return
    train, heldout = real_data(setup, block, runs)
    model = setup.model.build(runs, features=setup.features)
    model.fit(PointSet(train))
    metrics, snapshot = evaluate(setup, model, heldout, _stream(setup.cfg, 2, block), None)
    theta0 = flat_state(model.state())
    _save(path, {"model": model.model, "theta0": theta0, "metrics": metrics, "snapshot": snapshot})


def run_block(setup: Setup, folder: Path, li: int, block: int, runs: int) -> None:
    """Iterations 1..T of one lambda for one block, resuming from its checkpoint."""
    cfg = setup.cfg
    result = folder / "blocks" / f"lam{li}_block{block:05d}.npz"
    if result.exists():
        return
    path = folder / "checkpoints" / f"lam{li}_block{block:05d}.pkl"
    stage = pickle.loads((folder / "checkpoints" / f"t0_block{block:05d}.pkl").read_bytes())
    if path.exists():
        ck = pickle.loads(path.read_bytes())
    else:
        key = _lam_key(cfg.policy, cfg.lams[li])
        ck = {
            "model": stage["model"],
            "loop": LoopState(0, None),
            "rng": _stream(cfg, 1, key, block),
            "eval_rng": _stream(cfg, 3, key, block),
            "history": {m: [v] for m, v in stage["metrics"].items()},
            "snapshots": [stage["snapshot"]],
        }
    model = setup.model.wrap(ck["model"], runs, setup.features)
    train, heldout = real_data(setup, block, runs)

    def record(t, _model, _data):
        metrics, snapshot = evaluate(setup, model, heldout, ck["eval_rng"], stage["theta0"])
        for m, v in metrics.items():
            ck["history"][m].append(v)
        ck["snapshots"].append(snapshot)
        ck["loop"].t = t
        _save(path, {**ck, "model": model.model})

    def fresh(m, rng):
        return PointSet(setup.source.sample_runs(runs, m, rng))

    if ck["loop"].t < cfg.iterations:
        retrain(
            model,
            PointSet(train),
            setup.policies[li],
            cfg.iterations,
            ck["rng"],
            on_iteration=record,
            fresh_source=fresh,
            state=ck["loop"],
        )
    arrays = {f"metric_{m}": np.stack(v, axis=1) for m, v in ck["history"].items()}
    if ck["snapshots"][0] is not None:
        arrays["snapshots"] = np.stack(ck["snapshots"])
    atomic_save_npz(result, **arrays)


_SETUPS: dict = {}


def _task(args) -> None:
    """A unit of work in a worker process: ("t0" | lambda index, block, runs)."""
    config, features, metrics, folder, what, block, runs = args
    key = (config, folder)
    if key not in _SETUPS:  # plugins load once per process (also under the spawn start method)
        setup = prepare(config)
        setup.features, setup.metrics = features, metrics
        _SETUPS[key] = setup
    setup = _SETUPS[key]
    if what == "t0":
        stage_zero(setup, Path(folder), block, runs)
    else:
        run_block(setup, Path(folder), what, block, runs)


# ---- the whole run ------------------------------------------------------------------------


def _check_resume(folder: RunFolder, setup: Setup) -> None:
    """Refuse to resume with a plugin file whose content changed since the run started."""
    import json

    if not folder.resuming:
        return
    old = json.loads(folder.file("config.json").read_text()).get("plugins", {})
    for kind, rec in setup.plugins().items():
        before = old.get(kind, {}).get("sha256")
        if before and rec.get("sha256") and before != rec["sha256"]:
            raise UsageError(
                f"{kind} plugin {rec['spec']!r} changed since this run started in "
                f"{str(folder.path)!r} (its SHA-256 differs from config.json's); use another --out"
            )


def _execute(tasks: list, workers: int, bar) -> None:
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            _task(task)
            if bar is not None:
                bar.update()
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(_task, tasks):
            if bar is not None:
                bar.update()


def simulate(setup: Setup, folder: RunFolder, workers: int = 1, progress: bool = False) -> None:
    """Every block of t = 0, then of every lambda, then summary.csv (the folder is locked)."""
    cfg = setup.cfg
    extra = {"plugins": setup.plugins(), "metrics": list(setup.metrics)}
    extra.update(data=setup.source.describe(), policy_labels=[p.label for p in setup.policies])
    folder.write_config(extra=extra)
    common = (cfg, setup.features, setup.metrics, str(folder.path))
    zero = [(*common, "t0", b, r) for b, r in cfg.blocks()]
    rest = [(*common, li, b, r) for li in range(len(cfg.lams)) for b, r in cfg.blocks()]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(zero) + len(rest), desc=cfg.model, unit="block")
    _execute(zero, workers, bar)
    _execute(rest, workers, bar)
    if bar is not None:
        bar.close()
    write_summary(folder.file("summary.csv"), summary_table(setup, folder.path))
    # Checkpoints hold pickled models: only resuming needs them.
    for ck in folder.file("checkpoints").glob("*.pkl"):
        ck.unlink()
    with contextlib.suppress(OSError):
        folder.file("checkpoints").rmdir()


def run_plugin_simulation(
    config: PluginSimConfig,
    out: str | Path,
    workers: int = 1,
    progress: bool = False,
    figures: bool = True,
) -> dict:
    """Run (or resume) a plugin-model simulation in folder `out`; returns its description.

    Everything is validated, and the plugins tried, before anything is written (UsageError).

    Parameters
    ----------
    config : PluginSimConfig
    out : the run folder
    workers : processes (the numbers do not depend on it)
    progress : show a progress bar of (lambda, block) tasks
    figures : draw the figures (a PNG per metric and the samples of run 0)

    Returns
    -------
    dict
        `stability.runs.runfolder.describe_run`'s: out, config, summary, figures, iterations,
        final[lam][metric] = {mean, se}.
    """
    setup = resolve(config)
    check_n(workers, "workers", minimum=1)
    folder = RunFolder(out, COMMAND, setup.cfg.options())
    folder.check_writable()
    _check_resume(folder, setup)
    with lock_run_folder(folder.path, command=COMMAND):
        if not folder.file("summary.csv").exists():
            simulate(setup, folder, workers, progress)
        rows = read_summary(folder.file("summary.csv"))
        paths = write_figures(setup, folder.path, rows) if figures else []
    return describe_run(folder, rows, paths, setup.cfg.iterations)


def summary_table(setup: Setup, folder: Path) -> list[dict]:
    """Tidy rows of every lambda and metric from the finished blocks."""
    cfg = setup.cfg
    rows = []
    for li, lam in enumerate(cfg.lams):
        name = getattr(setup.policies[li], "name", cfg.policy)
        stored = [np.load(folder / "blocks" / f"lam{li}_block{b:05d}.npz") for b, _ in cfg.blocks()]
        for metric in setup.metrics:
            values = np.concatenate([s[f"metric_{metric}"] for s in stored])
            rows.extend(summary_rows(name, lam, metric, values))
    return rows


def write_figures(setup: Setup, folder: Path, rows: list[dict]) -> list[str]:
    """One PNG per metric and, for 1D or 2D points, the samples of run 0 (skip existing files)."""
    from stability.runs.plots import metric_figure, save_figure

    cfg = setup.cfg
    what = f"{cfg.model} on {setup.source.describe()}, n={cfg.n}, {cfg.runs} runs"
    paths = []
    for metric in setup.metrics:
        path = folder / "figures" / f"{metric}.png"
        if not path.exists():
            title = f"{METRIC_DOC.get(metric, metric)}\n{what}"
            save_figure(metric_figure(rows, metric, title), path)
        paths.append(str(path))
    path = folder / "figures" / "samples.png"
    first = folder / "blocks" / "lam0_block00000.npz"
    if "w1" in setup.metrics and len(setup.features) == 1 and setup.features[0] <= 2:
        if not path.exists() and first.exists():
            save_figure(samples_figure(setup, folder), path)
        paths.append(str(path))
    return paths


def samples_figure(setup: Setup, folder: Path):
    """Run 0's samples at t = 0, T/2, T for each lambda, with its held-out real data."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cfg = setup.cfg
    cols = sorted({0, cfg.iterations // 2, cfg.iterations})
    real = real_data(setup, 0, cfg.blocks()[0][1])[1][0]
    fig, axes = plt.subplots(
        len(cfg.lams), len(cols), figsize=(2.6 * len(cols), 2.2 * len(cfg.lams)), squeeze=False
    )
    lo, hi = real.min(0) - 1.0, real.max(0) + 1.0
    for i, lam in enumerate(cfg.lams):
        snaps = np.load(folder / "blocks" / f"lam{i}_block00000.npz")["snapshots"]
        for j, t in enumerate(cols):
            ax = axes[i, j]
            if real.shape[1] == 1:
                bins = np.linspace(lo[0], hi[0], int(np.clip(2 * math.sqrt(len(real)), 10, 60)))
                ax.hist(real[:, 0], bins=bins, color="0.75", density=True, label="real")
                ax.hist(snaps[t][:, 0], bins=bins, histtype="step", density=True, label="model")
            else:
                ax.scatter(real[:, 0], real[:, 1], s=2, c="0.75")
                ax.scatter(snaps[t][:, 0], snaps[t][:, 1], s=2)
                ax.set_xlim(lo[0], hi[0])
                ax.set_ylim(lo[1], hi[1])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t = {t}")
            if j == 0:
                ax.set_ylabel("fully synthetic" if math.isinf(lam) else f"lambda = {lam:g}")
    fig.suptitle(f"{cfg.model}, {cfg.policy}: samples of run 0 (grey: held-out real data)")
    fig.tight_layout()
    return fig


__all__ = [
    "COMMAND",
    "METRIC_DOC",
    "PluginSimConfig",
    "PointSource",
    "Setup",
    "prepare",
    "resolve",
    "run_block",
    "run_plugin_simulation",
    "simulate",
    "summary_table",
    "write_figures",
    "stage_zero",
    "wasserstein_pair",
]
