"""Minibatch couplings drawn from the exact optimal-transport plan (OT-CFM's pairing).

For two minibatches of equal size B with uniform weights, the exact OT plan for the squared
Euclidean cost is a permutation matrix divided by B (Birkhoff-von Neumann: the assignment
problem's optimum is a vertex of the transport polytope). torchcfm's
``OTPlanSampler(method="exact")`` draws B' cells of that plan with replacement, with
probability plan_ij; here the draw is by inverse CDF at given uniforms, so that the caller owns
the random stream. The assignment solver is pluggable: scipy's ``linear_sum_assignment`` by
default, a faster exact solver where an engine has one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from stability.errors import UsageError


def inverse_cdf_pick(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indices drawn with probabilities proportional to p, by inverse CDF at uniforms u.

    Parameters
    ----------
    p : numpy.ndarray, shape (K,)
        Non-negative weights (normalised here).
    u : numpy.ndarray, any shape
        Uniforms in [0, 1).

    Returns
    -------
    numpy.ndarray of int, the shape of u
        Index k with cdf[k-1] <= u < cdf[k].

    Examples
    --------
    >>> inverse_cdf_pick(np.array([1.0, 3.0]), np.array([0.1, 0.3, 0.9]))
    array([0, 1, 1])
    """
    cdf = np.cumsum(p / p.sum())
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def scipy_assignment(cost: np.ndarray) -> np.ndarray:
    """Optimal permutations of a batch of square cost matrices, by scipy's exact solver.

    Parameters
    ----------
    cost : numpy.ndarray, shape (R, B, B)

    Returns
    -------
    numpy.ndarray of int, shape (R, B)
        perm[r, i] is the column assigned to row i in problem r.
    """
    from scipy.optimize import linear_sum_assignment

    return np.stack([linear_sum_assignment(c)[1] for c in cost])


def pairs_from_permutation(perm: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Cells of the plan perm / B drawn with replacement at uniforms u.

    The plan's non-zero cells in row-major order are (i, perm[i]), each of mass 1/B, so the
    inverse-CDF draw picks row i = floor(u B) and its column perm[i].

    Parameters
    ----------
    perm : numpy.ndarray of int, shape (R, B)
    u : numpy.ndarray, shape (R, B')

    Returns
    -------
    numpy.ndarray of int, shape (R, 2, B')
        Row indices into x0 and column indices into x1.
    """
    b = perm.shape[1]
    pick = inverse_cdf_pick(np.full(b, 1.0 / b), u)
    return np.stack([pick, np.take_along_axis(perm, pick, axis=1)], axis=1)


def exact_ot_pairs(
    x0: np.ndarray,
    x1: np.ndarray,
    u: np.ndarray,
    assign: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Pairs drawn from the exact OT plan between two equal-size minibatches.

    plan = argmin_{P in U(1/B, 1/B)} <P, C>, C_ij = ||x0_i - x1_j||^2, as torchcfm's
    ``OTPlanSampler(method="exact")`` (Tong et al. 2024, eq. 18), then B' cells drawn from the
    plan with replacement.

    Parameters
    ----------
    x0, x1 : numpy.ndarray, shape (B, D) or (R, B, D)
        The minibatches (flattened images are (B, D) with D the pixel count).
    u : numpy.ndarray, shape (B',) or (R, B')
        Uniforms that decide the draw.
    assign : callable, optional
        Solver mapping costs (R, B, B) to permutations (R, B); scipy's by default.

    Returns
    -------
    numpy.ndarray of int, shape (2, B') or (R, 2, B')
    """
    single = np.ndim(x0) == 2
    x0, x1, u = (np.asarray(a) for a in (x0, x1, u))
    if single:
        x0, x1, u = x0[None], x1[None], u[None]
    if x0.shape[:2] != x1.shape[:2]:
        raise UsageError(f"minibatches must have equal sizes, got {x0.shape} and {x1.shape}")
    # ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, computed per problem in float64
    x0, x1 = x0.astype(np.float64), x1.astype(np.float64)
    cost = (
        np.einsum("rid,rid->ri", x0, x0)[:, :, None]
        + np.einsum("rjd,rjd->rj", x1, x1)[:, None, :]
        - 2.0 * np.einsum("rid,rjd->rij", x0, x1)
    )
    perm = (assign or scipy_assignment)(np.maximum(cost, 0.0))
    pairs = pairs_from_permutation(perm, u)
    return pairs[0] if single else pairs
