"""Flow-matching and DDPM models in 2D, as batched ensembles plugged into Algorithm 1.

Both follow the fit / sample / state protocol of ``stability.loop`` on ``PointSet`` data of
shape (R, N, 2) (one data set per run). ``fit`` fine-tunes from the current weights and Adam
state (the paper's setting) or, with ``from_scratch``, re-initialises them; every fit after the
first sees the same number of samples (``steps`` optimisation steps of ``batch`` points),
whatever the size of the training set, so that lambda values compare fairly (paper, section 5).

- ``FlowModel``: conditional flow matching from N(0, I) (t = 0) to the data (t = 1) with the
  matchers of torchcfm (``ExactOptimalTransportConditionalFlowMatcher``: OT-CFM, the paper's
  choice; ``ConditionalFlowMatcher``: independent CFM; ``SchrodingerBridgeConditionalFlowMatcher``:
  SB-CFM). The minibatch coupling is computed per run like torchcfm's OTPlanSampler (exact OT plan
  of the squared Euclidean cost, then batch pairs drawn from the plan with replacement), from the
  run's own random stream; the plans of all runs come from one call to the compiled exact
  assignment solver (``simulations.assignment``), one run per core. Samples solve dx/dt = v(t, x) with
  torchdiffeq (Euler with ``ode_steps`` steps, or dopri5).
- ``DiffusionModel``: DDPM (Ho et al. 2020) with a linear beta schedule from 1e-4 to 0.02 rescaled
  by 1000/T for T steps, an MLP noise predictor eps(x_t, t/T), the simple loss and ancestral
  sampling with sigma_t^2 = beta_t.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from simulations.ensemble import EnsembleMLP, RunStreams, minibatch_indices
from stability.coupling import inverse_cdf_pick, pairs_from_permutation
from stability.errors import UsageError
from stability.loop import PointSet

FLOW_MATCHERS = ("otcfm", "cfm", "sbcfm")  # the matcher names FlowModel accepts
SOLVERS = ("euler", "dopri5")  # the ODE solvers FlowModel's sampler accepts
_CHUNK = 32  # training steps whose random numbers are drawn at once (amortises per-run calls)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of one fit: steps at t = 0 and at every later fit, batch, Adam, network.

    Parameters
    ----------
    init_steps : int
        Optimisation steps of the first fit (t = 0, real data only).
    steps : int
        Optimisation steps of every later fit (the same for every training-set size).
    batch : int
        Minibatch size per run.
    lr : float
        Adam's learning rate.
    width : int
        Hidden width of the network (``EnsembleMLP``).
    from_scratch : bool
        Re-initialise the weights and Adam before every fit after the first. The default,
        False, fine-tunes from the current weights and Adam state (the paper's setting).
    """

    init_steps: int
    steps: int
    batch: int = 256
    lr: float = 1e-3
    width: int = 64
    from_scratch: bool = False


def _adam(net: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    # fused: one kernel per parameter for the whole update, 2.5x faster than the default
    # foreach Adam on the ensemble's 8 stacked tensors (same update up to float rounding)
    return torch.optim.Adam(net.parameters(), lr=lr, fused=True)


def _member_rows(data, runs: int) -> tuple[torch.Tensor, list[int]]:
    """Every run's training points as one float32 (sum of sizes, 2) tensor, and the sizes.

    ``data`` is a PointSet of shape (R, size, 2), or any object whose ``parts`` is a list of
    PointSets of shapes (R_i, size_i, 2) covering the runs in order (sum of R_i = R): the
    lambdas of a joint ensemble, whose training sets differ in size.
    """
    parts = getattr(data, "parts", None) or [data]
    sizes = [p.size for p in parts for _ in range(p.x.shape[0])]
    if len(sizes) != runs:
        raise ValueError(f"training data for {len(sizes)} runs given to an ensemble of {runs}")
    rows = [np.asarray(p.x, dtype=np.float32).reshape(-1, p.x.shape[-1]) for p in parts]
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(rows))), sizes


def _counts(k, runs: int) -> list[int]:
    """Samples per run: k for every run, or the R counts given."""
    counts = [int(k)] * runs if np.ndim(k) == 0 else [int(c) for c in k]
    if len(counts) != runs:
        raise ValueError(f"{len(counts)} sample counts for {runs} runs")
    return counts


def _normal(rng: RunStreams, counts: list[int]) -> np.ndarray:
    """Normal draws (R, max(counts), 2); per-run counts only when they differ."""
    if len(set(counts)) == 1:
        return rng.standard_normal((len(counts), counts[0], 2))
    # rows of another run's larger count are padding: each run's stream draws its own count
    return rng.standard_normal_ragged(counts, (2,))


def tile_state(state: dict, copies: int) -> dict:
    """A model state (``_EnsembleModel.state``) of R runs repeated for ``copies`` x R runs.

    Run r of copy c (index c R + r) gets run r's weights, Adam moments, random-stream states
    and last loss: the lambdas of a joint ensemble all continue from the shared t = 0 fit.
    Adam's step counter is a scalar shared by all runs and is kept as it is.
    """

    def tile(v):
        if torch.is_tensor(v) and v.dim() > 0:
            return torch.cat([v] * copies, dim=0)
        return copy.deepcopy(v)

    opt = copy.deepcopy(state["opt"])
    opt["state"] = {k: {n: tile(v) for n, v in s.items()} for k, s in opt["state"].items()}
    return {
        "net": {k: tile(v) for k, v in state["net"].items()},
        "opt": opt,
        "train_streams": list(state["train_streams"]) * copies,
        "init_streams": list(state["init_streams"]) * copies,
        "fits": state["fits"],
        "last_loss": tile(state["last_loss"]),
    }


class _EnsembleModel:
    """Shared machinery: the network, Adam, the training streams, checkpoints.

    Parameters
    ----------
    runs : list of int
        Global run indices (length R); they name each run's random streams.
    seed : int
        The simulation seed.
    train : TrainConfig
    stream_key : tuple of int
        Names this model's stream family (see ``RunStreams``).
    """

    in_dim = 3
    out_dim = 2

    def __init__(self, runs: list[int], seed: int, train: TrainConfig, stream_key: tuple):
        self.runs = list(runs)
        self.train_cfg = train
        self.net = EnsembleMLP(len(self.runs), self.in_dim, self.out_dim, train.width)
        self.init_streams = RunStreams(seed, (*stream_key, 0), self.runs)
        self.train_streams = RunStreams(seed, (*stream_key, 1), self.runs)
        self.net.reset_parameters(self.init_streams)
        self.opt = _adam(self.net, train.lr)
        self.fits = 0
        self.last_loss = np.full(len(self.runs), np.nan)

    # ---- protocol -------------------------------------------------------------------------
    def fit(self, data: PointSet) -> None:
        """Train every run on its own data set (Algorithm 1's refit), in place.

        ``init_steps`` Adam steps on the first call, ``steps`` afterwards, on epoch-style
        minibatches from the training streams; each run's mean loss over its last 50 steps is
        kept in ``last_loss`` (shape (R,)).

        Parameters
        ----------
        data : PointSet
            ``data.x`` of shape (R, size, 2): run r trains on ``data.x[r]``.
        """
        if self.fits > 0 and self.train_cfg.from_scratch:
            self.net.reset_parameters(self.init_streams)
            self.opt = _adam(self.net, self.train_cfg.lr)
        steps = self.train_cfg.init_steps if self.fits == 0 else self.train_cfg.steps
        x, sizes = _member_rows(data, len(self.runs))
        idx = torch.from_numpy(
            minibatch_indices(self.train_streams, sizes, self.train_cfg.batch, steps)
        )
        # rows of every run's set flattened to (sum of sizes, 2): one index_select per step (3x
        # faster than advanced indexing with a run index)
        idx += torch.from_numpy(np.cumsum([0, *sizes[:-1]]))[:, None]
        losses = []
        for start in range(0, steps, _CHUNK):
            chunk = idx[start : start + _CHUNK]
            noise = self._draw_chunk(chunk.shape[0], chunk.shape[2])
            for k in range(chunk.shape[0]):
                batch = x.index_select(0, chunk[k].reshape(-1)).view(*chunk[k].shape, -1)
                loss = self._loss(batch, {name: arr[k] for name, arr in noise.items()})
                self.opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                self.opt.step()
                losses.append(loss.detach())
        if losses:
            self.last_loss = torch.stack(losses[-min(len(losses), 50) :]).mean(0).numpy()
        self.fits += 1

    def state(self) -> dict:
        """Everything ``load_state`` needs to continue exactly: weights, Adam, streams, counters.

        Returns
        -------
        dict
            Keys ``net``, ``opt`` (state dicts, copies), ``train_streams``, ``init_streams``
            (lists of R generator states), ``fits`` (int) and ``last_loss`` (tensor (R,)).
        """
        # Deep copies: state_dict() returns the live tensors, and Adam's load_state_dict keeps
        # the tensors it is given, so a shared state would be trained in place by its next user.
        return {
            "net": copy.deepcopy(self.net.state_dict()),
            "opt": copy.deepcopy(self.opt.state_dict()),
            "train_streams": self.train_streams.state(),
            "init_streams": self.init_streams.state(),
            "fits": self.fits,
            "last_loss": torch.from_numpy(np.asarray(self.last_loss, dtype=np.float64)),
        }

    def load_state(self, state: dict) -> None:
        """Restore a dict returned by ``state`` (of a model with the same runs and config)."""
        self.net.load_state_dict(state["net"])
        self.opt = _adam(self.net, self.train_cfg.lr)
        self.opt.load_state_dict(copy.deepcopy(state["opt"]))
        for group in self.opt.param_groups:  # checkpoints written before Adam was fused
            group["fused"], group["foreach"] = True, None
        self.train_streams.set_state(state["train_streams"])
        self.init_streams.set_state(state["init_streams"])
        self.fits = int(state["fits"])
        self.last_loss = state["last_loss"].numpy()

    def params(self) -> torch.Tensor:
        """Each run's network parameters as one detached vector, shape (R, p)."""
        return self.net.flat_params()

    # ---- to implement ----------------------------------------------------------------------
    def _draw_chunk(self, steps: int, batch: int) -> dict:
        raise NotImplementedError

    def _loss(self, x1: torch.Tensor, noise: dict) -> torch.Tensor:
        raise NotImplementedError


def _torchcfm_matcher(name: str, sigma: float):
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
        SchrodingerBridgeConditionalFlowMatcher,
    )

    if name == "otcfm":
        return ExactOptimalTransportConditionalFlowMatcher(sigma=sigma)
    if name == "cfm":
        return ConditionalFlowMatcher(sigma=sigma)
    if name == "sbcfm":
        return SchrodingerBridgeConditionalFlowMatcher(sigma=sigma, ot_method="exact")
    raise UsageError(f"unknown flow matcher {name!r}; choose one of {', '.join(FLOW_MATCHERS)}")


def exact_ot_pairs(x0: np.ndarray, x1: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Pairs (i, j) drawn with replacement from the exact OT plan between two minibatches.

    As torchcfm's OTPlanSampler(method="exact"): plan = ot.emd(unif, unif, ||x0_i - x1_j||^2),
    then batch cells drawn with probability plan_ij (here by inverse CDF over its non-zero cells
    in row-major order, with the uniforms u).

    Parameters
    ----------
    x0 : ndarray, shape (B, d) or (R, B, d)
        Source minibatch (one per run when batched).
    x1 : ndarray, shape (B1, d) or (R, B1, d)
        Target minibatch.
    u : ndarray, shape (B',) or (R, B')
        Uniforms on [0, 1), one per pair to draw.

    Returns
    -------
    ndarray, int, shape (2, B') or (R, 2, B')
        Row indices into x0 (``[..., 0, :]``) and x1 (``[..., 1, :]``) of the drawn pairs.

    Notes
    -----
    Equal batch sizes (always the case in training) make the plan a permutation / B, found by
    the exact assignment solver of ``simulations.assignment`` (several times faster than the
    network simplex; same plan unless ties make the optimum non-unique); other sizes use POT.
    """
    single = np.ndim(x0) == 2
    x0, x1, u = (np.asarray(a) for a in (x0, x1, u))
    if single:
        x0, x1, u = x0[None], x1[None], u[None]
    r, b, d = x0.shape
    if x1.shape[1] != b:
        from simulations.otmetrics import emd_plan

        out = []
        for k in range(r):
            plan = emd_plan(x0[k], x1[k])
            rows, cols = np.nonzero(plan)
            out.append(_draw_cells(rows, cols, plan[rows, cols], u[k]))
        pairs = np.stack(out)
    else:
        if d <= 16:
            from simulations.assignment import match_points

            perm, _ = match_points(x0, x1)
        else:
            # high-dimensional points (flattened images): BLAS computes the costs faster
            import ot

            from simulations.assignment import solve_assignment

            cost = np.stack([ot.dist(x0[k], x1[k], metric="sqeuclidean") for k in range(r)])
            perm = solve_assignment(cost)[0]
        pairs = pairs_from_permutation(perm, u)
    return pairs[0] if single else pairs


def _draw_cells(rows, cols, p, u):
    """Cells (rows[k], cols[k]) drawn with probabilities p by inverse CDF at uniforms u."""
    pick = inverse_cdf_pick(p, u)
    return np.stack([rows[pick], cols[pick]])


class FlowModel(_EnsembleModel):
    """Conditional flow matching (OT-CFM, CFM or SB-CFM) for R runs; see the module docstring.

    The network v(x, t) takes inputs of shape (R, N, 3) (x, then t) and returns (R, N, 2). The
    loss of one step is the conditional flow-matching loss ||v(x_t, t) - u_t(x_t | x0, x1)||^2
    (Lipman et al. 2023, Eq. 9) with torchcfm's path and target (Tong et al. 2024, Eqs. 14-15),
    averaged per run.

    Parameters
    ----------
    runs : list of int
        Global run indices (length R).
    seed : int
        The simulation seed.
    train : TrainConfig
    matcher : str
        One of ``FLOW_MATCHERS``: "otcfm", "cfm" or "sbcfm".
    sigma : float
        The probability path's noise level (torchcfm's sigma).
    solver : str
        One of ``SOLVERS``: "euler" (``ode_steps`` fixed steps) or "dopri5" (adaptive).
    ode_steps : int
        Euler steps from t = 0 to t = 1.
    stream_key : tuple of int
        Names this model's stream family.
    """

    def __init__(
        self,
        runs,
        seed,
        train: TrainConfig,
        matcher: str = "otcfm",
        sigma: float = 0.1,
        solver: str = "euler",
        ode_steps: int = 100,
        stream_key: tuple = (4,),
    ):
        if solver not in SOLVERS:
            raise UsageError(f"unknown ODE solver {solver!r}; choose euler or dopri5")
        self.matcher_name = matcher
        self.fm = _torchcfm_matcher(matcher, sigma)
        self.solver = solver
        self.ode_steps = ode_steps
        super().__init__(runs, seed, train, stream_key)

    def _draw_chunk(self, steps, batch):
        s = self.train_streams
        r = len(self.runs)
        out = {
            "x0": s.standard_normal((r, steps, batch, 2)),
            "t": s.random((r, steps, batch)),
            "eps": s.standard_normal((r, steps, batch, 2)),
        }
        if self.matcher_name != "cfm":
            out["pair_u"] = s.random((r, steps, batch))
        return {k: v.swapaxes(0, 1) for k, v in out.items()}  # step-major: out[k] is step k

    def _couple(self, x0: np.ndarray, x1: np.ndarray, u: np.ndarray):
        """Per-run exact-OT pairing of (R, B, 2) minibatches (one batched solver call).

        x0, x1: shape (R, B, 2); u: shape (R, B). Returns the paired (x0, x1), each (R, B, 2).
        """
        pairs = exact_ot_pairs(x0, x1, u)
        i, j = pairs[:, 0], pairs[:, 1]
        return np.take_along_axis(x0, i[:, :, None], 1), np.take_along_axis(x1, j[:, :, None], 1)

    def _loss(self, x1, noise):
        x0 = noise["x0"]
        x1_np = x1.numpy()
        if self.matcher_name != "cfm":
            x0, x1_np = self._couple(x0, x1_np, noise["pair_u"])
        r, b, d = x1_np.shape
        x0 = torch.from_numpy(np.ascontiguousarray(x0, dtype=np.float32)).reshape(r * b, d)
        x1f = torch.from_numpy(np.ascontiguousarray(x1_np, dtype=np.float32)).reshape(r * b, d)
        t = torch.from_numpy(noise["t"].astype(np.float32)).reshape(r * b)
        eps = torch.from_numpy(noise["eps"].astype(np.float32)).reshape(r * b, d)
        # torchcfm's path and target: x_t = mu_t + sigma_t eps, u_t (its eqs, per matcher).
        xt = self.fm.sample_xt(x0, x1f, t, eps)
        ut = self.fm.compute_conditional_flow(x0, x1f, t, xt)
        vt = self.net(torch.cat([xt, t[:, None]], dim=1).reshape(r, b, d + 1))
        return ((vt - ut.reshape(r, b, d)) ** 2).mean(dim=(1, 2))

    @torch.no_grad()
    def sample(self, k: int, rng: RunStreams) -> PointSet:
        """k samples per run: integrate dx/dt = v(t, x) from x ~ N(0, I) at t = 0 to t = 1.

        Parameters
        ----------
        k : int or sequence of R ints
            Samples per run (one count for all, or one per run: run r's rows ``k[r]:`` are
            padding, and its stream is drawn as if it sampled ``k[r]`` alone).
        rng : RunStreams
            R streams for the initial points.

        Returns
        -------
        PointSet
            ``x`` of shape (R, max(k), 2), float64.
        """
        from torchdiffeq import odeint

        r = len(self.runs)
        counts = _counts(k, r)
        x0 = torch.from_numpy(_normal(rng, counts).astype(np.float32))
        if max(counts) == 0:
            return PointSet(np.zeros((r, 0, 2)))

        def velocity(t, x):
            tt = torch.full((r, x.shape[1], 1), float(t), dtype=x.dtype)
            return self.net(torch.cat([x, tt], dim=2))

        span = torch.tensor([0.0, 1.0])
        if self.solver == "euler":
            sol = odeint(
                velocity, x0, span, method="euler", options={"step_size": 1.0 / self.ode_steps}
            )
        else:
            sol = odeint(velocity, x0, span, method="dopri5", rtol=1e-5, atol=1e-5)
        return PointSet(sol[-1].double().numpy())


class DiffusionModel(_EnsembleModel):
    """DDPM in 2D for R runs (see the module docstring).

    The network eps(x_t, t / T) takes inputs of shape (R, N, 3) and returns (R, N, 2). The loss
    of one step is the simple loss ||eps - eps(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t)||^2
    (Ho et al. 2020, Eq. 14), averaged per run.

    Parameters
    ----------
    runs : list of int
        Global run indices (length R).
    seed : int
        The simulation seed.
    train : TrainConfig
    diffusion_steps : int
        T, the number of noise levels.
    beta_start, beta_end : float
        The linear beta schedule's ends for T = 1000 (rescaled by 1000 / T).
    stream_key : tuple of int
        Names this model's stream family.
    """

    def __init__(
        self,
        runs,
        seed,
        train: TrainConfig,
        diffusion_steps: int = 100,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        stream_key: tuple = (5,),
    ):
        scale = 1000.0 / diffusion_steps
        self.T = diffusion_steps
        self.betas = torch.linspace(
            beta_start * scale, beta_end * scale, diffusion_steps, dtype=torch.float64
        )
        if float(self.betas[-1]) >= 1:
            raise UsageError(f"diffusion_steps = {diffusion_steps} is too small for this schedule")
        self.alphas = 1 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        # the forward process' coefficients sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t) in float32,
        # looked up per step rather than recomputed for every sample
        ab = self.alpha_bar.float()
        self._signal, self._noise = ab.sqrt(), (1 - ab).sqrt()
        super().__init__(runs, seed, train, stream_key)

    def _draw_chunk(self, steps, batch):
        s = self.train_streams
        r = len(self.runs)
        t = s.integers(self.T, (r, steps, batch)).swapaxes(0, 1)
        eps = s.standard_normal((r, steps, batch, 2)).swapaxes(0, 1)
        # converted once per chunk, step-major and contiguous, so that a step slices tensors
        # instead of converting numpy arrays (the step is dispatch-bound at a few runs)
        return {
            "t": torch.from_numpy(np.ascontiguousarray(t)),
            "eps": torch.from_numpy(np.ascontiguousarray(eps, dtype=np.float32)),
        }

    def _loss(self, x0, noise):
        t, eps = noise["t"], noise["eps"]
        xt = self._signal[t][..., None] * x0 + self._noise[t][..., None] * eps
        tin = (t.float() / self.T)[..., None]
        pred = self.net(torch.cat([xt, tin], dim=2))
        return ((pred - eps) ** 2).mean(dim=(1, 2))

    @torch.no_grad()
    def sample(self, k: int, rng: RunStreams) -> PointSet:
        """Ancestral sampling x_T ~ N(0, I) -> x_0 with sigma_t^2 = beta_t (Ho et al. 2020).

        x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps(x_t, t)) / sqrt(alpha_t) + sqrt(beta_t) z
        (Ho et al. 2020, Algorithm 2), with z = 0 at the last step.

        Parameters
        ----------
        k : int or sequence of R ints
            Samples per run (one count for all, or one per run: run r's rows ``k[r]:`` are
            padding, and its stream is drawn as if it sampled ``k[r]`` alone).
        rng : RunStreams
            R streams for x_T and the noise z.

        Returns
        -------
        PointSet
            ``x`` of shape (R, max(k), 2), float64.
        """
        r = len(self.runs)
        counts = _counts(k, r)
        k = max(counts)
        if k == 0:
            return PointSet(np.zeros((r, 0, 2)))
        x = torch.from_numpy(_normal(rng, counts).astype(np.float32))
        for t in range(self.T - 1, -1, -1):
            tin = torch.full((r, k, 1), t / self.T)
            eps = self.net(torch.cat([x, tin], dim=2))
            beta, alpha, ab = float(self.betas[t]), float(self.alphas[t]), float(self.alpha_bar[t])
            x = (x - beta / math.sqrt(1 - ab) * eps) / math.sqrt(alpha)
            if t > 0:
                z = torch.from_numpy(_normal(rng, counts).astype(np.float32))
                x = x + math.sqrt(beta) * z
        return PointSet(x.double().numpy())
