"""Improved precision and recall (Kynkaanniemi et al. 2019, Eq. 1-3).

Each point of a set gets a ball: radius the distance to its k-th nearest neighbour in its own
set. f(phi, Phi) = 1 when phi lies in at least one ball of Phi (Eq. 1); precision is the mean
of f over the generated points against the real balls (Eq. 2), recall the mean over the real
points against the generated balls (Eq. 3).

Kynkaanniemi, Karras, Laine, Lehtinen, Aila (2019), "Improved Precision and Recall Metric for
Assessing Generative Models", NeurIPS.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from deep.metrics.validate import check_features, check_positive_int, check_same_dim

__all__ = ["PrecisionRecall", "kth_neighbour_sq", "precision_recall"]

# Distances are computed on tiles of this many rows that start at multiples of it, so every
# entry comes out of an identically shaped BLAS call whatever ``batch`` is: BLAS may sum a dot
# product in a different order for a different matrix shape, which could flip a tie.
_TILE = 128


class PrecisionRecall(NamedTuple):
    """Improved precision and recall, each in [0, 1] (a tuple: ``p, r = ...`` works)."""

    precision: float
    recall: float


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _sq_dists(x, x_sq, y, y_sq, start: int, stop: int) -> np.ndarray:
    """Squared distances (stop - start, len(y)) of rows start:stop of x to all of y."""
    out = np.empty((stop - start, len(y)))
    for s in range(start, stop, _TILE):
        e = min(s + _TILE, stop)
        tile = out[s - start : e - start]
        np.matmul(np.ascontiguousarray(x[s:e]), y.T, out=tile)
        tile *= -2.0
        tile += x_sq[s:e, None]
        tile += y_sq[None, :]
    # Cancellation can leave tiny negative values for (near-)duplicates.
    np.maximum(out, 0.0, out=out)
    return out


def _radii(x, x_sq, k: int, include_self: bool, block: int) -> np.ndarray:
    """Squared distance (N,) of each point of x to its k-th nearest neighbour in x."""
    n = len(x)
    r2 = np.empty(n)
    for start in range(0, n, block):
        stop = min(start + block, n)
        d2 = _sq_dists(x, x_sq, x, x_sq, start, stop)
        rows = np.arange(stop - start)
        # Set the self-distance exactly (the formula leaves round-off, and a duplicate of the
        # point must still count as a neighbour): 0 when the point counts, +inf when it is out.
        d2[rows, start + rows] = 0.0 if include_self else np.inf
        d2.partition(k - 1, axis=1)
        r2[start:stop] = d2[:, k - 1]
    return r2


def _inside_fraction(points, p_sq, centres, c_sq, c_r2, strict: bool, block: int) -> float:
    """Fraction of `points` inside at least one ball (centres, squared radii c_r2)."""
    count = 0
    for start in range(0, len(points), block):
        stop = min(start + block, len(points))
        d2 = _sq_dists(points, p_sq, centres, c_sq, start, stop)
        inside = d2 < c_r2[None, :] if strict else d2 <= c_r2[None, :]
        count += int(np.count_nonzero(inside.any(axis=1)))
    return count / len(points)


def kth_neighbour_sq(
    features: np.ndarray, k: int = 3, include_self: bool = False, batch: int = 10000
) -> np.ndarray:
    """Squared radius of each point's ball: its squared distance to its k-th nearest neighbour.

    The radius of Kynkaanniemi et al. (2019), Eq. 1: ||phi' - NN_k(phi')||, squared, from
    ||a||^2 + ||b||^2 - 2 a.b in blocks of `batch` rows (rounded up to a multiple of 128).

    Parameters
    ----------
    features : np.ndarray, shape (N, D)
        N > k points (N >= k with `include_self`).
    k : int
        Neighbourhood size.
    include_self : bool
        Whether the point counts as its own first neighbour (distance 0).
    batch : int
        Rows per block: memory is O(batch x N).

    Returns
    -------
    np.ndarray, shape (N,)
        The squared radii.
    """
    k = check_positive_int(k, "k")
    block = -(-check_positive_int(batch, "batch") // _TILE) * _TILE
    x = check_features(features, "features", minimum=k if include_self else k + 1)
    return _radii(x, _sq_norms(x), k, include_self, block)


def precision_recall(
    real: np.ndarray,
    generated: np.ndarray,
    k: int = 3,
    include_self: bool = False,
    batch: int = 10000,
) -> PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al. 2019, Eq. 1-3) of two feature sets.

    The radius of a real point is the distance to its k-th nearest neighbour among the real
    points, that of a generated point likewise among the generated points. precision = the
    fraction of generated points inside at least one real ball (Eq. 2), recall = the fraction
    of real points inside at least one generated ball (Eq. 3).

    Two conventions for the k-th neighbour and the ball:

    - ``include_self=False`` (default, the paper and its official code): the k-th nearest
      *other* point, and a point is inside when its distance is <= the radius; k = 3.
    - ``include_self=True`` (the ``prdc`` package, Naeem et al. 2020): the k-th nearest point
      counting the point itself as the first (distance 0), so k = 4 is the 3rd other neighbour
      (prdc's ``nearest_k = k - 1``), and inside means strictly < the radius.

    Squared distances are ||a||^2 + ||b||^2 - 2 a.b in float64, computed in blocks of ``batch``
    rows (rounded up to a multiple of 128) against the whole other set: memory is
    O(batch x max(N, M)), and the results do not depend on ``batch``.

    Parameters
    ----------
    real : np.ndarray, shape (N, D)
    generated : np.ndarray, shape (M, D)
        Each set needs more than k points (at least k with `include_self`).
    k : int
        Neighbourhood size.
    include_self : bool
        The convention (see above).
    batch : int
        Rows per block.

    Returns
    -------
    PrecisionRecall
        (precision, recall), floats in [0, 1].

    Raises
    ------
    UsageError
        On a bad k or batch, bad shapes, too few points or different dimensions D.
    RunError
        On non-finite features.
    """
    k = check_positive_int(k, "k")
    block = -(-check_positive_int(batch, "batch") // _TILE) * _TILE
    need = k if include_self else k + 1
    real = check_features(real, "real features", minimum=need)
    generated = check_features(generated, "generated features", minimum=need)
    check_same_dim(real, generated)
    real_sq, gen_sq = _sq_norms(real), _sq_norms(generated)
    real_r2 = _radii(real, real_sq, k, include_self, block)
    gen_r2 = _radii(generated, gen_sq, k, include_self, block)
    strict = bool(include_self)
    precision = _inside_fraction(generated, gen_sq, real, real_sq, real_r2, strict, block)
    recall = _inside_fraction(real, real_sq, generated, gen_sq, gen_r2, strict, block)
    return PrecisionRecall(precision, recall)
