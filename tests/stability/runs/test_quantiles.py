"""Quantiles by one selection per rank (stability.runs.quantiles) against numpy.quantile: the
same numbers to the last bit on ties, infinities, NaN, tiny and large samples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stability.runs.quantiles import linear_quantiles
from stability.runs.runfolder import QUANTILES


def _same(values: np.ndarray, qs) -> None:
    """linear_quantiles of a copy equals numpy's quantiles of another copy, bit for bit."""
    rows = values.copy()
    # inf - inf inside the interpolation warns, in numpy's function as in this one
    with np.errstate(invalid="ignore", over="ignore"):
        ref = np.quantile(values.copy(), qs, axis=1, method="linear")
        got = linear_quantiles(rows, qs)
    assert got.shape == ref.shape
    # repr: equal to the last bit, NaN included
    assert repr(got.tolist()) == repr(ref.tolist())
    # the values are only reordered within each row
    assert np.array_equal(np.sort(rows, axis=1), np.sort(values, axis=1), equal_nan=True)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 20, 21, 101, 1000, 20_001])
@pytest.mark.parametrize("kind", ["lognormal", "ties", "infinities", "nan"])
def test_quantiles_are_numpys_to_the_last_bit(n, kind):
    rng = np.random.default_rng(n)
    values = rng.lognormal(size=(7, n)) * 1e3
    if kind == "ties":
        # Few distinct values: the neighbouring order statistics are often equal.
        values = rng.integers(-3, 4, size=(7, n)).astype(np.float64) * 0.1
        values[values == 0] = 0.5
    if kind in ("infinities", "nan"):
        values[rng.random(values.shape) < 0.1] = np.inf
        values[rng.random(values.shape) < 0.1] = -np.inf
        values[0] = np.inf  # a row of +inf only: inf - inf inside the interpolation
    if kind == "nan":
        values[2, n // 2] = np.nan
        values[5, 0] = np.nan
    _same(values, QUANTILES)


def test_the_levels_zero_one_and_the_midpoint_are_numpys():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(4, 999))
    _same(values, (0.0, 0.25, 0.5, 0.75, 1.0, 0.999, 0.001))
    _same(values[:, :2], (0.0, 0.5, 1.0))


def test_a_row_with_a_nan_gives_nan_for_every_level_but_opposite_infinities_do_not():
    # +inf and -inf in one row also sum to NaN: that row is checked and keeps its median.
    values = np.array(
        [[1.0, 2.0, 3.0, np.nan, 5.0], [np.inf, -np.inf, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0, 5.0]]
    )
    with np.errstate(invalid="ignore"):
        got = linear_quantiles(values.copy(), QUANTILES)
    assert np.isnan(got[:, 0]).all()
    assert got[1, 1] == 2.0 and got[1, 2] == 3.0 and got[:, 2].tolist() == [1.2, 3.0, 4.8]
    _same(values, QUANTILES)


@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 60)),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=64)
        | st.sampled_from([0.5, 1.0, 1.0, -2.0]),
    ),
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
)
def test_any_array_and_levels_give_numpys_quantiles(values, qs):
    # Signed zeros compare equal, so which of -0.0 and 0.0 a selection returns is the
    # algorithm's choice: they are drawn as 0.5 here (see the module docstring).
    _same(np.where(values == 0, 0.5, values), qs)
