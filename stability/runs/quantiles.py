"""Quantiles over runs, numpy's numbers to the last bit, by one selection per quantile.

``np.quantile(values, qs, method="linear")`` partitions every row once at all the ranks it
needs (floor and ceiling of each virtual index, plus the first and last). numpy's partition
with several ranks is its generic introselect; with a single rank it uses a vectorised
selection (x86-simd-sort on AVX2/AVX-512 machines), about ten times faster at 1e5 runs. So
each quantile here selects its lower order statistic alone (the middle rank first, then each
side's ranks within that side: `_select`), takes the next one as the minimum of the part
above it, and interpolates with numpy's own formula (`numpy.quantile`'s ``_lerp``):
the same order statistics and the same floating-point operations, hence the same numbers
(signed zeros aside: -0.0 and 0.0 compare equal, so where both sit at a selected rank either
may come out, from numpy's selection as from this one).
"""

from __future__ import annotations

import numpy as np


def linear_quantiles(rows: np.ndarray, qs) -> np.ndarray:
    """``np.quantile(rows, qs, axis=1, method="linear")``, partitioning `rows` in place.

    Parameters
    ----------
    rows : numpy.ndarray, shape (M, R), float64
        M samples of R values each, every row contiguous; reordered within each row.
    qs : sequence of float, length K
        Quantile levels in [0, 1].

    Returns
    -------
    numpy.ndarray, shape (K, M)
        The quantiles of each row: the linear interpolation (Hyndman and Fan's method 7)
        between the order statistics floor(q (R - 1)) and floor(q (R - 1)) + 1. A row holding a
        NaN gives NaN, as numpy does.
    """
    n = rows.shape[1]
    if n < 2 or rows.dtype != np.float64:
        return np.quantile(rows, qs, axis=1, method="linear", overwrite_input=True)
    # numpy's virtual indexes and interpolation weights for method "linear", in its arithmetic.
    virtual = (n - 1) * np.asarray(qs, dtype=np.float64)
    previous = np.floor(virtual)
    gamma = virtual - previous
    ranks = sorted({int(k) for k in previous if k < n - 1})
    _select(rows, 0, n, ranks)
    out = np.empty((len(virtual), rows.shape[0]))
    for j, (k, t) in enumerate(zip(previous.astype(np.intp), gamma)):
        if k >= n - 1:
            # q = 1: numpy takes the largest value for both neighbours.
            a = b = rows.max(axis=1)
        else:
            a = rows[:, k]
            # The next order statistic: the smallest value after k, found before the next
            # selected rank (included), after which every value is at least as large.
            stop = next((r + 1 for r in ranks if r > k), n)
            b = rows[:, k + 1 : stop].min(axis=1)
        diff = b - a
        out[j] = a + diff * t
        if t >= 0.5:
            # numpy interpolates down from the upper neighbour past the midpoint
            out[j] = b - diff * (1 - t)
    # NaN: numpy sorts it last and returns it for every quantile of its row. Only a row whose
    # values sum to NaN can hold one, so the others skip the check.
    suspects = np.flatnonzero(np.isnan(rows.sum(axis=1)))
    for i in suspects:
        if np.isnan(rows[i]).any():
            out[:, i] = np.nan
    return out


def _select(rows: np.ndarray, lo: int, hi: int, ranks: list[int]) -> None:
    """Put the order statistics `ranks` (sorted, in [lo, hi)) of every row at their places.

    On entry each row's columns lo..hi-1 hold its order statistics lo..hi-1 in some order;
    the middle rank is selected there (one single-rank partition of that range), which leaves
    the same property on each side of it for the ranks below and above: each value is visited
    about log2(len(ranks) + 1) times instead of len(ranks) times.
    """
    if not ranks:
        return
    mid = len(ranks) // 2
    k = ranks[mid]
    rows[:, lo:hi].partition(k - lo, axis=1)
    _select(rows, lo, k, ranks[:mid])
    _select(rows, k + 1, hi, ranks[mid + 1 :])
