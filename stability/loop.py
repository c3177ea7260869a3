"""Algorithm 1 (iterative retraining) and its data policies, written once for every model.

A model plugs in through three methods (the protocol `Retrainable`):

    fit(data)            fit, or fine-tune from the current parameters, on a data set
    sample(k, rng)       k samples of the current model, in the same container as the data
    state()              the current parameters (a dict of arrays), for metrics and checkpoints

A data container (the protocol `DataSet`) knows its size, how to join another set and how to
draw a uniform subsample. Containers may hold points (`PointSet`) or only what a model needs of
them (the Gaussian simulator's sufficient statistics); models and containers may be batched over
independent runs, the loop does not care.

Policies (each builds the training set of iteration t >= 1; t = 0 is always the fit on the real
data only, and the real data set is drawn once per run):

- `mix` (Bertrand et al. 2024, Algorithm 1 / eq 2): all n real points plus floor(lam n) fresh
  samples of the current model; lam = inf means fully synthetic: n model samples only
  (the "replace" setting of Shumailov et al. 2023 and Alemohammad et al. 2023).
- `accumulate` (Gerstgrasser et al. 2024, "Is model collapse inevitable?"): the real data plus
  every synthetic batch generated so far, floor(lam n) new samples per iteration.
- `accumulate-subsample` (Kazdan et al. 2024, "Collapse or thrive?"): the accumulated pool as
  above, then a uniform subsample of fixed size (n by default).
- `fresh` (Alemohammad et al. 2023, "fresh data loop"): n_fresh new real points each iteration
  plus floor(lam n) samples of the current model.

Any object with `name`, `lam`, `label`, `sizes` and `train_set` (the protocol `DataPolicy`) is a
policy: `Policy` implements the four above, `stability.policies` the field's curation,
verification and self-correction, and a researcher's own policy plugs in the same way
(`stability.plugins`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from stability.errors import UsageError, check_lam, check_n

POLICIES = ("mix", "accumulate", "accumulate-subsample", "fresh")


@runtime_checkable
class DataSet(Protocol):
    """A data set (possibly batched over runs): size, union, uniform subsample."""

    @property
    def size(self) -> int:
        """Number of points per run."""
        ...

    def union(self, other: DataSet) -> DataSet:
        """The two sets joined run by run (sizes add)."""
        ...

    def subsample(self, m: int, rng: np.random.Generator) -> DataSet:
        """m points drawn uniformly without replacement, independently per run."""
        ...


@runtime_checkable
class Retrainable(Protocol):
    """A generative model that Algorithm 1 can retrain."""

    def fit(self, data: Any) -> None:
        """Fit (or fine-tune) the model on a data set; the maximiser of eq (2)."""
        ...

    def sample(self, k: int, rng: np.random.Generator) -> Any:
        """k samples per run from the current model, as a data set of the same kind."""
        ...

    def state(self) -> dict:
        """The parameters theta_t (numbers or arrays), recorded at every iteration."""
        ...


@runtime_checkable
class DataPolicy(Protocol):
    """How Algorithm 1 builds the training set of each iteration t >= 1 (t = 0 is D_real)."""

    name: str
    lam: float

    @property
    def label(self) -> str:
        """The policy as printed in tables and legends, e.g. ``mix(lam=0.5)``."""
        ...

    def sizes(self, n: int, iterations: int) -> list[int]:
        """Training-set size per run at t = 0..iterations, for n real points."""
        ...

    def train_set(
        self,
        t: int,
        real: Any,
        model: Retrainable,
        rng: np.random.Generator,
        state: LoopState,
        fresh_source: Callable[[int, np.random.Generator], Any] | None = None,
    ) -> Any:
        """The training set of iteration t >= 1 (may update `state.pool`)."""
        ...


@dataclass
class PointSet:
    """Points of R independent runs, shape (R, N, d) (R = 1 for a single run)."""

    x: np.ndarray

    @property
    def size(self) -> int:
        """N, the number of points per run."""
        return int(self.x.shape[1])

    def union(self, other: PointSet) -> PointSet:
        """Both point sets per run, shape (R, N + N', d)."""
        return PointSet(np.concatenate([self.x, other.x], axis=1))

    def subsample(self, m: int, rng: np.random.Generator) -> PointSet:
        """Uniform subsample of m points without replacement, independently per run."""
        r, n, _ = self.x.shape
        if m > n:
            raise UsageError(f"cannot subsample {m} points from {n}")
        # argsort of uniforms gives an independent uniform permutation per run.
        idx = np.argsort(rng.random((r, n)), axis=1)[:, :m]
        return PointSet(np.take_along_axis(self.x, idx[:, :, None], axis=1))


def synthetic_count(lam: float, n: int) -> int:
    """floor(lam n), the number of synthetic samples of Algorithm 1 (n when lam = inf)."""
    return n if math.isinf(lam) else int(math.floor(lam * n + 1e-9))


@dataclass
class Policy:
    """How the training set of iteration t >= 1 is built (see the module docstring).

    Parameters
    ----------
    name : one of POLICIES
    lam : float >= 0, or inf for fully synthetic (`mix` only)
    n_fresh : fresh real points per iteration (`fresh`; default n)
    subsample_size : size of the training set (`accumulate-subsample`; default n)
    """

    name: str
    lam: float
    n_fresh: int | None = None
    subsample_size: int | None = None

    def __post_init__(self):
        if self.name not in POLICIES:
            raise UsageError(f"unknown policy {self.name!r}; choose one of {', '.join(POLICIES)}")
        self.lam = check_lam(self.lam)
        if math.isinf(self.lam) and self.name != "mix":
            raise UsageError(
                f"lambda = inf (fully synthetic) only makes sense for policy 'mix', not {self.name!r}"
            )
        if self.n_fresh is not None:
            check_n(self.n_fresh, "n_fresh", minimum=1)
        if self.subsample_size is not None:
            check_n(self.subsample_size, "subsample_size", minimum=2)

    @property
    def label(self) -> str:
        """The policy as printed in tables and legends, e.g. ``mix(lam=0.5)``."""
        return f"{self.name}(lam={self.lam:g})"

    def sizes(self, n: int, iterations: int) -> list[int]:
        """Training-set size at t = 0..iterations (what `train_set` will build)."""
        k = synthetic_count(self.lam, n)
        out = [n]
        for t in range(1, iterations + 1):
            if self.name == "mix":
                out.append(k if math.isinf(self.lam) else n + k)
            elif self.name == "accumulate":
                out.append(n + t * k)
            elif self.name == "accumulate-subsample":
                out.append(min(self.subsample_size or n, n + t * k))
            else:
                out.append((self.n_fresh or n) + k)
        return out

    def train_set(
        self,
        t: int,
        real: Any,
        model: Retrainable,
        rng: np.random.Generator,
        state: LoopState,
        fresh_source: Callable[[int, np.random.Generator], Any] | None = None,
    ):
        """The training set of iteration t >= 1 (updates state.pool); see `DataPolicy`."""
        n = real.size
        k = synthetic_count(self.lam, n)
        if self.name == "mix":
            if math.isinf(self.lam):
                return model.sample(n, rng)
            return real if k == 0 else real.union(model.sample(k, rng))
        if self.name in ("accumulate", "accumulate-subsample"):
            if state.pool is None:
                state.pool = real
            if k > 0:
                state.pool = state.pool.union(model.sample(k, rng))
            if self.name == "accumulate":
                return state.pool
            m = self.subsample_size or n
            return state.pool if state.pool.size <= m else state.pool.subsample(m, rng)
        # fresh
        if fresh_source is None:
            raise UsageError("policy 'fresh' needs a source of fresh real data")
        fresh = fresh_source(self.n_fresh or n, rng)
        return fresh if k == 0 else fresh.union(model.sample(k, rng))


@dataclass
class LoopState:
    """What Algorithm 1 carries between iterations besides the model (for checkpoints)."""

    t: int = 0
    pool: Any = None  # accumulated data (accumulate policies)


def train_set(
    policy: DataPolicy,
    t: int,
    real: Any,
    model: Retrainable,
    rng: np.random.Generator,
    state: LoopState,
    fresh_source: Callable[[int, np.random.Generator], Any] | None = None,
):
    """The training set of iteration t >= 1 under `policy` (updates state.pool)."""
    return policy.train_set(t, real, model, rng, state, fresh_source)


def retrain(
    model: Retrainable,
    real: Any,
    policy: DataPolicy,
    iterations: int,
    rng: np.random.Generator,
    on_iteration: Callable[[int, Retrainable, Any], None] | None = None,
    fresh_source: Callable[[int, np.random.Generator], Any] | None = None,
    state: LoopState | None = None,
) -> LoopState:
    """Algorithm 1: fit on the real data (t = 0), then refit T times on the policy's data.

    Parameters
    ----------
    model : a Retrainable (fit / sample / state)
    real : the real data set D_real, drawn once (any DataSet container)
    policy : the data policy (`Policy`, or any `DataPolicy`)
    iterations : T, the number of retraining iterations
    rng : randomness of the synthetic samples (and of fresh data / subsampling)
    on_iteration : called as on_iteration(t, model, train_data) after each fit, t = 0..T
        (metrics, checkpoints)
    fresh_source : fresh_source(m, rng) -> m new real points (policy 'fresh')
    state : a LoopState to resume from: iterations 0..state.t are done and the model is
        restored at iteration state.t (None: start with the fit on the real data)
    """
    check_n(iterations, "iterations", minimum=0)
    if state is None:
        state = LoopState()
        model.fit(real)
        if on_iteration is not None:
            on_iteration(0, model, real)
    for t in range(state.t + 1, iterations + 1):
        data = policy.train_set(t, real, model, rng, state, fresh_source)
        model.fit(data)
        state.t = t
        if on_iteration is not None:
            on_iteration(t, model, data)
    return state
