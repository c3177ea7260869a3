"""Families from a name, a formula or the researcher's code; numerical derivatives."""

import math
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stability.errors import UsageError
from stability.families import ExpressionFamily, Family, family_names, make_family
from stability.families.plugins import NumericDerivatives


class HandGaussian(Family):
    """N(m, s^2) with only a log density: derivatives come from the base class."""

    param_names = ("m", "s")
    complex_safe = True

    def logpdf(self, x, theta):
        m, s = theta[0], theta[1]
        z = (np.asarray(x, dtype=float).reshape(-1) - m) / s
        return -np.log(s) - 0.5 * z * z - 0.5 * math.log(2 * math.pi)

    def valid(self, theta):
        return bool(np.all(np.isfinite(theta)) and theta[1] > 0)

    def nodes(self, theta):
        z, w = np.polynomial.hermite_e.hermegauss(60)
        return (theta[0] + theta[1] * z)[:, None], w / w.sum()

    def sample(self, rng, n, theta):
        return theta[0] + theta[1] * rng.standard_normal((n, 1))

    def initial_guess(self, data):
        return np.array([float(data.mean[0]), math.sqrt(float(data.cov[0, 0]))])


def gaussian_closed_forms(x, m, s):
    z = (x - m) / s
    score = np.stack([z / s, (z * z - 1) / s], 1)
    hess = np.empty((x.size, 2, 2))
    hess[:, 0, 0] = -1 / s**2
    hess[:, 0, 1] = hess[:, 1, 0] = -2 * z / s**2
    hess[:, 1, 1] = (1 - 3 * z * z) / s**2
    return score, hess


@pytest.mark.parametrize("complex_safe", [True, False])
@given(m=st.floats(-3, 3), s=st.floats(0.2, 5))
def test_numeric_derivatives_are_accurate_and_their_error_estimates_cover_the_error(
    complex_safe, m, s
):
    fam = HandGaussian()
    fam.complex_safe = complex_safe
    x = np.linspace(-6, 6, 13)
    score, hess = gaussian_closed_forms(x, m, s)
    es, eh = fam.derivative_errors(x, np.array([m, s]))
    got_s, got_h = fam.score(x, [m, s]), fam.hessian(x, [m, s])
    assert np.allclose(got_s, score, rtol=1e-8, atol=1e-8)
    assert np.abs(got_h - hess).max() <= 1e-6 * (1 + np.abs(hess).max())
    # The estimates are conservative (>= the actual error, up to rounding) and small.
    assert np.all(np.abs(got_s - score) <= es + 1e-9 * (1 + np.abs(score)))
    assert np.all(np.abs(got_h - hess) <= eh + 1e-7 * (1 + np.abs(hess)))
    assert es.max() < 1e-5 * (1 + np.abs(score).max())


def test_complex_step_falls_back_when_the_density_is_not_analytic():
    class Kinked(HandGaussian):
        complex_safe = True  # wrongly declared: abs() drops the imaginary part

        def logpdf(self, x, theta):
            return (
                -np.abs(np.asarray(x, dtype=float).reshape(-1) - theta[0])
                - np.log(2.0)
                + 0 * theta[1]
            )

    fam = Kinked()
    x = np.array([-2.0, 1.5])
    assert np.allclose(fam.score(x, [0.3, 1.0])[:, 0], np.sign(x - 0.3), atol=1e-8)


def test_every_shipped_name_and_alias_builds_a_family():
    for name in family_names():
        fam = make_family(name)
        assert fam.n_params >= 1 and fam.describe()
    assert make_family("t:nu=7").nu == 7.0
    assert make_family("gmm:k=3").n_params == 8
    assert make_family("categorical:k=4").param_names == ("logit1", "logit2", "logit3")
    assert make_family("gaussian:d=3").n_params == 9


@pytest.mark.parametrize(
    "spec",
    [
        "nope",
        "student-t:df=3",
        "student-t:nu=-1",
        "student-t:nu=abc",
        "categorical:k=1",
        "gaussian-mixture:k=0",
        "student-t:nu=[1,2",
        "",
        "sympy:",
        "sympy:log(",
        "sympy:2*m + s",
        "sympy:-x**2/2; bogus=1",
        "sympy:-x**2/2 - log(s); positive=q",
        "missing_file.py:Fam",
    ],
)
def test_bad_family_specs_raise_usage_errors(spec):
    with pytest.raises(UsageError):
        make_family(spec)


def test_formula_family_derivatives_quadrature_and_sampling():
    fam = make_family("sympy:-log(s) - (x - m)**2/(2*s**2) - log(2*pi)/2; positive=s")
    assert isinstance(fam, ExpressionFamily) and fam.param_names == ("m", "s")
    x = np.linspace(-4, 4, 9)
    score, hess = gaussian_closed_forms(x, 0.4, 1.3)
    assert np.allclose(fam.score(x, [0.4, 1.3]), score, atol=1e-12)
    assert np.allclose(fam.hessian(x, [0.4, 1.3]), hess, atol=1e-12)
    nodes, w = fam.nodes([0.4, 1.3])
    assert w @ nodes[:, 0] == pytest.approx(0.4, abs=1e-10)
    assert w @ (nodes[:, 0] - 0.4) ** 2 == pytest.approx(1.3**2, rel=1e-9)
    assert fam.cdf(np.array([0.4 + 1.3]), [0.4, 1.3])[0] == pytest.approx(
        0.8413447460685429, abs=1e-9
    )
    draws = fam.sample(np.random.default_rng(2), 20000, [0.4, 1.3])[:, 0]
    assert abs(draws.mean() - 0.4) < 5 * 1.3 / math.sqrt(draws.size)
    assert not fam.valid([0.0, -1.0])


def test_formula_family_must_be_normalised():
    fam = make_family("sympy:-(x - m)**2/2; params=m")
    with pytest.raises(UsageError, match="integrates to"):
        fam.nodes([0.0])


def test_discrete_formula_family_is_the_poisson_pmf():
    fam = make_family("sympy:x*log(r) - r - loggamma(x + 1); positive=r; start=2; discrete=1")
    assert fam.discrete
    k, w = fam.nodes([3.5])
    assert w @ k[:, 0] == pytest.approx(3.5, rel=1e-12)
    assert np.allclose(fam.score(np.array([0.0, 5.0]), [3.5])[:, 0], [-1.0, 5 / 3.5 - 1])


def test_family_from_a_file_and_from_a_module(tmp_path):
    path = tmp_path / "myfam.py"
    path.write_text(
        textwrap.dedent(
            """
            import numpy as np
            from stability.families import Family

            class Shifted(Family):
                param_names = ("m",)
                def __init__(self, scale=1.0):
                    self.scale = scale
                    self.name = "shifted"
                def logpdf(self, x, theta):
                    z = (np.asarray(x, dtype=float).reshape(-1) - theta[0]) / self.scale
                    return -0.5 * z * z - np.log(self.scale * np.sqrt(2 * np.pi))
                def nodes(self, theta):
                    z, w = np.polynomial.hermite_e.hermegauss(40)
                    return (theta[0] + self.scale * z)[:, None], w / w.sum()
                def sample(self, rng, n, theta):
                    return theta[0] + self.scale * rng.standard_normal((n, 1))
                def initial_guess(self, data):
                    return np.array([0.0])

            class Duck:
                param_names = ("m",)
                name = "duck"
                def logpdf(self, x, theta):
                    return -0.5 * (np.asarray(x, dtype=float).reshape(-1) - theta[0]) ** 2
                def nodes(self, theta):
                    return np.array([[theta[0]]]), np.array([1.0])
                def sample(self, rng, n, theta):
                    return np.full((n, 1), theta[0])
                def initial_guess(self, data):
                    return np.array([0.0])

            class NotAFamily:
                pass
            """
        )
    )
    fam = make_family(f"{path}:Shifted:scale=2")
    assert fam.derivatives == "numeric" and fam.scale == 2.0
    assert np.allclose(fam.score(np.array([1.0, 3.0]), [1.0])[:, 0], [0.0, 0.5], atol=1e-9)
    duck = make_family(f"{path}:Duck")
    assert isinstance(duck, NumericDerivatives)
    assert np.allclose(duck.hessian(np.array([0.5]), [0.0]), -1.0, atol=1e-8)
    for bad in (f"{path}:NotAFamily", f"{path}:Missing", f"{path}:Shifted:bogus=1"):
        with pytest.raises(UsageError):
            make_family(bad)
    t = make_family("stability.families.student_t:StudentTFamily:nu=5")
    assert t.nu == 5.0
