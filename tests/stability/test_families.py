"""Every shipped family: derivatives against finite differences and sympy, quadratures, samples.

The finite differences and the sympy log densities here are written independently of the
families' code (a test's own 5-point stencil; each density typed from its textbook formula).
"""

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from stability.families import (
    CategoricalFamily,
    ExponentialFamily,
    GaussianFamily,
    GaussianMixtureFamily,
    LaplaceFamily,
    MeansMixtureFamily,
    PoissonFamily,
    StudentTFamily,
    VonMisesFamily,
)

STUDENT = StudentTFamily(4.0)  # sympy compiles once per process


def stencil(f, theta, j, h):
    """Fourth-order central difference of f in theta_j (the test's own, independent)."""
    e = np.zeros(len(theta))
    e[j] = h
    return (-f(theta + 2 * e) + 8 * f(theta + e) - 8 * f(theta - e) + f(theta - 2 * e)) / (12 * h)


def fd_score(fam, x, theta, h=1e-4):
    return np.stack(
        [stencil(lambda t: fam.logpdf(x, t), theta, j, h) for j in range(len(theta))], 1
    )


def fd_hessian(fam, x, theta, h=1e-4):
    return np.stack([stencil(lambda t: fam.score(x, t), theta, j, h) for j in range(len(theta))], 2)


# (family, a hypothesis strategy for theta, points x)
CONTINUOUS_X = np.linspace(-3.7, 4.1, 23)
CASES = {
    "gaussian-1d": (
        GaussianFamily(1),
        st.tuples(st.floats(-2, 2), st.floats(0.2, 4)),
        CONTINUOUS_X,
    ),
    "student-t": (STUDENT, st.tuples(st.floats(-2, 2), st.floats(0.3, 3)), CONTINUOUS_X),
    "laplace": (LaplaceFamily(0.3), st.tuples(st.floats(0.2, 4)), CONTINUOUS_X),
    "exponential": (ExponentialFamily(), st.tuples(st.floats(0.2, 5)), np.linspace(0.01, 6, 17)),
    "poisson": (PoissonFamily(), st.tuples(st.floats(0.3, 12)), np.arange(0.0, 20.0)),
    "bernoulli": (CategoricalFamily(2), st.tuples(st.floats(-3, 3)), np.array([0.0, 1.0, 1.0])),
    "categorical": (
        CategoricalFamily(3),
        st.tuples(st.floats(-3, 3), st.floats(-3, 3)),
        np.array([0.0, 1.0, 2.0, 2.0]),
    ),
    "von-mises": (VonMisesFamily(), st.tuples(st.floats(-3, 3), st.floats(0.1, 20)), CONTINUOUS_X),
    "gaussian-mixture": (
        GaussianMixtureFamily(2),
        st.tuples(
            st.floats(-2, 2),
            st.floats(-2, 0),
            st.floats(0, 2),
            st.floats(-1, 0.7),
            st.floats(-1, 0.7),
        ),
        CONTINUOUS_X,
    ),
    "means-mixture": (
        MeansMixtureFamily(0.7),
        st.tuples(st.floats(-2, 2), st.floats(-2, 2)),
        CONTINUOUS_X,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_derivatives_match_finite_differences_at_random_parameters(name):
    fam, strategy, x = CASES[name]

    @given(strategy)
    def check(theta):
        theta = np.array(theta, dtype=float)
        # 4th-order stencil: truncation ~h^4 f^(5), rounding ~1e-16/h; relative tolerance 1e-6.
        s = fam.score(x, theta)
        assert np.allclose(s, fd_score(fam, x, theta), rtol=1e-6, atol=1e-6 * (1 + np.abs(s).max()))
        h = fam.hessian(x, theta)
        assert np.allclose(
            h, fd_hessian(fam, x, theta), rtol=1e-6, atol=1e-6 * (1 + np.abs(h).max())
        )
        assert np.allclose(h, np.swapaxes(h, 1, 2))

    check()


def test_gaussian_2d_derivatives_match_finite_differences():
    fam = GaussianFamily(2)
    theta = np.array([0.3, -0.2, 1.3, 0.4, 0.9])
    x = np.random.default_rng(0).standard_normal((15, 2)) * 2
    assert np.allclose(fam.score(x, theta), fd_score(fam, x, theta), atol=1e-8)
    assert np.allclose(fam.hessian(x, theta), fd_hessian(fam, x, theta), atol=1e-8)


# ---- sympy, from each density's textbook formula -----------------------------------------------

X = sp.Symbol("x", real=True)


def _pi(eta):
    return [1 / (1 + sp.exp(eta)), sp.exp(eta) / (1 + sp.exp(eta))]


def _normal(x, m, s):
    return sp.exp(-((x - m) ** 2) / (2 * s**2)) / (s * sp.sqrt(2 * sp.pi))


SYMPY = {
    "gaussian-1d": lambda m, p: sp.log(p) / 2 - p * (X - m) ** 2 / 2 - sp.log(2 * sp.pi) / 2,
    "student-t": lambda m, s: sp.log(
        sp.gamma(sp.Rational(5, 2))
        / (sp.gamma(2) * sp.sqrt(4 * sp.pi) * s)
        * (1 + (X - m) ** 2 / (4 * s**2)) ** sp.Rational(-5, 2)
    ),
    "laplace": lambda b: -sp.log(2 * b) - sp.Abs(X - sp.Rational(3, 10)) / b,
    "exponential": lambda r: sp.log(r) - r * X,
    "poisson": lambda r: X * sp.log(r) - r - sp.loggamma(X + 1),
    "bernoulli": lambda t: X * t - sp.log(1 + sp.exp(t)),
    "von-mises": lambda mu, k: k * sp.cos(X - mu) - sp.log(2 * sp.pi * sp.besseli(0, k)),
    "gaussian-mixture": lambda eta, m1, m2, r1, r2: sp.log(
        _pi(eta)[0] * _normal(X, m1, sp.exp(r1)) + _pi(eta)[1] * _normal(X, m2, sp.exp(r2))
    ),
    "means-mixture": lambda m1, m2: sp.log(
        (_normal(X, m1, sp.Rational(7, 10)) + _normal(X, m2, sp.Rational(7, 10))) / 2
    ),
}


@pytest.mark.parametrize("name", list(SYMPY))
def test_derivatives_match_sympy_at_random_parameters(name):
    fam, strategy, x = CASES[name]
    params = sp.symbols(f"t0:{fam.n_params}", real=True)
    logp = SYMPY[name](*params)
    grad = [sp.diff(logp, p) for p in params]
    hess = [[sp.diff(g, q) for q in params] for g in grad]
    f_grad = sp.lambdify([X, *params], grad, modules=["scipy", "numpy"])
    f_hess = sp.lambdify([X, *params], hess, modules=["scipy", "numpy"])
    f_logp = sp.lambdify([X, *params], logp, modules=["scipy", "numpy"])

    @given(strategy)
    def check(theta):
        theta = np.array(theta, dtype=float)
        for xi, lp, s, h in zip(
            x, fam.logpdf(x, theta), fam.score(x, theta), fam.hessian(x, theta)
        ):
            assert np.isclose(lp, f_logp(xi, *theta), rtol=1e-10, atol=1e-10)
            assert np.allclose(s, np.array(f_grad(xi, *theta), dtype=float), rtol=1e-8, atol=1e-9)
            assert np.allclose(h, np.array(f_hess(xi, *theta), dtype=float), rtol=1e-8, atol=1e-9)

    check()


def test_categorical_matches_sympy_per_class():
    fam = CategoricalFamily(3)
    t1, t2 = sp.symbols("t1 t2", real=True)
    norm = sp.log(1 + sp.exp(t1) + sp.exp(t2))
    theta = np.array([0.4, -1.1])
    for label, logp in enumerate((-norm, t1 - norm, t2 - norm)):
        grad = [sp.diff(logp, p) for p in (t1, t2)]
        hess = sp.Matrix([[sp.diff(g, p) for p in (t1, t2)] for g in grad])
        values = {t1: theta[0], t2: theta[1]}
        x = np.array([float(label)])
        assert np.allclose(fam.score(x, theta)[0], [float(g.subs(values)) for g in grad])
        assert np.allclose(fam.hessian(x, theta)[0], np.array(hess.subs(values), dtype=float))


# ---- quadratures: the Bartlett identities E[score] = 0, E[Hessian] = -E[score score^T] -----------


@pytest.mark.parametrize(
    "fam,theta",
    [
        (GaussianFamily(1), [0.4, 0.7]),
        (GaussianFamily(2), [0.3, -0.2, 1.3, 0.4, 0.9]),
        (STUDENT, [0.2, 1.3]),
        (LaplaceFamily(-0.5), [0.8]),
        (ExponentialFamily(), [1.7]),
        (PoissonFamily(), [4.2]),
        (CategoricalFamily(2), [0.6]),
        (CategoricalFamily(4), [0.3, -0.8, 1.1]),
        (VonMisesFamily(), [2.5, 3.0]),
        (GaussianMixtureFamily(3), [0.2, -0.4, -1.5, 0.2, 1.8, -0.5, -0.2, 0.1]),
        (MeansMixtureFamily(0.7), [-0.6, 1.2]),
    ],
)
def test_quadrature_satisfies_the_information_identities(fam, theta):
    theta = np.asarray(theta, dtype=float)
    x, w = fam.nodes(theta)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    s = fam.score(x, theta)
    assert np.abs(w @ s).max() < 1e-9
    fisher = np.einsum("n,ni,nj->ij", w, s, s)
    assert np.allclose(np.einsum("n,nij->ij", w, fam.hessian(x, theta)), -fisher, atol=1e-9)
    # The rule integrates the density itself: its mean equals the sample mean of p_theta.
    draws = fam.sample(np.random.default_rng(3), 40000, theta)
    if fam.circular:  # angles: compare the mean of (cos x, sin x), not of x
        x, draws = np.cos(x) + 2j * np.sin(x), np.cos(draws) + 2j * np.sin(draws)
        x, draws = np.concatenate([x.real, x.imag], 1), np.concatenate([draws.real, draws.imag], 1)
    se = draws.std(axis=0) / math.sqrt(len(draws))
    assert np.all(np.abs(w @ x - draws.mean(axis=0)) < 5 * se + 1e-12)


@pytest.mark.parametrize(
    "fam,theta",
    [
        (STUDENT, [0.2, 1.3]),
        (LaplaceFamily(-0.5), [0.8]),
        (ExponentialFamily(), [1.7]),
        (GaussianMixtureFamily(2), [0.4, -1.0, 1.5, -0.3, 0.2]),
        (MeansMixtureFamily(0.7), [-0.6, 1.2]),
        (VonMisesFamily(), [0.5, 3.0]),
    ],
)
def test_cdf_is_the_integral_of_the_density(fam, theta):
    theta = np.asarray(theta, dtype=float)
    lo = (
        0.0
        if isinstance(fam, ExponentialFamily)
        else (theta[0] - math.pi if isinstance(fam, VonMisesFamily) else -np.inf)
    )
    for t in (-0.7, 0.3, 1.9):
        if t < lo:
            continue
        val, _ = integrate.quad(
            lambda z: math.exp(fam.logpdf(np.array([z]), theta)[0]), lo, t, epsabs=1e-12, limit=200
        )
        assert fam.cdf(np.array([t]), theta)[0] == pytest.approx(val, abs=1e-8)


def test_discrete_cdfs_are_cumulative_masses():
    pois = PoissonFamily()
    assert np.allclose(pois.cdf(np.array([3.0, 3.5]), [2.0]), stats.poisson.cdf(3, 2.0))
    cat = CategoricalFamily(3)
    p = cat.probs([0.4, -1.0])
    assert np.allclose(
        cat.cdf(np.array([-0.5, 0.0, 1.2, 2.0]), [0.4, -1.0]), [0.0, p[0], p[0] + p[1], 1.0]
    )


# ---- Lipschitz constants (Assumption 1) ------------------------------------------------------------


def test_closed_form_lipschitz_constants_against_brute_force():
    lap = LaplaceFamily(0.2)
    grid = np.linspace(-30, 30, 200001)
    for b in (0.5, 1.7):
        slopes = np.abs(np.diff(lap.hessian(grid, [b])[:, 0, 0]) / np.diff(grid))
        assert lap.lipschitz([b]) == pytest.approx(slopes.max(), rel=1e-6)
    vm = VonMisesFamily()
    for kappa in (0.3, 2.0, 7.0):
        u = np.linspace(-math.pi, math.pi, 100001)
        h = vm.hessian(u, [0.0, kappa])
        dh = np.diff(h, axis=0) / np.diff(u)[:, None, None]
        brute = np.linalg.norm(dh, ord=2, axis=(1, 2)).max()
        assert vm.lipschitz([0.0, kappa]) == pytest.approx(brute, rel=1e-6)
    ks = np.arange(0.0, 50.0)
    for r in (0.7, 3.0):
        diffs = np.abs(np.diff(PoissonFamily().hessian(ks, [r])[:, 0, 0]))
        assert PoissonFamily().lipschitz([r]) == pytest.approx(diffs.max(), rel=1e-12)
    assert ExponentialFamily().lipschitz([2.0]) == 0.0
    assert CategoricalFamily(3).lipschitz([0.1, 0.2]) == 0.0


def test_numerical_lipschitz_of_the_mixture_matches_its_closed_form_hessian_dx():
    # GaussianMixtureFamily's d/dx Hessian is numerical (Richardson); compare with differences
    # of its Hessian on a fine grid.
    fam = GaussianMixtureFamily(2)
    theta = np.array([0.3, -1.0, 1.4, -0.4, 0.1])
    grid = np.linspace(-8, 8, 160001)
    dh = np.diff(fam.hessian(grid, theta), axis=0) / np.diff(grid)[:, None, None]
    brute = np.linalg.norm(dh, ord=2, axis=(1, 2)).max()
    assert fam.lipschitz(theta) == pytest.approx(brute, rel=1e-4)
