"""Improved precision and recall (Kynkaanniemi et al. 2019, Eq. 1-3), without cancellation.

Each point of a set gets a ball: radius the distance to its k-th nearest neighbour in its own
set. f(phi, Phi) = 1 when phi lies in at least one ball of Phi (Eq. 1); precision is the mean
of f over the generated points against the real balls (Eq. 2), recall the mean over the real
points against the generated balls (Eq. 3).

How the distances are computed, and why they are exact decisions:

- Squared distances come from the expansion ||a||^2 + ||b||^2 - 2 a.b (one BLAS product per
  block of rows), on features centred on a mean: within a set on its own mean (the radii), across
  the sets on their common mean. Without centring, a common offset c of the features cancels
  catastrophically: the rounding error grows like eps ||c||^2 (at c = 1e8 all distances are
  noise and precision = recall = 1).
- The expansion's rounding error is bounded: |expanded - direct| <= g (||a||^2 + ||b||^2),
  g = 2 (4 D + 16) u (u = 2^-53; the dot products' D u, the centring and the direct sum's own
  rounding, with a factor 2 to spare). Every decision the bound cannot settle (a point within
  the band of a ball's boundary, a neighbour within the band of the k-th) is recomputed from
  the direct differences sum_d (x_d - y_d)^2 of the uncentred features. So the radii are the
  direct k-th neighbour distances and every inside/outside decision is the direct one, whatever
  the offset, the block size or the BLAS; centring only keeps the band, hence the direct work,
  small.

Kynkaanniemi, Karras, Laine, Lehtinen, Aila (2019), "Improved Precision and Recall Metric for
Assessing Generative Models", NeurIPS.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from deep.metrics.validate import check_features, check_positive_int, check_same_dim
from stability.errors import RunError

__all__ = ["PrecisionRecall", "default_k", "kth_neighbour_sq", "precision_recall"]

DEFAULT_BATCH = 1024
_UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2
_TILE = 128
# Direct differences are summed this many entries (pairs x D) at a time: small enough to stay
# in cache (measured three times faster than 2^22 at D = 2048), large enough to vectorise.
_DIRECT_CHUNK = 1 << 15


class PrecisionRecall(NamedTuple):
    """Improved precision and recall, each in [0, 1] (a tuple: ``p, r = ...`` works)."""

    precision: float
    recall: float


def default_k(include_self: bool) -> int:
    """The neighbourhood size of each convention: 3 other points, i.e. k = 3, or k = 4 with self.

    Parameters
    ----------
    include_self : bool
        True for the convention of the ``prdc`` package (Naeem et al. 2020) and of ``fls``,
        where a point is its own first neighbour, so k = 4 is its 3rd other neighbour.

    Returns
    -------
    int
        4 when `include_self`, else 3 (Kynkaanniemi et al. 2019 use the 3rd other neighbour).
    """
    return 4 if include_self else 3


def _band_factor(dim: int) -> float:
    return 2.0 * (4 * dim + 16) * _UNIT_ROUNDOFF


class _Centred:
    """Features (N, D), the same centred on `centre` (D,), and the error band of each row."""

    def __init__(self, raw: np.ndarray, centre: np.ndarray):
        self.raw = raw
        self.c = raw - centre
        self.sq = np.einsum("ij,ij->i", self.c, self.c)
        # Expanded distances reach 4 max ||c||^2: refuse features whose spread overflows that.
        if not np.isfinite(4.0 * self.sq).all():
            raise RunError("precision/recall: squared distances between features overflow")
        self.band = _band_factor(raw.shape[1]) * self.sq


def _expanded(
    a: _Centred, start: int, stop: int, b: _Centred, row_add=0.0, col_add=0.0
) -> np.ndarray:
    """||a_i - b_j||^2 + row_add_i + col_add_j (stop - start, len(b)), by expansion.

    Rows start:stop of a; `row_add` (stop - start,) or scalar, `col_add` (len(b),) or scalar.
    """
    out = np.empty((stop - start, len(b.raw)))
    rows = a.sq[start:stop] + row_add
    cols = b.sq + col_add
    bt = b.c.T
    # Tiles of rows small enough to stay in cache between the product and the additions.
    for s in range(0, stop - start, _TILE):
        e = min(s + _TILE, stop - start)
        tile = out[s:e]
        np.matmul(a.c[start + s : start + e], bt, out=tile)
        tile *= -2.0
        tile += rows[s:e, None]
        tile += cols[None, :]
    return out


def _direct(x: np.ndarray, rows: np.ndarray, y: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """sum_d (x[rows, d] - y[cols, d])^2 (len(rows),), pair by pair (no cancellation)."""
    out = np.empty(len(rows))
    step = max(1, _DIRECT_CHUNK // x.shape[1])
    for s in range(0, len(rows), step):
        diff = x[rows[s : s + step]] - y[cols[s : s + step]]
        diff *= diff
        # A row-wise reduction of a C-contiguous array: the same summation order for a pair
        # whatever its position, so the result does not depend on the block layout.
        out[s : s + step] = diff.sum(axis=1)
    return out


def _kth_per_row(rows: np.ndarray, values: np.ndarray, k: int, n_rows: int) -> np.ndarray:
    """The k-th smallest of `values` within each row (every row in 0..n_rows-1 k times or more)."""
    counts = np.bincount(rows, minlength=n_rows)
    if counts.min() < k:  # only NaN distances (overflow) can leave fewer than k candidates
        raise RunError("precision/recall: non-finite distances between features")
    order = np.lexsort((values, rows))
    first = np.cumsum(counts) - counts
    return values[order][first + k - 1]


def _radii(x: _Centred, k: int, include_self: bool, block: int) -> np.ndarray:
    """Direct squared distance (N,) of each point of x to its k-th nearest neighbour in x."""
    n = len(x.raw)
    r2 = np.empty(n)
    # The point itself: exactly 0 when it counts, out of reach when not (a duplicate of it,
    # at distance 0, is still a neighbour).
    self_value = 0.0 if include_self else np.inf
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = np.arange(stop - start)
        # Upper end of each band, less the row's own band (a constant along the row).
        high = _expanded(x, start, stop, x, col_add=x.band)
        high[rows, start + rows] = self_value
        # The k smallest upper ends: the largest of them bounds the k-th direct distance.
        nearest = np.argpartition(high, k - 1, axis=1)[:, :k]
        upper = high[rows[:, None], nearest].max(axis=1) + 2 * x.band[start:stop]
        # Any other point whose band reaches below that bound is a candidate too (rare: a tie
        # within the band); the lower ends, less the row's band, are high - 2 band.
        high -= 2 * x.band[None, :]
        high[rows[:, None], nearest] = np.inf
        extra = np.flatnonzero(high.min(axis=1) <= upper)
        extra_rows, extra_cols = np.nonzero(high[extra] <= upper[extra, None])
        del high
        cand_rows = np.concatenate([np.repeat(rows, k), extra[extra_rows]])
        cand_cols = np.concatenate([nearest.ravel(), extra_cols])
        exact = _direct(x.raw, start + cand_rows, x.raw, cand_cols)
        r2[start:stop] = _kth_per_row(cand_rows, exact, k, stop - start)
    return r2


def _inside_fraction(
    points: _Centred, centres: _Centred, c_r2: np.ndarray, strict: bool, block: int
) -> float:
    """Fraction of `points` inside at least one ball (centres, squared radii c_r2 (M,))."""
    surely_in = c_r2 - centres.band  # expanded + bands below this: inside
    maybe_in = c_r2 + centres.band  # expanded - bands above this: outside
    count = 0
    for start in range(0, len(points.raw), block):
        stop = min(start + block, len(points.raw))
        d2 = _expanded(points, start, stop, centres, row_add=points.band[start:stop])
        hit = (d2 < surely_in[None, :]).any(axis=1)
        open_rows = np.flatnonzero(~hit)
        count += (stop - start) - len(open_rows)
        if len(open_rows) == 0:
            continue
        low = d2[open_rows]
        del d2
        low -= 2 * points.band[start + open_rows, None]
        ambiguous = low <= maybe_in[None, :]
        # Ambiguous entries are rare: find the rows that have any before locating them.
        some = np.flatnonzero(ambiguous.any(axis=1))
        if len(some):
            amb_rows, amb_cols = np.nonzero(ambiguous[some])
            amb_rows = some[amb_rows]
            exact = _direct(points.raw, start + open_rows[amb_rows], centres.raw, amb_cols)
            r2 = c_r2[amb_cols]
            inside = exact < r2 if strict else exact <= r2
            count += len(np.unique(amb_rows[inside]))
    return count / len(points.raw)


def _checked_k(k, include_self: bool) -> int:
    return default_k(include_self) if k is None else check_positive_int(k, "k")


def kth_neighbour_sq(
    features: np.ndarray,
    k: int | None = None,
    include_self: bool = False,
    batch: int = DEFAULT_BATCH,
) -> np.ndarray:
    """Squared radius of each point's ball: its squared distance to its k-th nearest neighbour.

    The radius of Kynkaanniemi et al. (2019), Eq. 1: ||phi' - NN_k(phi')||, squared. Computed as
    the direct sum of squared coordinate differences (see the module's notes), so it does not
    depend on an offset of the features nor on `batch`.

    Parameters
    ----------
    features : np.ndarray, shape (N, D)
        N > k points (N >= k with `include_self`).
    k : int, optional
        Neighbourhood size; None: ``default_k(include_self)``.
    include_self : bool
        Whether the point counts as its own first neighbour (distance 0).
    batch : int
        Rows per block: memory is O(batch x N).

    Returns
    -------
    np.ndarray, shape (N,)
        The squared radii.
    """
    k = _checked_k(k, include_self)
    batch = check_positive_int(batch, "batch")
    x = check_features(features, "features", minimum=k if include_self else k + 1)
    return _radii(_Centred(x, x.mean(axis=0)), k, include_self, batch)


def precision_recall(
    real: np.ndarray,
    generated: np.ndarray,
    k: int | None = None,
    include_self: bool = False,
    batch: int = DEFAULT_BATCH,
) -> PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al. 2019, Eq. 1-3) of two feature sets.

    The radius of a real point is the distance to its k-th nearest neighbour among the real
    points, that of a generated point likewise among the generated points. precision = the
    fraction of generated points inside at least one real ball (Eq. 2), recall = the fraction
    of real points inside at least one generated ball (Eq. 3).

    Two conventions for the k-th neighbour and the ball:

    - ``include_self=False`` (default, the paper and its official code): the k-th nearest
      *other* point, and a point is inside when its distance is <= the radius; k = 3.
    - ``include_self=True`` (the ``prdc`` package, Naeem et al. 2020, and ``fls``): the k-th
      nearest point counting the point itself as the first (distance 0), and inside means
      strictly < the radius; k = 4, the 3rd other neighbour (prdc's ``nearest_k = k - 1``).

    Every distance that decides something is the direct sum of squared differences, whatever
    offset the features share (see the module's notes); blocks of `batch` rows are compared
    with the whole other set, so memory is O(batch x max(N, M)) and the results do not depend
    on `batch`.

    Parameters
    ----------
    real : np.ndarray, shape (N, D)
    generated : np.ndarray, shape (M, D)
        Each set needs more than k points (at least k with `include_self`).
    k : int, optional
        Neighbourhood size; None: the convention's, ``default_k(include_self)`` (3 or 4).
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
        On non-finite features, or features so large that their squares overflow.
    """
    k = _checked_k(k, include_self)
    batch = check_positive_int(batch, "batch")
    need = k if include_self else k + 1
    real = check_features(real, "real features", minimum=need)
    generated = check_features(generated, "generated features", minimum=need)
    check_same_dim(real, generated)
    real_r2 = _radii(_Centred(real, real.mean(axis=0)), k, include_self, batch)
    gen_r2 = _radii(_Centred(generated, generated.mean(axis=0)), k, include_self, batch)
    return _cross_fractions(real, generated, real_r2, gen_r2, include_self, batch)


def _cross_fractions(
    real: np.ndarray,
    generated: np.ndarray,
    real_r2: np.ndarray,
    gen_r2: np.ndarray,
    strict: bool,
    batch: int,
) -> PrecisionRecall:
    """Eqs 2-3 from the squared radii (N,) and (M,): each set against the other's balls.

    Both sets are centred on their common mean, so that the expansion's band stays small.
    """
    centre = (real.sum(axis=0) + generated.sum(axis=0)) / (len(real) + len(generated))
    real_c, gen_c = _Centred(real, centre), _Centred(generated, centre)
    precision = _inside_fraction(gen_c, real_c, real_r2, strict, batch)
    recall = _inside_fraction(real_c, gen_c, gen_r2, strict, batch)
    return PrecisionRecall(precision, recall)
