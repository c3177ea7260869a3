"""Data sources: scipy laws, mixtures, samples, grids; their quadratures, CDFs and samplers."""

import math

import numpy as np
import pytest
from scipy import stats

from stability.datasources import FamilyData, GridData, MixtureData, SampleData, make_data
from stability.datasources.spec import split_mixture
from stability.errors import UsageError
from stability.families import StudentTFamily


@pytest.mark.parametrize(
    "spec,mean,var",
    [
        ("laplace", 0.0, 2.0),
        ("laplace:loc=1.5,scale=0.5", 1.5, 0.5),
        ("t:df=3", 0.0, 3.0),  # heavy tails: the variance integral converges slowly
        ("gamma:a=2", 2.0, 2.0),
        ("gamma:a=0.5", 0.5, 0.5),  # density singular at 0
        ("expon:scale=2", 2.0, 4.0),
        ("norm:loc=-1,scale=3", -1.0, 9.0),
        ("poisson:mu=3", 3.0, 3.0),
        ("binom:n=4,p=0.3", 1.2, 0.84),
        ("bernoulli:p=0.3", 0.3, 0.21),
        ("nbinom:n=3,p=0.4", 4.5, 11.25),
        ("categorical:p=[0.2,0.3,0.5]", 1.3, 0.61),
    ],
)
def test_quadrature_reproduces_moments(spec, mean, var):
    data = make_data(spec)
    x, w = data.nodes()
    assert w.sum() == pytest.approx(1.0, abs=1e-13)
    assert data.mean[0] == pytest.approx(mean, abs=1e-10)
    assert data.cov[0, 0] == pytest.approx(var, rel=1e-8)


def test_log_moments_of_a_heavy_tail_and_the_kink_of_the_laplace():
    # E log(1 + X^2) for Cauchy is 2 log 2; E|X| for Laplace(0, 1) is 1 (kink at the median).
    x, w = make_data("cauchy").nodes()
    assert w @ np.log1p(x[:, 0] ** 2) == pytest.approx(2 * math.log(2), abs=1e-10)
    x, w = make_data("laplace").nodes()
    assert w @ np.abs(x[:, 0]) == pytest.approx(1.0, abs=1e-12)
    assert not make_data("cauchy").has_mean() and make_data("t:df=3").has_mean()


def test_slow_quantile_laws_use_the_density_rule():
    data = make_data("vonmises:kappa=2,loc=0.5")  # scipy's vonmises_line, angles on one period
    assert not data.fast_quantiles()
    x, w = data.nodes()
    assert x.min() >= 0.5 - math.pi - 1e-12 and x.max() <= 0.5 + math.pi + 1e-12
    # E cos(x - loc) = I1(kappa)/I0(kappa).
    from scipy import special

    assert w @ np.cos(x[:, 0] - 0.5) == pytest.approx(special.i1(2) / special.i0(2), abs=1e-10)


def test_mixture_spec_weights_components_and_signs():
    assert split_mixture("0.3*norm:loc=-1e+0 + 0.7*laplace:loc=2") == [
        "0.3*norm:loc=-1e+0",
        "0.7*laplace:loc=2",
    ]
    data = make_data("0.3*norm:loc=-1e+0 + 0.7*laplace:loc=2")
    assert isinstance(data, MixtureData)
    assert data.mean[0] == pytest.approx(0.3 * -1 + 0.7 * 2, abs=1e-10)
    second = 0.3 * (1 + 1) + 0.7 * (2 + 4)
    assert data.cov[0, 0] == pytest.approx(second - 1.1**2, rel=1e-9)
    t = np.array([-2.0, 0.5, 3.0])
    expect = 0.3 * stats.norm.cdf(t, -1) + 0.7 * stats.laplace.cdf(t, 2)
    assert np.allclose(data.cdf(t), expect)
    draws = data.sample(np.random.default_rng(0), 50000)[:, 0]
    assert abs(draws.mean() - 1.1) < 5 * draws.std() / math.sqrt(draws.size)


@pytest.mark.parametrize(
    "spec",
    [
        "nosuchlaw",
        "t:df=-1",
        "t:nu=3",
        "norm:scale=abc",
        "categorical:p=[0.2,0.3]",
        "categorical:p=0.5",
        "0.3*norm + laplace",
        "-0.3*norm + 1.3*laplace",
        "missing.npy",
        "grid:missing.csv",
        "",
    ],
)
def test_bad_data_specs_raise_usage_errors(spec):
    with pytest.raises(UsageError):
        make_data(spec).nodes()


def test_sample_files_nan_and_bootstrap_weights(tmp_path):
    rng = np.random.default_rng(4)
    pts = rng.standard_normal(500)
    np.save(tmp_path / "x.npy", pts)
    np.savetxt(tmp_path / "x.csv", pts, delimiter=",")
    for name in ("x.npy", "x.csv"):
        data = make_data(str(tmp_path / name))
        assert isinstance(data, SampleData) and data.size == 500 and not data.discrete
        assert data.mean[0] == pytest.approx(pts.mean(), abs=1e-12)
    data = make_data(str(tmp_path / "x.npy"))
    assert np.allclose(data.cdf(np.sort(pts)), np.arange(1, 501) / 500)
    counts = rng.multinomial(500, np.full(500, 1 / 500)).astype(float)
    rep = data.reweighted(counts)
    assert rep.mean[0] == pytest.approx(counts @ pts / 500, abs=1e-12)
    bad = pts.copy()
    bad[7] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(UsageError, match="non-finite"):
        make_data(str(tmp_path / "bad.npy"))
    np.save(tmp_path / "counts.npy", rng.poisson(3, 200))
    assert make_data(str(tmp_path / "counts.npy")).discrete
    with pytest.raises(UsageError):
        SampleData(np.array([1.0]))


def test_grid_density_is_exact_for_a_triangle(tmp_path):
    # Triangle on [0, 2] with peak at 1 (unnormalised): mean 1, variance 1/6.
    np.savetxt(tmp_path / "tri.csv", np.array([[0.0, 0.0], [1.0, 5.0], [2.0, 0.0]]), delimiter=",")
    data = make_data(f"grid:{tmp_path / 'tri.csv'}")
    assert isinstance(data, GridData)
    assert data.mean[0] == pytest.approx(1.0, abs=1e-14)
    assert data.cov[0, 0] == pytest.approx(1 / 6, abs=1e-14)
    assert np.allclose(data.cdf(np.array([-1.0, 0.5, 1.0, 1.5, 3.0])), [0, 0.125, 0.5, 0.875, 1])
    draws = data.sample(np.random.default_rng(1), 20000)[:, 0]
    assert stats.kstest(draws, data.cdf).pvalue > 0.001
    with pytest.raises(UsageError):
        GridData([0.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    with pytest.raises(UsageError):
        GridData([0.0, 1.0], [1.0, np.nan])


def test_family_as_data_and_sampling_matches_the_cdf():
    fam = StudentTFamily(5.0)
    data = FamilyData(fam, [0.3, 1.2])
    assert data.mean[0] == pytest.approx(0.3, abs=1e-10)
    for spec in ("laplace:loc=0.5", "gamma:a=2", "poisson:mu=3"):
        src = make_data(spec)
        draws = src.sample(np.random.default_rng(7), 4000)[:, 0]
        if src.discrete:
            assert abs(draws.mean() - src.mean[0]) < 5 * math.sqrt(src.cov[0, 0] / draws.size)
        else:
            assert stats.kstest(draws, src.cdf).pvalue > 0.001
