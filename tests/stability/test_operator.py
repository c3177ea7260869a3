"""The retraining operator for any family: quadratures, derivatives, maximisation, Jacobians."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from stability import gaussian as G
from stability.families import (
    SKEWED_DATA,
    GaussianFamily,
    GaussianMixture1D,
    MeansMixtureFamily,
    StudentTFamily,
    w1_1d,
)
from stability.families.symbolic import stack_lambdified
from stability.operator import Operator, default_operators, maximise


@pytest.fixture(scope="module")
def ops():
    return {op.name: op for op in default_operators()}


def test_student_t_quadrature_reproduces_moments():
    fam = StudentTFamily(nu=5.0)
    x, w = fam.nodes(np.array([0.7, 1.3]))
    x = x[:, 0]
    assert w.sum() == pytest.approx(1.0, abs=1e-10)
    assert w @ x == pytest.approx(0.7, abs=1e-10)
    assert w @ (x - 0.7) ** 2 == pytest.approx(1.3**2 * 5 / 3, rel=1e-6)


def test_mixture_data_quadrature_reproduces_moments():
    x, w = SKEWED_DATA.nodes()
    assert w @ x[:, 0] == pytest.approx(SKEWED_DATA.mean[0], abs=1e-12)
    var = w @ (x[:, 0] - SKEWED_DATA.mean[0]) ** 2
    assert var == pytest.approx(SKEWED_DATA.cov[0, 0], rel=1e-12)
    assert SKEWED_DATA.sample(np.random.default_rng(0), 200000).mean() == pytest.approx(
        SKEWED_DATA.mean[0], abs=0.01
    )


@pytest.mark.parametrize(
    "family,theta",
    [
        (StudentTFamily(4.0), np.array([0.3, 0.8])),
        (MeansMixtureFamily(0.7), np.array([-0.6, 1.4])),
    ],
)
def test_family_derivatives_match_finite_differences(family, theta):
    x = np.linspace(-4, 5, 37)
    h = 1e-5
    eye = np.eye(2)
    fd_score = np.stack(
        [
            (family.logpdf(x, theta + h * e) - family.logpdf(x, theta - h * e)) / (2 * h)
            for e in eye
        ],
        1,
    )
    assert np.allclose(family.score(x, theta), fd_score, atol=1e-7)
    fd_hess = np.stack(
        [(family.score(x, theta + h * e) - family.score(x, theta - h * e)) / (2 * h) for e in eye],
        2,
    )
    assert np.allclose(family.hessian(x, theta), fd_hess, atol=1e-6)
    fd_dx = (family.hessian(x + h, theta) - family.hessian(x - h, theta)) / (2 * h)
    assert np.allclose(family.hessian_dx(x, theta), fd_dx, atol=1e-5)


def test_mixture_closed_form_derivatives_match_sympy():
    fam = MeansMixtureFamily(0.7)
    theta = np.array([-0.3, 1.2])
    x = np.linspace(-4, 5, 50)
    compiled = fam.symbolic_functions
    assert np.allclose(
        np.broadcast_to(compiled[0](x, *theta), x.shape), fam.logpdf(x, theta), atol=1e-12
    )
    for i, fn, shape in [
        (1, fam.score, (2,)),
        (2, fam.hessian, (2, 2)),
        (3, fam.hessian_dx, (2, 2)),
    ]:
        assert np.allclose(
            stack_lambdified(compiled[i](x, *theta), x.size, shape), fn(x, theta), atol=1e-11
        )


def test_mixture_stable_far_in_the_tails():
    fam = MeansMixtureFamily(0.5)
    x = np.array([-200.0, 300.0])
    for arr in (fam.logpdf(x, [0.0, 1.0]), fam.score(x, [0.0, 1.0]), fam.hessian(x, [0.0, 1.0])):
        assert np.all(np.isfinite(arr))


def test_w1_1d_closed_forms():
    # W1 between N(0, s1^2) and N(0, s2^2) is |s1 - s2| sqrt(2/pi); between shifts it is the shift.
    got = w1_1d(lambda t: stats.norm.cdf(t, 0, 1), lambda t: stats.norm.cdf(t, 0, 3), -60, 60)
    assert got == pytest.approx(2 * math.sqrt(2 / math.pi), rel=1e-9)
    got = w1_1d(lambda t: stats.norm.cdf(t, 0, 1), lambda t: stats.norm.cdf(t, 1.5, 1), -60, 60)
    assert got == pytest.approx(1.5, rel=1e-9)


def test_w1_against_scipy_samples(ops):
    op = ops["student-t"]
    rng = np.random.default_rng(11)
    a = op.family.sample(rng, 400000, op.theta_star())[:, 0]
    b = op.data.sample(rng, 400000)[:, 0]
    assert stats.wasserstein_distance(a, b) == pytest.approx(op.eps(), abs=0.01)


@given(lam=st.floats(0.0, 20.0), shift=st.floats(-0.3, 0.3), seed=st.integers(0, 1000))
def test_numerical_operator_equals_closed_form_for_gaussians(ops, lam, shift, seed):
    op = ops["gaussian-2d"]
    rng = np.random.default_rng(seed)
    theta = op.theta_star() + shift * rng.standard_normal(op.theta_star().size) / 3
    if not op.family.valid(theta):
        return
    mu, cov = G.from_theta(theta, 2)
    closed = G.to_theta(*G.g_inf(mu, cov, lam, op.data.mean, op.data.cov))
    assert np.allclose(op.g_inf(theta, lam), closed, atol=1e-8)


@given(lam=st.floats(0.01, 20.0))
def test_theta_star_is_a_fixed_point(ops, lam):
    for op in ops.values():
        assert np.linalg.norm(op.g_inf(op.theta_star(), lam) - op.theta_star()) < 1e-8


def test_jacobians_three_ways_agree(ops):
    for op in ops.values():
        for lam in (0.2, 3.0):
            fd = op.jacobian_fd(lam)
            assert np.allclose(op.jacobian_implicit(lam), fd, atol=1e-6)
            assert np.allclose(op.jacobian_formula(lam, "hessian"), fd, atol=1e-6)
            assert not np.allclose(op.jacobian_formula(lam, "mixed"), fd, atol=1e-2)


def test_gaussian_jacobian_is_lam_over_one_plus_lam(ops):
    for name in ("gaussian-2d", "gaussian-1d"):
        op = ops[name]
        for lam in (0.3, 5.0):
            assert np.allclose(
                op.jacobian_fd(lam), lam / (1 + lam) * np.eye(op.theta_star().size), atol=1e-7
            )


def test_maximise_climbs_from_far_away():
    fam = StudentTFamily(4.0)
    x, w = SKEWED_DATA.nodes()
    a = maximise(fam, np.array([3.0, 5.0]), x, w)
    b = maximise(fam, np.array([-2.0, 0.2]), x, w)
    assert np.allclose(a, b, atol=1e-8)


def test_g_n_converges_to_g_inf(ops):
    op = ops["student-t"]
    rng = np.random.default_rng(5)
    theta = op.theta_star() + np.array([0.05, -0.05])
    target = op.g_inf(theta, 1.0)
    errs = []
    for n in (200, 20000):
        devs = [
            np.linalg.norm(op.g_n(theta, 1.0, op.data.sample(rng, n), rng) - target)
            for _ in range(10)
        ]
        errs.append(np.mean(devs))
    # n grows 100x: the error shrinks about 10x (n^-1/2); allow a factor 2 either way.
    assert 5 < errs[0] / errs[1] < 20


def test_operator_rejects_bad_lambda(ops):
    with pytest.raises(ValueError):
        ops["student-t"].g_inf(ops["student-t"].theta_star(), -1.0)
    with pytest.raises(ValueError):
        ops["student-t"].g_inf(ops["student-t"].theta_star(), math.inf)


def test_custom_operator_from_user_parts():
    data = GaussianMixture1D(weights=(0.5, 0.5), means=(-1.0, 1.0), sds=(0.5, 0.5))
    op = Operator(GaussianFamily(1), data, "user")
    # Gaussian fit of a symmetric mixture: mean 0, variance 0.25 + 1, theta = (0, 1/1.25).
    assert np.allclose(op.theta_star(), [0.0, 1 / 1.25], atol=1e-10)
    assert op.eps() > 0


# ---- any family and data ------------------------------------------------------------------------


def _op(family, data):
    from stability.datasources import make_data
    from stability.families import make_family

    return Operator(make_family(family), make_data(data), f"{family} on {data}")


@pytest.mark.parametrize(
    "family,data,message",
    [
        ("exponential", "norm", "x < 0"),
        ("poisson", "norm:loc=3", "discrete"),
        ("poisson", "binom:n=3,p=0.5,loc=-1", "integer"),
        ("bernoulli", "bernoulli:p=0", "never occur"),
        ("categorical:k=3", "bernoulli:p=0.4", "never occur"),
        ("von-mises", "uniform:loc=-3.141592653589793,scale=6.283185307179586", "mean direction"),
        ("student-t", "norm:scale=1e-300", "single point|maximiser|strict"),
    ],
)
def test_no_maximiser_or_wrong_support_is_a_usage_error(family, data, message):
    from stability.errors import UsageError

    with pytest.raises(UsageError, match=message):
        _op(family, data).theta_star()


def test_non_finite_data_is_a_usage_error():
    from stability.datasources import SampleData
    from stability.errors import UsageError

    data = SampleData(np.array([0.1, 0.5, 0.9]))
    data.points = np.array([[0.1], [np.nan], [0.9]])
    with pytest.raises(UsageError, match="non-finite"):
        Operator(StudentTFamily(4.0), data).theta_star()


def test_eps_on_the_integers_equals_the_sum_of_cdf_gaps():
    op = _op("poisson", "nbinom:n=3,p=0.4")
    r = op.theta_star()[0]
    assert r == pytest.approx(4.5, abs=1e-10)  # the MLE of a Poisson rate is the mean
    k = np.arange(0, 400)
    direct = np.abs(stats.poisson.cdf(k, r) - stats.nbinom.cdf(k, 3, 0.4)).sum()
    assert op.eps() == pytest.approx(direct, abs=1e-12)


def test_eps_on_the_circle_against_a_riemann_sum():
    op = _op("von-mises", "0.5*vonmises:kappa=4,loc=-1 + 0.5*vonmises:kappa=4,loc=1")
    mu, kappa = op.theta_star()
    t = np.linspace(-math.pi, math.pi, 200001)
    dens_a = stats.vonmises.pdf(t, kappa, loc=mu)
    dens_b = 0.5 * stats.vonmises.pdf(t, 4, loc=-1) + 0.5 * stats.vonmises.pdf(t, 4, loc=1)
    dt = t[1] - t[0]
    gap = np.cumsum(dens_a - dens_b) * dt
    assert op.eps() == pytest.approx(np.mean(np.abs(gap - np.median(gap))) * 2 * math.pi, rel=1e-4)


def test_spectrum_formula_matches_finite_differences_for_a_full_mixture():
    op = _op("gmm:k=2", "0.3*norm:loc=-1,scale=0.5 + 0.7*laplace:loc=2")
    for lam in (0.3, 4.0):
        fd = np.sort(np.linalg.eigvals(op.jacobian_fd(lam)).real)
        assert np.allclose(np.sort(op.jacobian_eigenvalues(lam).real), fd, atol=1e-6)
    assert np.all(op.mu().real > 0) and math.isinf(op.spectral_lambda_max())


def test_exponential_family_jacobian_is_lam_over_one_plus_lam_for_any_data():
    # The Hessian of log p does not depend on x, so A = B~ whatever the data.
    op = _op("exponential", "gamma:a=3,scale=0.7")
    for lam in (0.2, 5.0):
        assert op.jacobian_fd(lam)[0, 0] == pytest.approx(lam / (1 + lam), abs=1e-8)


def test_bootstrap_error_of_a_sample_matches_the_delta_method(tmp_path):
    from stability.datasources import SampleData
    from stability.families import ExponentialFamily
    from stability.operator_summary import summarize

    x = np.random.default_rng(9).gamma(2.0, 1.0, 400)
    op = Operator(ExponentialFamily(), SampleData(x))
    s = summarize(op, [1.0], bootstrap=200, rng=np.random.default_rng(1))
    r = 1 / x.mean()
    delta = r**2 * x.std() / math.sqrt(x.size)  # se of 1/mean
    assert s.theta_star[0] == pytest.approx(r, rel=1e-10)
    # The bootstrap sd has relative error ~ 1/sqrt(2 * 200) = 5%; 4 of those.
    assert s.se["theta_star"][0] == pytest.approx(delta, rel=0.2)
    assert s.se["eps"] > 0 and s.bootstrap == 200


def test_family_checks_hold_and_a_wrong_hessian_makes_them_fail():
    from stability.families import LaplaceFamily
    from stability.family_checks import run_family_checks

    op = _op("laplace:loc=0", "t:df=5")
    results, ran = run_family_checks(op, mode="quick", names=["lemma-e1-eq76", "lemma-e1-eq77"])
    assert ran and [r.verdict for r in results] == ["holds", "holds"]

    class Wrong(LaplaceFamily):
        def hessian(self, x, theta):
            return 1.1 * super().hessian(x, theta)

    from stability.datasources import make_data

    bad = Operator(Wrong(0.0), make_data("t:df=5"))
    results, _ = run_family_checks(bad, mode="quick", names=["lemma-e1-eq76", "lemma-e1-eq77"])
    assert [r.verdict for r in results] == ["fails", "fails"]


@pytest.mark.parametrize(
    "family,data",
    [
        ("gmm:k=2", "0.3*norm:loc=-1,scale=0.5 + 0.7*laplace:loc=2"),
        ("means-mixture:sigma=0.7", "0.7*norm:loc=-0.5,scale=0.6 + 0.3*norm:loc=1.5,scale=0.8"),
        ("von-mises", "0.5*vonmises:kappa=4,loc=-1 + 0.5*vonmises:kappa=4,loc=1"),
    ],
)
def test_jacobian_is_a_contraction_in_the_A_norm_for_every_lambda(family, data):
    # J = (P + lam Q)^-1 lam Q with P = -A, Q = -B~ positive definite is self-adjoint for
    # <u, v> = u^T P v, so its P-norm is its spectral radius lam mu_max / (1 + lam mu_max) < 1:
    # at a strict maximum G_lambda^inf is a local contraction for every finite lambda, whatever
    # eps, L and alpha. Measured on finite differences of the map itself.
    op = _op(family, data)
    evals, evecs = np.linalg.eigh(-op.A())
    root = evecs @ np.diag(np.sqrt(evals)) @ evecs.T
    for lam in (0.1, 3.0, 300.0):
        jfd = op.jacobian_fd(lam)
        rho = np.abs(np.linalg.eigvals(jfd)).max()
        assert np.linalg.norm(root @ jfd @ np.linalg.inv(root), 2) == pytest.approx(rho, abs=1e-6)
        assert rho < 1 and rho == pytest.approx(
            lam * op.mu().max() / (1 + lam * op.mu().max()), abs=1e-6
        )
