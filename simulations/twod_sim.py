"""`stability simulate flow|diffusion`: Algorithm 1 with 2D flow-matching or DDPM models.

Reproduces the 2D experiments of the paper (section 5, appendix G: Figures 3, 4, 7, 8): R runs
of a setting are trained as one batched ensemble; every lambda starts from the same model fitted
on the real data (t = 0, computed once and shared); after each iteration the run folder receives
an atomic checkpoint (weights, Adam state, random-stream states, accumulated data, metrics), so a
killed run resumes from its last finished iteration and ends with exactly the numbers of an
uninterrupted run.

Random streams (numpy Generators, one per run; key = SeedSequence spawn key):
  (0, run)              the run's real data: training set, held-out set, and a second real
                        sample for the floor of the distances
  (4|5, 0|1, run)       network initialisation and training noise (minibatches, x0, t, eps,
                        OT pair draws), shared by all lambdas until t = 0, then continued
  (7, run)              samples of theta_0 (metrics at t = 0 and the synthetic data of t = 1)
  (8, key(lambda), run) samples of theta_t, t >= 1, for each lambda
"""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from simulations.data import TWO_D, DataSource, check_seed, make_source
from stability.errors import RunError, UsageError, check_lam, check_n
from stability.loop import LoopState, PointSet, Policy, retrain, synthetic_count
from stability.runs.runfolder import (
    RunFolder,
    atomic_write_bytes,
    describe_run,
    format_lam,
    read_summary,
    summary_rows,
    write_summary,
)

MODELS = ("flow", "diffusion")
METRICS_2D = ("w1", "w2", "w2_sliced", "param_distance", "loss")
FLOOR_METRICS = ("w1_floor", "w2_floor", "w2_sliced_floor")


@dataclass(frozen=True)
class TwoDConfig:
    """Everything that determines the numbers of a 2D retraining simulation."""

    model: str = "flow"
    data: str = "moons"
    n: int = 1000
    lams: tuple = (0.0, 0.5, 1.0, math.inf)
    policy: str = "mix"
    iterations: int = 20
    runs: int = 50
    epochs: float = 150.0
    init_epochs: float | None = None
    batch: int = 256
    lr: float = 3e-3
    width: int = 64
    fm: str = "otcfm"
    sigma: float = 0.1
    solver: str = "euler"
    ode_steps: int = 100
    diffusion_steps: int = 100
    from_scratch: bool = False
    n_eval: int | None = None
    exact_max: int = 2000
    n_fresh: int | None = None
    subsample_size: int | None = None
    seed: int = 0

    def resolve(self) -> tuple[TwoDConfig, DataSource, list[Policy]]:
        """Validate every option (ValueError with one line) and fill the defaults."""
        from simulations.models2d import FLOW_MATCHERS, SOLVERS

        if self.model not in MODELS:
            raise UsageError(f"unknown model {self.model!r}; choose flow or diffusion")
        if self.data not in TWO_D:
            raise UsageError(f"unknown 2D data set {self.data!r}; choose one of {', '.join(TWO_D)}")
        source = make_source(self.data)
        check_n(self.n, "n")
        check_n(self.runs, "runs", minimum=1)
        check_n(self.iterations, "iterations", minimum=1)
        for name in ("epochs", "init_epochs", "lr", "sigma"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise UsageError(f"{name.replace('_', '-')} must be a positive number, got {v}")
        if self.epochs < 1:
            raise UsageError(f"epochs must be >= 1, got {self.epochs}")
        check_n(self.batch, "batch", minimum=1)
        check_n(self.width, "width", minimum=1)
        check_n(self.ode_steps, "ode_steps", minimum=1)
        check_n(self.diffusion_steps, "diffusion_steps", minimum=2)
        if self.fm not in FLOW_MATCHERS:
            raise UsageError(
                f"unknown flow matcher {self.fm!r}; choose one of {', '.join(FLOW_MATCHERS)}"
            )
        if self.solver not in SOLVERS:
            raise UsageError(f"unknown ODE solver {self.solver!r}; choose euler or dopri5")
        if not self.lams:
            raise UsageError("give at least one lambda")
        lams = tuple(check_lam(v) for v in self.lams)
        if len(set(lams)) != len(lams):
            raise UsageError("lambda values must be distinct")
        policies = [Policy(self.policy, lam, self.n_fresh, self.subsample_size) for lam in lams]
        # None means "as many as n"; 0 is refused (it used to mean n as well, silently).
        n_eval = self.n if self.n_eval is None else self.n_eval
        check_n(n_eval, "--n-eval")
        check_seed(self.seed)
        if self.model == "diffusion":
            scale = 1000.0 / self.diffusion_steps
            if 0.02 * scale >= 1:
                raise UsageError(
                    f"diffusion-steps must be > 20 for the linear schedule, got {self.diffusion_steps}"
                )
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(lams=lams, n_eval=n_eval, init_epochs=self.init_epochs or 4 * self.epochs)
        cfg = TwoDConfig(**values)
        from stability.runs.resources import check_memory

        check_memory(
            memory_estimate(cfg),
            f"simulate {self.model} ({self.runs} runs, n = {self.n}, n-eval = {n_eval})",
            "use fewer --runs or a smaller --n or --n-eval",
        )
        return cfg, source, policies

    def options(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["lams"] = [v if math.isfinite(v) else "inf" for v in self.lams]
        return d

    def steps(self, epochs: float) -> int:
        """Optimisation steps for `epochs` passes over n real points (constant samples seen)."""
        return max(1, math.ceil(epochs * self.n / self.batch))


def memory_estimate(cfg: TwoDConfig) -> float:
    """Peak memory in bytes of a 2D simulation (a conservative estimate).

    Per run: the float64 points (training set, held-out set, floor sample, the samples of an
    iteration and their cached copy, the accumulated pool), the float32 network with its
    gradients, Adam moments and theta_0 (6 copies of about 2 width^2 parameters), and the
    activations of a minibatch and of the sampling batch; plus one exact-OT cost matrix
    (n_eval^2) per core.
    """
    k = max(synthetic_count(lam, cfg.n) for lam in cfg.lams)
    pool = cfg.n + cfg.iterations * k if cfg.policy.startswith("accumulate") else 0
    points = 2 * 8.0 * (cfg.n + 3 * cfg.n_eval + 2 * max(cfg.n_eval, k) + pool)
    params = 2 * cfg.width**2 + 8 * cfg.width
    network = 4.0 * (6 * params + 8 * cfg.width * (cfg.batch + max(cfg.n_eval, k)))
    ot = 8.0 * cfg.n_eval**2 * 4 if cfg.n_eval <= cfg.exact_max else 0.0
    return cfg.runs * (points + network) + ot


def _lam_key(policy: str, lam: float) -> int:
    return zlib.crc32(f"{policy}|{format_lam(lam)}".encode())


def make_model(cfg: TwoDConfig, runs: list[int]):
    """The batched ensemble of the configuration (FlowModel or DiffusionModel)."""
    from simulations.models2d import DiffusionModel, FlowModel, TrainConfig

    train = TrainConfig(
        init_steps=cfg.steps(cfg.init_epochs),
        steps=cfg.steps(cfg.epochs),
        batch=cfg.batch,
        lr=cfg.lr,
        width=cfg.width,
        from_scratch=cfg.from_scratch,
    )
    if cfg.model == "flow":
        return FlowModel(runs, cfg.seed, train, cfg.fm, cfg.sigma, cfg.solver, cfg.ode_steps)
    return DiffusionModel(runs, cfg.seed, train, cfg.diffusion_steps)


class RealData:
    """Each run's real data (training set, held-out set, floor sample), from stream (0, run)."""

    def __init__(self, cfg: TwoDConfig, source: DataSource, runs: list[int]):
        from simulations.ensemble import RunStreams

        streams = RunStreams(cfg.seed, (0,), runs)
        self.train = np.stack([source.sample(cfg.n, g) for g in streams.gens])
        self.heldout = np.stack([source.sample(cfg.n_eval, g) for g in streams.gens])
        self.floor = np.stack([source.sample(cfg.n_eval, g) for g in streams.gens])
        self.streams = streams  # continues to produce fresh data (policy 'fresh')

    def fresh(self, source):
        def draw(m, rng):
            return PointSet(np.stack([source.sample(m, g) for g in self.streams.gens]))

        return draw


class _Cached:
    """Serves the samples drawn for the metrics of iteration t as the synthetic data of t + 1.

    Both are fresh draws from theta_t, so reusing them halves the sampling cost without changing
    the process (Algorithm 1 samples theta_t once per iteration).
    """

    def __init__(self, model, cache: np.ndarray | None = None):
        self.model = model
        self.cache = cache

    def fit(self, data):
        self.model.fit(data)

    def sample(self, k, rng):
        if self.cache is not None and self.cache.shape[1] >= k:
            out, self.cache = self.cache[:, :k], None
            return PointSet(out)
        return self.model.sample(k, rng)

    def state(self):
        return self.model.state()


def _distances(gen: np.ndarray, ref: np.ndarray, exact: bool, seeds: list[int]) -> dict:
    """W1, W2 (exact, if asked) and sliced W2 per run between gen and ref, shapes (R, n, 2)."""
    from simulations.otmetrics import sliced_w2, wasserstein_batch

    out = {"w2_sliced": np.array([sliced_w2(g, r, seed=s) for g, r, s in zip(gen, ref, seeds)])}
    if exact:
        out["w1"] = wasserstein_batch(gen, ref, 1)
        out["w2"] = wasserstein_batch(gen, ref, 2)
    else:
        out["w1"] = out["w2"] = np.full(gen.shape[0], np.nan)
    return out


def _save(path: Path, obj: dict) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load(path: Path) -> dict:
    """A checkpoint of this run folder; a damaged or unsafe one is refused (UsageError).

    `torch.load(weights_only=True)` never runs code from the file: a checkpoint holding
    anything but tensors and plain containers is refused, as is a truncated or corrupt one,
    with one line naming it.
    """
    import pickle

    import torch

    try:
        ck = torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        raise UsageError(
            f"checkpoint {path} holds objects other than tensors (refused: loading it could run "
            "code); delete it to recompute that part of the run"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise UsageError(
            f"checkpoint {path} is damaged ({first[:120]}); delete it to recompute that part of "
            "the run"
        ) from None
    if not isinstance(ck, dict):
        raise UsageError(f"checkpoint {path} is not a checkpoint of this toolkit; delete it")
    return ck


def _check_finite_samples(samples: np.ndarray, t: int, lam: float) -> None:
    """Stop the run (RunError) when a model's samples left float64 (a diverging fit)."""
    if not np.all(np.isfinite(samples)):
        runs = np.nonzero(~np.all(np.isfinite(samples), axis=(1, 2)))[0]
        where = "" if math.isnan(lam) else f", lambda = {format_lam(lam)}"
        raise RunError(
            f"samples of run {int(runs[0])} are not finite at iteration t = {t}{where} "
            f"({len(runs)} run(s)): the fit diverged (try a smaller --lr)"
        )


class TwoDSimulation:
    """A 2D simulation bound to its run folder; ``run()`` runs or resumes it."""

    def __init__(self, config: TwoDConfig, out: str | Path, progress: bool = False):
        self.cfg, self.source, self.policies = config.resolve()
        self.folder = RunFolder(out, f"simulate {self.cfg.model}", self.cfg.options())
        self.folder.check_writable()
        self.progress = progress
        self.runs = list(range(self.cfg.runs))

    # ---- t = 0, shared by every lambda -------------------------------------------------------
    def stage_zero(self, real: RealData) -> dict:
        import torch

        path = self.folder.file("checkpoints", "t0.pt")
        if path.exists():
            return _load(path)
        from simulations.ensemble import RunStreams

        cfg = self.cfg
        model = make_model(cfg, self.runs)
        model.fit(PointSet(real.train))
        # max(n_eval, n) whatever the lambda values, so that a lambda's numbers do not depend on
        # the others; a lambda > 1 needing more synthetic points draws them from its own stream.
        samples = model.sample(max(cfg.n_eval, cfg.n), RunStreams(cfg.seed, (7,), self.runs)).x
        _check_finite_samples(samples, 0, math.nan)
        exact = cfg.n_eval <= cfg.exact_max
        seeds = [zlib.crc32(f"{cfg.seed}|{r}|0".encode()) for r in self.runs]
        metrics = _distances(samples[:, : cfg.n_eval], real.heldout, exact, seeds)
        floor = _distances(real.floor, real.heldout, exact, [s + 1 for s in seeds])
        stage = {
            "state": model.state(),
            "samples": torch.from_numpy(samples),
            "theta0": model.params().clone(),
            "metrics": {k: torch.from_numpy(v) for k, v in metrics.items()},
            "floor": {f"{k}_floor": torch.from_numpy(v) for k, v in floor.items()},
        }
        _save(path, stage)
        return stage

    # ---- one lambda -------------------------------------------------------------------------
    def run_lambda(self, li: int, lam: float, real: RealData, stage: dict, bar=None) -> dict:
        import torch

        from simulations.ensemble import RunStreams

        cfg = self.cfg
        path = self.folder.file("checkpoints", f"lam{li}.pt")
        model = make_model(cfg, self.runs)
        streams = RunStreams(cfg.seed, (8, _lam_key(cfg.policy, lam)), self.runs)
        theta0 = stage["theta0"]
        history = {m: [np.asarray(stage["metrics"][m])] for m in ("w1", "w2", "w2_sliced")}
        history["param_distance"] = [np.zeros(cfg.runs)]
        history["loss"] = [np.asarray(stage["state"]["last_loss"])]
        snapshots = [np.asarray(stage["samples"][0, : cfg.n_eval])]
        if path.exists():
            ck = _load(path)
            model.load_state(ck["state"])
            streams.set_state(ck["streams"])
            real.streams.set_state(ck["real_streams"])
            history = {k: [np.asarray(v) for v in vals] for k, vals in ck["history"].items()}
            snapshots = [np.asarray(s) for s in ck["snapshots"]]
            pool = None if ck["pool"] is None else PointSet(np.asarray(ck["pool"]))
            loop_state = LoopState(int(ck["t"]), pool)
            cached = _Cached(model, np.asarray(ck["cache"]))
        else:
            model.load_state(stage["state"])
            loop_state = LoopState(0, None)
            cached = _Cached(model, np.asarray(stage["samples"]))
        if bar is not None:
            bar.update(loop_state.t)
        if loop_state.t >= cfg.iterations:
            return history
        exact = cfg.n_eval <= cfg.exact_max
        scale = math.sqrt(model.net.params_per_run)
        kmax = synthetic_count(lam, cfg.n)

        def record(t, wrapped, data):
            samples = model.sample(max(cfg.n_eval, kmax), streams).x
            _check_finite_samples(samples, t, lam)
            seeds = [zlib.crc32(f"{cfg.seed}|{r}|{li}|{t}".encode()) for r in self.runs]
            d = _distances(samples[:, : cfg.n_eval], real.heldout, exact, seeds)
            for k, v in d.items():
                history[k].append(v)
            history["param_distance"].append(
                (torch.linalg.vector_norm(model.params() - theta0, dim=1) / scale).numpy()
            )
            history["loss"].append(np.asarray(model.last_loss))
            snapshots.append(samples[0, : cfg.n_eval])
            cached.cache = samples
            _save(
                path,
                {
                    "t": t,
                    "state": model.state(),
                    "streams": streams.state(),
                    "real_streams": real.streams.state(),
                    "pool": None
                    if loop_state.pool is None
                    else torch.from_numpy(np.asarray(loop_state.pool.x)),
                    "cache": torch.from_numpy(samples),
                    "history": {
                        k: [torch.from_numpy(np.asarray(v)) for v in vals]
                        for k, vals in history.items()
                    },
                    "snapshots": [torch.from_numpy(np.asarray(s)) for s in snapshots],
                },
            )
            if bar is not None:
                bar.set_postfix_str(f"lambda={lam:g} t={t} W2={np.nanmean(history['w2'][-1]):.3f}")
                bar.update(1)

        retrain(
            cached,
            PointSet(real.train),
            self.policies[li],
            cfg.iterations,
            streams,
            on_iteration=record,
            fresh_source=real.fresh(self.source),
            state=loop_state,
        )
        return history

    # ---- everything -------------------------------------------------------------------------
    def run(self) -> dict:
        """Run or resume the simulation, holding the folder's lock; returns `describe`'s dict.

        Checkpoints left by an earlier run are all read before anything is written, so that a
        damaged or unsafe one is refused (UsageError) with the folder unchanged.
        """
        with self.folder.locked():
            for path in sorted(self.folder.file("checkpoints").glob("*.pt")):
                _load(path)
            return self._run()

    def _run(self) -> dict:
        cfg = self.cfg
        summary_path = self.folder.file("summary.csv")
        if not summary_path.exists():
            self.folder.path.mkdir(parents=True, exist_ok=True)
            self.folder.write_config()
            real = RealData(cfg, self.source, self.runs)
            bar = None
            if self.progress:
                from tqdm import tqdm

                bar = tqdm(
                    total=len(cfg.lams) * cfg.iterations,
                    desc=f"{cfg.model} {cfg.data}",
                    unit="iter",
                )
            stage = self.stage_zero(real)
            rows = []
            for li, lam in enumerate(cfg.lams):
                real_l = RealData(cfg, self.source, self.runs)  # fresh streams for policy 'fresh'
                history = self.run_lambda(li, lam, real_l, stage, bar)
                for m in METRICS_2D:
                    rows.extend(summary_rows(cfg.policy, lam, m, np.stack(history[m], axis=1)))
                for m, v in stage["floor"].items():
                    vals = np.repeat(np.asarray(v)[:, None], cfg.iterations + 1, axis=1)
                    rows.extend(summary_rows(cfg.policy, lam, m, vals))
            if bar is not None:
                bar.close()
            write_summary(summary_path, rows)
        rows = read_summary(summary_path)
        figures = self.figures(rows)
        return self.describe(rows, figures)

    def figures(self, rows: list[dict]) -> list[str]:
        from stability.runs.plots import metric_figure, save_figure

        cfg = self.cfg
        out = self.folder.file("figures")
        paths = []
        what = f"{cfg.model} ({cfg.fm if cfg.model == 'flow' else 'DDPM'}), {cfg.data}, n={cfg.n}, {cfg.runs} runs"
        for metric in ("w1", "w2", "w2_sliced", "param_distance"):
            path = out / f"{metric}.png"
            if not path.exists():
                overlays = []
                floor = [r for r in rows if r["metric"] == f"{metric}_floor"]
                if floor:
                    t = np.arange(cfg.iterations + 1)
                    overlays.append(
                        (
                            "floor: two real samples",
                            t,
                            np.full(t.shape, floor[0]["mean"]),
                            dict(color="k", ls=":", lw=1),
                        )
                    )
                title = {"param_distance": "||theta_t - theta_0|| / sqrt(p)  (Figure 8)"}.get(
                    metric, f"{metric} to held-out real data (Figure 7)"
                )
                save_figure(
                    metric_figure(rows, metric, f"{title}\n{what}", overlays, band="std"), path
                )
            paths.append(str(path))
        grid = out / "samples.png"
        if not grid.exists():
            self.sample_grid(grid)
        paths.append(str(grid))
        return paths

    def sample_grid(self, path: Path) -> None:
        """Densities of run 0 per lambda (rows) and iteration (columns), Figures 3 and 4."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from stability.runs.plots import save_figure

        cfg = self.cfg
        cols = sorted(
            {0, cfg.iterations // 4, cfg.iterations // 2, (3 * cfg.iterations) // 4, cfg.iterations}
        )
        real = RealData(cfg, self.source, [0]).heldout[0]
        lo, hi = real.min(0) - 1.5, real.max(0) + 1.5
        fig, axes = plt.subplots(
            len(cfg.lams),
            len(cols) + 1,
            figsize=(2.2 * (len(cols) + 1), 2.2 * len(cfg.lams)),
            squeeze=False,
        )
        for i, lam in enumerate(cfg.lams):
            ck = _load(self.folder.file("checkpoints", f"lam{i}.pt"))
            snaps = ck["snapshots"]
            axes[i, 0].hist2d(
                real[:, 0],
                real[:, 1],
                bins=60,
                range=[[lo[0], hi[0]], [lo[1], hi[1]]],
                cmap="viridis",
            )
            axes[i, 0].set_ylabel("fully synthetic" if math.isinf(lam) else f"lambda = {lam:g}")
            for j, t in enumerate(cols, start=1):
                s = np.asarray(snaps[t])
                axes[i, j].hist2d(
                    s[:, 0],
                    s[:, 1],
                    bins=60,
                    range=[[lo[0], hi[0]], [lo[1], hi[1]]],
                    cmap="viridis",
                )
                if i == 0:
                    axes[i, j].set_title(f"t = {t}")
            if i == 0:
                axes[i, 0].set_title("real data")
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"{cfg.model}, {cfg.data}: densities of run 0")
        fig.tight_layout()
        save_figure(fig, path)

    def describe(self, rows, figures) -> dict:
        """Summary of a finished run: paths and each metric's mean +- se at the last iteration."""
        return describe_run(self.folder, rows, figures, self.cfg.iterations)


def quick_config(model: str, **overrides) -> TwoDConfig:
    """The --quick setting: small n, few runs and iterations, short fits (under 2 minutes)."""
    base = dict(
        model=model,
        n=500,
        runs=4,
        iterations=5,
        epochs=40,
        init_epochs=400,
        lams=(0.0, 1.0, math.inf),
        ode_steps=40,
        diffusion_steps=50,
        n_eval=500,
    )
    base.update(overrides)
    return TwoDConfig(**base)
