"""The strategies generate what their names claim (not identities, conditions up to 1e4)."""

import numpy as np
from hypothesis import find, given
from hypothesis import strategies as st

from tests.strategies import gaussian_params, spd_matrices


@given(spd_matrices())
def test_spd_matrices_are_spd(m):
    assert np.allclose(m, m.T)
    eig = np.linalg.eigvalsh(m)
    assert eig[0] > 0
    assert eig[-1] / eig[0] <= 1e4 * (1 + 1e-6)


def test_spd_matrices_reach_strong_anisotropy():
    m = find(
        spd_matrices(dims=st.just(3)),
        lambda a: np.linalg.cond(a) > 5e3 and np.abs(a - np.diag(np.diag(a))).max() > 1e-3,
    )
    assert np.linalg.cond(m) > 5e3


@given(gaussian_params())
def test_gaussian_params_shapes(params):
    mu, cov = params
    assert mu.shape == (cov.shape[0],)
    assert np.all(np.isfinite(mu))
