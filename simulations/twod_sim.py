"""`stability simulate flow|diffusion`: Algorithm 1 with 2D flow-matching or DDPM models.

Reproduces the 2D experiments of the paper (section 5, appendix G: Figures 3, 4, 7, 8): every
lambda starts from the same model fitted on the real data (t = 0, computed once and shared);
then the R runs of all lambdas are trained as one batched ensemble of L R members
(``simulations.twod_group``; lambdas whose minibatch sizes differ, or ``joint=False``, run one
group after another), with bitwise the numbers of the lambdas run one by one. After each
iteration the run folder receives an atomic checkpoint per group (weights, Adam state,
random-stream states, accumulated data, metrics), so a killed run resumes from its last finished
iteration and ends with exactly the numbers of an uninterrupted run. For 8 gaussians the mode
statistics of ``simulations.twod_modes`` are recorded with the distances.

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
from simulations.twod_job import (
    GroupJob,
    RealData,
    check_finite_samples,
    distances,
    make_model,
)
from simulations.twod_modes import MODE_METRICS
from stability.errors import UsageError, check_lam, check_n
from stability.loop import LoopState, PointSet, Policy, retrain, synthetic_count
from stability.runs.runfolder import (
    RunFolder,
    atomic_write_bytes,
    describe_run,
    read_summary,
    summary_rows,
    write_summary,
)

MODELS = ("flow", "diffusion")
METRICS_2D = ("w1", "w2", "w2_sliced", "param_distance", "loss")
MODE_METRICS_2D = MODE_METRICS  # recorded too when the data has modes (8 gaussians)
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
    joint: bool = True

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
        """The configuration as JSON-safe values, for ``config.json`` (lambda = inf as "inf").

        Returns
        -------
        dict
            Every field by name; ``lams`` a list of floats and "inf".
        """
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
        """The fit on the real data (t = 0), shared by every lambda; computed once, then read.

        Parameters
        ----------
        real : RealData
            Each run's training (R, n, 2), held-out and floor (R, n_eval, 2) points.

        Returns
        -------
        dict
            ``state`` (the model's, for R runs), ``samples`` (tensor (R, max(n_eval, n), 2),
            theta_0's samples: metrics at t = 0 and the synthetic data of t = 1), ``theta0``
            (tensor (R, p)), ``metrics`` and ``floor`` (tensors (R,) per distance).
        """
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
        check_finite_samples(samples, 0, math.nan)
        exact = cfg.n_eval <= cfg.exact_max
        seeds = [zlib.crc32(f"{cfg.seed}|{r}|0".encode()) for r in self.runs]
        metrics = distances(samples[:, : cfg.n_eval], real.heldout, exact, seeds)
        floor = distances(real.floor, real.heldout, exact, [s + 1 for s in seeds])
        stage = {
            "state": model.state(),
            "samples": torch.from_numpy(samples),
            "theta0": model.params().clone(),
            "metrics": {k: torch.from_numpy(v) for k, v in metrics.items()},
            "floor": {f"{k}_floor": torch.from_numpy(v) for k, v in floor.items()},
        }
        _save(path, stage)
        return stage

    # ---- a group of lambdas trained as one ensemble -------------------------------------------
    def run_group(self, lis: list[int], stage: dict, bar=None) -> dict[int, dict]:
        """Run or resume the lambdas ``lis`` as one joint ensemble (``simulations.twod_group``).

        Every (lambda, run) pair is a member of one ensemble, started from the shared t = 0 fit
        (``stage``); ``stability.loop.retrain`` drives the group through ``GroupedPolicy``, each
        lambda's training set built by its own policy. After each iteration the group's
        checkpoint ``checkpoints/lam{i-j-...}.pt`` is written atomically.

        Parameters
        ----------
        lis : list of int
            Indices into ``cfg.lams`` (one group of ``joint_groups``).
        stage : dict
            The t = 0 stage (``stage_zero``).
        bar : tqdm or None
            Progress bar, advanced by one per lambda and iteration.

        Returns
        -------
        dict of int to dict of str to list of ndarray
            Per lambda index, each metric's values at t = 0..T, one array of shape (R,) each.
        """
        from simulations.models2d import tile_state
        from simulations.twod_group import GroupedPolicy, GroupModel

        cfg = self.cfg
        job = GroupJob(self, lis, stage)
        path = self.folder.file("checkpoints", "lam" + "-".join(map(str, lis)) + ".pt")
        group = GroupModel(job.model, len(lis), job.sample_lambda)
        pools = [None] * len(lis)
        if path.exists():
            t = job.restore(_load(path), group, pools)
        else:
            job.model.load_state(tile_state(stage["state"], len(lis)))
            for view in group.views:
                view.cache = np.asarray(stage["samples"])
            t = 0
        if bar is not None:
            bar.update(t * len(lis))
        if t >= cfg.iterations:
            return job.histories
        policy = GroupedPolicy(
            [self.policies[li] for li in lis],
            [PointSet(r.train) for r in job.reals],
            job.streams,
            [r.fresh(self.source) for r in job.reals],
            pools,
        )

        def record(t, wrapped, data):
            job.record(t, group)
            _save(path, job.checkpoint(t, group, pools))
            if bar is not None:
                w2 = np.nanmean(job.histories[lis[-1]]["w2"][-1])
                bar.set_postfix_str(f"t={t} W2(lambda={cfg.lams[lis[-1]]:g})={w2:.3f}")
                bar.update(len(lis))

        retrain(
            group,
            None,
            policy,
            cfg.iterations,
            None,
            on_iteration=record,
            state=LoopState(t, None),
        )
        return job.histories

    def groups(self) -> list[list[int]]:
        """The lambda indices trained together (``joint``) or one by one (``joint=False``)."""
        from simulations.twod_group import joint_groups

        cfg = self.cfg
        if not cfg.joint:
            return [[i] for i in range(len(cfg.lams))]
        return joint_groups(self.policies, cfg.n, cfg.batch, cfg.iterations)

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
            histories = {}
            for lis in self.groups():
                histories.update(self.run_group(lis, stage, bar))
            rows = []
            for li, lam in enumerate(cfg.lams):
                history = histories[li]
                for m in history:
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
        """Draw the missing figures of a finished run (metric curves, density grid).

        Parameters
        ----------
        rows : list of dict
            The run's summary rows.

        Returns
        -------
        list of str
            Paths of every figure, drawn now or before.
        """
        from simulations.twod_figures import metric_curves

        cfg = self.cfg
        out = self.folder.file("figures")
        model = cfg.fm if cfg.model == "flow" else "DDPM"
        what = f"{cfg.model} ({model}), {cfg.data}, n={cfg.n}, {cfg.runs} runs"
        paths = metric_curves(rows, out, what, cfg.iterations)
        grid = out / "samples.png"
        if not grid.exists():
            self.sample_grid(grid)
        paths.append(str(grid))
        return paths

    def snapshots(self, li: int) -> list:
        """Run 0's samples of lambda ``cfg.lams[li]`` at t = 0..T, arrays of shape (n_eval, 2)."""
        for lis in self.groups():
            if li in lis:
                ck = _load(self.folder.file("checkpoints", "lam" + "-".join(map(str, lis)) + ".pt"))
                return [np.asarray(s) for s in ck["snapshots"][str(li)]]
        raise KeyError(li)

    def sample_grid(self, path: Path) -> None:
        """Densities of run 0 per lambda (rows) and iteration (columns), Figures 3 and 4.

        Parameters
        ----------
        path : Path
            The PNG to write (``simulations.twod_figures.density_grid``).
        """
        from simulations.twod_figures import density_grid, grid_columns, row_label

        cfg = self.cfg
        real = RealData(cfg, self.source, [0]).heldout[0]
        density_grid(
            path,
            real,
            [self.snapshots(i) for i in range(len(cfg.lams))],
            [row_label(lam) for lam in cfg.lams],
            grid_columns(cfg.iterations),
            f"{cfg.model}, {cfg.data}, n = {cfg.n}: densities of run 0 ({cfg.n_eval} samples each)",
        )

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
