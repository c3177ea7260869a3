"""Hypothesis strategies, all in one place; each generates what its name claims.

spd_matrices() draws genuinely anisotropic symmetric positive definite matrices: a spectrum with
condition number up to `max_cond` (both extreme eigenvalues attained) in a random orthonormal
basis, so off-diagonal entries are non-zero; never the identity unless the drawn condition is 1.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

_DIMS = st.integers(1, 5)


@st.composite
def spd_matrices(draw, dims=_DIMS, max_cond: float = 1e4, scale=(1e-2, 1e2)):
    """SPD matrix of shape (d, d) with condition number in [1, max_cond]."""
    d = draw(dims)
    log_cond = draw(st.floats(0.0, math.log(max_cond)))
    log_scale = draw(st.floats(math.log(scale[0]), math.log(scale[1])))
    inner = draw(st.lists(st.floats(0.0, 1.0), min_size=max(0, d - 2), max_size=max(0, d - 2)))
    fractions = [0.0, *inner, 1.0][:d] if d > 1 else [0.5]
    eig = np.exp(log_scale + log_cond * (np.asarray(fractions) - 0.5))
    seed = draw(st.integers(0, 2**32 - 1))
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    q = q * np.sign(np.diag(r))
    m = (q * eig) @ q.T
    return 0.5 * (m + m.T)


def vectors(d: int, bound: float = 5.0):
    """Finite float vectors of shape (d,) with entries in [-bound, bound]."""
    return st.lists(st.floats(-bound, bound, allow_nan=False), min_size=d, max_size=d).map(
        np.asarray
    )


_PARAM_DIMS = st.integers(1, 4)


@st.composite
def gaussian_params(draw, dims=_PARAM_DIMS, max_cond: float = 1e3):
    """(mu, Sigma): a mean of shape (d,) and an anisotropic SPD covariance of shape (d, d)."""
    cov = draw(spd_matrices(dims=dims, max_cond=max_cond, scale=(0.1, 10.0)))
    mu = draw(vectors(cov.shape[0]))
    return mu, cov


sample_sizes = st.integers(2, 10**9)
"""Numbers of samples n >= 2, up to 1e9."""

small_sample_sizes = st.integers(2, 2000)

finite_lambdas = st.floats(0.0, 50.0, allow_nan=False)
"""Mixing proportions lambda >= 0 (finite)."""

lambdas = st.one_of(finite_lambdas, st.just(math.inf))
"""Mixing proportions including inf (fully synthetic)."""
