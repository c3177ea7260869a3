"""Wasserstein distances between point clouds with POT, for the 2D experiments (Figure 7).

Exact W1 and W2 solve the discrete OT problem between the two empirical measures (uniform
weights; Euclidean cost for W1, squared Euclidean for W2). Between samples of equal size (every
metric of the 2D simulators) the problem is an assignment, solved exactly by
``simulations.assignment`` (11x faster than POT at n = 1000 on one core, batched over runs);
other sizes use POT's network simplex, ot.emd2 on ot.dist. Sliced W2 scales to large samples:
between equal sizes it sorts the projections directly (POT's directions, POT's numbers),
otherwise ot.sliced_wasserstein_distance.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from stability.errors import UsageError

if "torch" not in sys.modules:
    # POT imports torch for its backend when torch is installed; callers that do not use torch
    # (the Gaussian simulator, the benchmarks) should not pay seconds of import for it.
    os.environ.setdefault("POT_BACKEND_DISABLE_PYTORCH", "1")

import ot  # noqa: E402


def emd_plan(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Exact OT plan between uniform measures on x0 (B, d) and x1 (B', d), squared Euclidean cost."""
    m = ot.dist(x0, x1, metric="sqeuclidean")
    return ot.emd(ot.unif(len(x0)), ot.unif(len(x1)), m, numItermax=1_000_000)


def wasserstein(x: np.ndarray, y: np.ndarray, p: int) -> float:
    """Exact W_p (p = 1 or 2) between the empirical measures of x (n, d) and y (m, d)."""
    metric = "euclidean" if p == 1 else "sqeuclidean"
    if len(x) == len(y):
        return float(wasserstein_batch(x[None], y[None], p)[0])
    cost = ot.dist(x, y, metric=metric)
    val = ot.emd2(ot.unif(len(x)), ot.unif(len(y)), cost, numItermax=10_000_000)
    return float(val) if p == 1 else float(np.sqrt(max(val, 0.0)))


def wasserstein_batch(x: np.ndarray, y: np.ndarray, p: int) -> np.ndarray:
    """Exact W_p (p = 1 or 2) per run between equal-size samples x, y of shape (R, n, d).

    W_p^p = (1/n) min over permutations s of sum_i |x_i - y_s(i)|^p (the plan of two uniform
    measures of equal size is a permutation / n). Returns shape (R,).
    """
    if p not in (1, 2):
        raise UsageError(f"p must be 1 or 2, got {p}")
    from simulations.assignment import match_points

    _, total = match_points(x, y, "euclidean" if p == 1 else "sqeuclidean")
    mean = total / np.shape(x)[1]
    return mean if p == 1 else np.sqrt(np.maximum(mean, 0.0))


def sliced_w2(x: np.ndarray, y: np.ndarray, projections: int = 200, seed: int = 0) -> float:
    """Sliced W2 with `projections` random directions (seeded: reproducible)."""
    if len(x) == len(y):
        return float(sliced_w2_batch(x[None], y[None], projections, [seed])[0])
    return float(ot.sliced_wasserstein_distance(x, y, n_projections=projections, p=2, seed=seed))


def sliced_w2_batch(x: np.ndarray, y: np.ndarray, projections: int, seeds) -> np.ndarray:
    """Sliced W2 per run between equal-size samples x, y of shape (R, n, d), one seed per run.

    SW_2^2 = (1/P) sum_k W_2^2(<x, theta_k>, <y, theta_k>) over P directions theta_k uniform on
    the sphere, and in 1D between equal-size uniform samples W_2^2 = (1/n) sum_i (x_(i) - y_(i))^2
    (sorted values). The directions are POT's for the same seed (ot.sliced.get_random_projections),
    so the numbers are ot.sliced_wasserstein_distance's (tested); all runs and directions are
    sorted directly instead of through P quantile functions per run (11x faster than POT for
    50 runs of 1000 points). Returns shape (R,).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 3 or x.shape != y.shape or len(seeds) != x.shape[0]:
        raise UsageError(
            f"sliced_w2_batch needs x, y of the same shape (R, n, d) and R seeds; "
            f"got {x.shape}, {y.shape} and {len(seeds)} seeds"
        )
    out = np.empty(x.shape[0])
    for r, seed in enumerate(seeds):
        # one run at a time: its (P, n) projections fit in cache, which sorts 2x faster than
        # one (R, P, n) array
        theta = ot.sliced.get_random_projections(x.shape[2], projections, seed=seed)  # (d, P)
        px = theta.T @ x[r].T
        py = theta.T @ y[r].T
        px.sort(axis=-1)
        py.sort(axis=-1)
        px -= py
        out[r] = np.sqrt(np.einsum("pn,pn->", px, px) / px.size)
    return out
