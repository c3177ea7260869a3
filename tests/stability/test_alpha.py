"""alpha(n) of Proposition 1 / Lemma A.1 and alpha_d(n) of Lemma A.2: independent computations."""

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from stability import rates as A
from stability.linalg import sqrtm_psd
from stability.stats import mean_interval
from tests.strategies import sample_sizes


@pytest.fixture(scope="module")
def sympy_alpha():
    expr, n = A.alpha_sympy()
    return sp.lambdify(n, expr, "mpmath")


@given(sample_sizes)
def test_alpha_below_one_and_increasing(n):
    assert A.one_minus_alpha(n) > 0
    assert A.alpha(n) < 1
    assert A.one_minus_alpha(n + 1) < A.one_minus_alpha(n)


@given(st.integers(100, 10**6))
def test_alpha_tends_to_one_like_one_over_4n(n):
    # 1 - alpha = 1/(4m) - 1/(32m^2) - 5/(128m^3) + ..., m = n - 1, so
    # 4m(1 - alpha) - 1 = -1/(8m) - 5/(32m^2) + O(m^-3).
    m = n - 1
    ratio = A.one_minus_alpha(n) * 4 * m
    assert abs((ratio - 1) * 8 * m + 1) < 2.0 / m


@given(st.integers(2, 10**9))
def test_sympy_equals_the_numeric_alpha(sympy_alpha, n):
    with mpmath.workdps(40):
        symbolic = sympy_alpha(mpmath.mpf(n))
    assert abs(float((A.alpha(n) - symbolic) / symbolic)) < 1e-12


@given(st.integers(2, 10**12))
def test_numeric_alpha_matches_mpmath_to_machine_precision(n):
    exact = A.alpha_mpmath(n)
    assert abs(float((A.alpha(n) - exact) / exact)) < 1e-14
    gap = 1 - exact
    assert abs(float((A.one_minus_alpha(n) - gap) / gap)) < 1e-9


def test_vectorised_equals_looped():
    ns = np.array([2, 3, 19, 41, 42, 1000, 10**7])
    assert np.array_equal(A.alpha(ns), np.array([A.alpha(int(n)) for n in ns]))


def test_asymptotic_expansion_coefficients():
    # The classical expansion of Gamma(x+1/2)/(Gamma(x) sqrt(x)), x = (n-1)/2:
    # 1 - 1/(8x) + 1/(128x^2) + 5/(1024x^3) - 21/(32768x^4) + ..., written in 1/(n-1).
    exp4 = A.alpha_asymptotic(4)
    assert [sp.Rational(c) for c in exp4.coefficients] == [
        sp.Rational(-1, 4),
        sp.Rational(1, 32),
        sp.Rational(5, 128),
        sp.Rational(-21, 2048),
    ]


def test_asymptotic_error_has_the_next_order():
    exp3, exp4 = A.alpha_asymptotic(3), A.alpha_asymptotic(4)
    c4 = float(exp4.coefficients[3])
    for n in (200, 2000):
        with mpmath.workdps(50):
            m = mpmath.mpf(n - 1)
            trunc = 1 + sum(
                mpmath.mpf(str(c)) / m ** (j + 1) for j, c in enumerate(exp3.coefficients)
            )
            scaled = float((A.alpha_mpmath(n) - trunc) * m**4)
        assert abs(scaled - c4) < 2.0 / n


def test_alpha_rejects_bad_n():
    for bad in (1, 0, -3, 2.5, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            A.alpha(bad)


def test_alpha_d_reduces_to_alpha_in_1d():
    assert A.alpha_d_quadrature(7, 1) == A.alpha(7)


@pytest.mark.parametrize("n,d", [(3, 2), (5, 2), (40, 2), (4, 3), (10, 3)])
def test_wishart_eigenvalue_density_integrates_to_one(n, d):
    _, mass = A.alpha_d_quadrature(n, d, return_mass=True)
    assert abs(mass - 1) < 1e-8


@pytest.mark.parametrize("n,d", [(3, 2), (6, 2), (25, 2), (5, 3)])
def test_alpha_d_quadrature_matches_monte_carlo(n, d):
    rng = np.random.default_rng(1000 * n + d)
    z = rng.standard_normal((40000, n, d))
    zc = z - z.mean(axis=1, keepdims=True)
    roots = sqrtm_psd(np.einsum("rni,rnj->rij", zc, zc))
    ci = mean_interval(np.trace(roots, axis1=1, axis2=2) / (d * math.sqrt(n - 1)), level=0.999)
    assert ci.contains(A.alpha_d_quadrature(n, d))


@pytest.mark.parametrize("n", [3, 5, 10, 100, 1000])
def test_alpha_2_below_alpha_1_and_asymptotics(n):
    # Schur concavity: sum sqrt(eig) <= sum sqrt(diag), so alpha_2 < alpha_1; and
    # E[sqrt S] ~ (1 - (d+1)/(8m)) sqrt(m) I for large m = n - 1.
    a2 = A.alpha_d_quadrature(n, 2)
    assert a2 < A.alpha(n)
    if n >= 100:
        assert abs((1 - a2) * 8 * (n - 1) / 3 - 1) < 5.0 / n


def test_alpha_d_quadrature_rejects_unsupported():
    with pytest.raises(ValueError):
        A.alpha_d_quadrature(2, 2)  # n - 1 < d
    with pytest.raises(ValueError):
        A.alpha_d_quadrature(10, 4)


def test_alpha_d_quadrature_agrees_with_leading_asymptotics_to_second_order():
    # alpha_d(n) - (1 - (d+1)/(8m)) = c2/m^2 + O(m^-3): the scaled gap converges.
    for d in (2, 3):
        scaled = [
            (A.alpha_d_quadrature(n, d) - A.alpha_d_asymptotic(n, d)) * (n - 1) ** 2
            for n in (1001, 10001)
        ]
        assert scaled[0] < 0 and abs(scaled[0] / scaled[1] - 1) < 0.02


def test_alpha_d_quadrature_refuses_beyond_its_accuracy():
    with pytest.raises(ValueError, match="asymptotic"):
        A.alpha_d_quadrature(10**7, 2)


def test_bernoulli_numbers_equal_sympys():
    """The series coefficients' exact Bernoulli numbers against sympy's (B_1's sign is a
    convention the even-index series never uses)."""
    ours = A._bernoulli(20)
    assert all(sp.Rational(ours[j]) == sp.bernoulli(j) for j in range(21) if j != 1)
