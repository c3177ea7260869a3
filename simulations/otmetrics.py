"""Wasserstein distances between point clouds with POT, for the 2D experiments (Figure 7).

Exact W1 and W2 solve the discrete OT problem between the two empirical measures (uniform
weights; Euclidean cost for W1, squared Euclidean for W2). Between samples of equal size (every
metric of the 2D simulators) the problem is an assignment, solved exactly by
``simulations.assignment`` (4x faster than POT at n = 1000, batched over runs); other sizes use
POT's network simplex, ot.emd2 on ot.dist. Sliced W2 (ot.sliced_wasserstein_distance) scales to
large samples.
"""

from __future__ import annotations

import os
import sys

import numpy as np

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
        raise ValueError(f"p must be 1 or 2, got {p}")
    from simulations.assignment import match_points

    _, total = match_points(x, y, "euclidean" if p == 1 else "sqeuclidean")
    mean = total / np.shape(x)[1]
    return mean if p == 1 else np.sqrt(np.maximum(mean, 0.0))


def sliced_w2(x: np.ndarray, y: np.ndarray, projections: int = 200, seed: int = 0) -> float:
    """Sliced W2 with `projections` random directions (seeded: reproducible)."""
    return float(ot.sliced_wasserstein_distance(x, y, n_projections=projections, p=2, seed=seed))
