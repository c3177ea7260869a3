"""The parts of a 2D simulation below its driver: models, real data, distances, group runs.

``simulations.twod_sim`` drives a simulation (configuration, run folder, t = 0, groups of
lambdas, figures); this module holds what it drives: the model of a configuration, each run's
real data, the distances to held-out data and a group's running state (``GroupJob``: streams,
metrics, snapshots, checkpoints). See ``simulations.twod_sim`` for the random streams.
"""

from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING

import numpy as np

from simulations.data import DataSource
from simulations.twod_modes import has_modes, mode_metrics
from stability.errors import RunError
from stability.loop import PointSet, synthetic_count
from stability.runs.runfolder import format_lam

if TYPE_CHECKING:
    from simulations.twod_sim import TwoDConfig, TwoDSimulation


def lam_key(policy: str, lam: float) -> int:
    """The stream key of a (policy, lambda) pair: CRC-32 of ``"policy|lambda"``.

    It names each lambda's sampling streams, so a lambda's numbers do not depend on which other
    lambdas run beside it (jointly or one by one).
    """
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
        """A source of fresh real data for policy ``fresh``, drawn from each run's stream (0, r).

        Parameters
        ----------
        source : DataSource

        Returns
        -------
        callable
            ``draw(m, rng)`` -> PointSet of shape (R, m, 2) (``rng`` is unused: each run draws
            from its own real-data stream, so fresh data never depends on the model's samples).
        """

        def draw(m, rng):
            return PointSet(np.stack([source.sample(m, g) for g in self.streams.gens]))

        return draw


def distances(gen: np.ndarray, ref: np.ndarray, exact: bool, seeds: list[int]) -> dict:
    """W1, W2 (exact, if asked) and sliced W2 per run between gen and ref, shapes (R, n, 2)."""
    from simulations.otmetrics import sliced_w2, wasserstein_batch

    out = {"w2_sliced": np.array([sliced_w2(g, r, seed=s) for g, r, s in zip(gen, ref, seeds)])}
    if exact:
        out["w1"] = wasserstein_batch(gen, ref, 1)
        out["w2"] = wasserstein_batch(gen, ref, 2)
    else:
        out["w1"] = out["w2"] = np.full(gen.shape[0], np.nan)
    return out


def check_finite_samples(samples: np.ndarray, t: int, lam: float) -> None:
    """Stop the run (RunError) when a model's samples left float64 (a diverging fit)."""
    if not np.all(np.isfinite(samples)):
        runs = np.nonzero(~np.all(np.isfinite(samples), axis=(1, 2)))[0]
        where = "" if math.isnan(lam) else f", lambda = {format_lam(lam)}"
        raise RunError(
            f"samples of run {int(runs[0])} are not finite at iteration t = {t}{where} "
            f"({len(runs)} run(s)): the fit diverged (try a smaller --lr)"
        )


def initial_history(cfg: TwoDConfig, stage: dict) -> dict[str, list]:
    """Each metric's value at t = 0 (the shared fit on the real data), arrays of shape (R,)."""
    history = {m: [np.asarray(stage["metrics"][m])] for m in ("w1", "w2", "w2_sliced")}
    history["param_distance"] = [np.zeros(cfg.runs)]
    history["loss"] = [np.asarray(stage["state"]["last_loss"])]
    if has_modes(cfg.data):
        samples = np.asarray(stage["samples"])[:, : max(cfg.n_eval, cfg.n)]
        for k, v in mode_metrics(samples, cfg.data).items():
            history[k] = [v]
    return history


class GroupJob:
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
            RunStreams(cfg.seed, (8, lam_key(cfg.policy, cfg.lams[li])), sim.runs) for li in lis
        ]
        self.joint = RunStreams.joined(self.streams)
        # one RealData per lambda: the same points, separate streams for policy 'fresh'
        self.reals = [RealData(cfg, sim.source, sim.runs) for _ in lis]
        self.theta0 = stage["theta0"]
        # each lambda draws what it draws alone: max(n_eval, floor(lam n)) samples per iteration
        self.draws = [max(cfg.n_eval, synthetic_count(cfg.lams[li], cfg.n)) for li in lis]
        self.histories = {li: initial_history(cfg, stage) for li in lis}
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
            check_finite_samples(mine, t, cfg.lams[li])
            seeds = [zlib.crc32(f"{cfg.seed}|{r}|{li}|{t}".encode()) for r in self.sim.runs]
            h = self.histories[li]
            for k, v in distances(
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
