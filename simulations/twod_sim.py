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
from simulations.twod_modes import MODE_METRICS, has_modes, mode_metrics
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


def _initial_history(cfg: TwoDConfig, stage: dict) -> dict[str, list]:
    """Each metric's value at t = 0 (the shared fit on the real data), arrays of shape (R,)."""
    history = {m: [np.asarray(stage["metrics"][m])] for m in ("w1", "w2", "w2_sliced")}
    history["param_distance"] = [np.zeros(cfg.runs)]
    history["loss"] = [np.asarray(stage["state"]["last_loss"])]
    if has_modes(cfg.data):
        samples = np.asarray(stage["samples"])[:, : max(cfg.n_eval, cfg.n)]
        for k, v in mode_metrics(samples, cfg.data).items():
            history[k] = [v]
    return history


class _GroupJob:
    """What one group's run holds besides the model: streams, real data, metrics, snapshots.

    Parameters
    ----------
    sim : TwoDSimulation
    lis : list of int
        The group's lambda indices; member p R + r is the p-th lambda's run r.
    stage : dict
        The t = 0 stage.
    """

    def __init__(self, sim: TwoDSimulation, lis: list[int], stage: dict):
        from simulations.ensemble import RunStreams

        cfg = self.cfg = sim.cfg
        self.sim, self.lis = sim, list(lis)
        self.model = make_model(cfg, sim.runs * len(lis))
        self.streams = [
            RunStreams(cfg.seed, (8, _lam_key(cfg.policy, cfg.lams[li])), sim.runs) for li in lis
        ]
        self.joint = RunStreams.joined(self.streams)
        # one RealData per lambda: the same points, separate streams for policy 'fresh'
        self.reals = [RealData(cfg, sim.source, sim.runs) for _ in lis]
        self.theta0 = stage["theta0"]
        # each lambda draws what it draws alone: max(n_eval, floor(lam n)) samples per iteration
        self.draws = [max(cfg.n_eval, synthetic_count(cfg.lams[li], cfg.n)) for li in lis]
        self.histories = {li: _initial_history(cfg, stage) for li in lis}
        self.snapshots = {li: [np.asarray(stage["samples"][0, : cfg.n_eval])] for li in lis}
        self.samples = None

    def members(self, p: int) -> slice:
        """The members of the p-th lambda of the group."""
        return slice(p * self.cfg.runs, (p + 1) * self.cfg.runs)

    def sample_lambda(self, p: int, k: int, rng) -> PointSet:
        """k samples per run of the p-th lambda alone (when its cached samples are too few)."""
        sub = make_model(self.cfg, self.sim.runs)
        sub.net.load_state_dict(
            {n: v[self.members(p)] for n, v in self.model.net.state_dict().items()}
        )
        return sub.sample(k, rng)

    def record(self, t: int, group) -> None:
        """Sample theta_t for every member, record each lambda's metrics, refill the caches."""
        import torch

        cfg = self.cfg
        counts = [d for d in self.draws for _ in self.sim.runs]
        samples = self.samples = self.model.sample(counts, self.joint).x
        params = self.model.params()
        scale = math.sqrt(self.model.net.params_per_run)
        exact = cfg.n_eval <= cfg.exact_max
        for p, li in enumerate(self.lis):
            mine = samples[self.members(p), : self.draws[p]]
            _check_finite_samples(mine, t, cfg.lams[li])
            seeds = [zlib.crc32(f"{cfg.seed}|{r}|{li}|{t}".encode()) for r in self.sim.runs]
            h = self.histories[li]
            for k, v in _distances(
                mine[:, : cfg.n_eval], self.reals[p].heldout, exact, seeds
            ).items():
                h[k].append(v)
            dist = torch.linalg.vector_norm(params[self.members(p)] - self.theta0, dim=1)
            h["param_distance"].append((dist / scale).numpy())
            h["loss"].append(np.asarray(self.model.last_loss[self.members(p)]))
            if has_modes(cfg.data):
                modes = mode_metrics(mine[:, : max(cfg.n_eval, cfg.n)], cfg.data)
                for k, v in modes.items():
                    h[k].append(v)
            self.snapshots[li].append(mine[0, : cfg.n_eval])
            group.views[p].cache = mine

    def checkpoint(self, t: int, group, pools: list) -> dict:
        """Everything ``restore`` needs to continue after iteration t exactly."""
        import torch

        def tensors(values):
            return [torch.from_numpy(np.asarray(v)) for v in values]

        return {
            "t": t,
            "state": self.model.state(),
            "streams": [s.state() for s in self.streams],
            "real_streams": [r.streams.state() for r in self.reals],
            "pools": [None if p is None else torch.from_numpy(np.asarray(p.x)) for p in pools],
            "cache": torch.from_numpy(self.samples),
            "histories": {
                str(li): {k: tensors(vals) for k, vals in self.histories[li].items()}
                for li in self.lis
            },
            "snapshots": {str(li): tensors(self.snapshots[li]) for li in self.lis},
        }

    def restore(self, ck: dict, group, pools: list) -> int:
        """Restore a ``checkpoint`` (model, streams, metrics, pools, caches); returns its t."""
        self.model.load_state(ck["state"])
        for s, state in zip(self.streams, ck["streams"]):
            s.set_state(state)
        for r, state in zip(self.reals, ck["real_streams"]):
            r.streams.set_state(state)
        self.histories = {
            li: {k: [np.asarray(v) for v in vals] for k, vals in ck["histories"][str(li)].items()}
            for li in self.lis
        }
        self.snapshots = {li: [np.asarray(v) for v in ck["snapshots"][str(li)]] for li in self.lis}
        pools[:] = [None if p is None else PointSet(np.asarray(p)) for p in ck["pools"]]
        self.samples = np.asarray(ck["cache"])
        for p, view in enumerate(group.views):
            view.cache = self.samples[self.members(p), : self.draws[p]]
        return int(ck["t"])


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
        job = _GroupJob(self, lis, stage)
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

    def snapshots(self, li: int) -> list:
        """Run 0's samples of lambda ``cfg.lams[li]`` at t = 0..T, arrays of shape (n_eval, 2)."""
        for lis in self.groups():
            if li in lis:
                name = "lam" + "-".join(map(str, lis)) + ".pt"
                return [
                    np.asarray(s)
                    for s in _load(self.folder.file("checkpoints", name))["snapshots"][str(li)]
                ]
        raise KeyError(li)

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
            snaps = self.snapshots(i)
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
