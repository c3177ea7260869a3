"""The field's models (simulations.field_models) against known answers, batched = looped."""

import math

import numpy as np
import pytest
from scipy import stats

from simulations.field_models.gaussian import Gaussian
from simulations.field_models.gmm import GaussianMixture, MixtureData
from simulations.field_models.kde import KDE
from simulations.field_models.linear_regression import LinearData, LinearRegression
from simulations.field_models.ngram import CategoricalData, MarkovData, NGram
from stability.errors import UsageError
from stability.loop import PointSet, Policy, retrain


def _within(values, expected, k=4.0):
    values = np.asarray(values, float).ravel()
    se = values.std(ddof=1) / math.sqrt(values.size)
    assert abs(values.mean() - expected) < k * se, (values.mean(), expected, se)


def _states(model, real, policy, iterations, seed):
    out = []
    retrain(
        model,
        real,
        policy,
        iterations,
        np.random.default_rng(seed),
        on_iteration=lambda t, m, d: out.append({k: np.array(v) for k, v in m.state().items()}),
    )
    return out


# ---- Gaussian mixture by EM ----------------------------------------------------------------


def test_em_recovers_a_well_separated_mixture():
    means = np.array([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]])
    weights = np.array([0.5, 0.3, 0.2])
    data = MixtureData(means.tolist(), std=[1.0, 0.7, 1.3], weights=weights.tolist())
    rng = np.random.default_rng(0)
    n = 4000
    x = np.stack([data.sample(n, rng) for _ in range(3)])
    model = GaussianMixture(components=3)
    model.fit(PointSet(x))
    for r in range(3):
        order = [int(np.argmin(np.linalg.norm(model.means[r] - m, axis=1))) for m in means]
        assert sorted(order) == [0, 1, 2]
        for k, j in enumerate(order):
            w, sd = weights[k], data.std[k]
            # Standard errors of the maximum-likelihood estimates of a well-separated mixture.
            assert abs(model.weights[r, j] - w) < 4 * math.sqrt(w * (1 - w) / n)
            assert np.all(np.abs(model.means[r, j] - means[k]) < 4 * sd / math.sqrt(n * w))
            np.testing.assert_allclose(
                model.covs[r, j],
                sd**2 * np.eye(2),
                atol=4 * math.sqrt(2) * sd**2 / math.sqrt(n * w),
            )


def test_em_batched_equals_em_run_by_run():
    data = MixtureData([-3.0, 0.0, 3.0], std=0.8)
    rng = np.random.default_rng(1)
    x = np.stack([data.sample(300, rng) for _ in range(4)])
    batched = GaussianMixture(components=3)
    batched.fit(PointSet(x))
    for r in range(4):
        alone = GaussianMixture(components=3)
        alone.fit(PointSet(x[r : r + 1]))
        for key, value in alone.state().items():
            np.testing.assert_allclose(batched.state()[key][r], value[0], rtol=1e-10, atol=1e-12)


def test_gmm_samples_follow_the_fitted_mixture():
    model = GaussianMixture(components=2)
    model.weights = np.array([[0.25, 0.75]])
    model.means = np.array([[[-2.0], [3.0]]])
    model.covs = np.array([[[[0.25]], [[1.0]]]])
    x = model.sample(200000, np.random.default_rng(2)).x[0, :, 0]
    _within(x, 0.25 * -2 + 0.75 * 3)
    _within((x < 0.5), 0.25 * stats.norm.cdf(5) + 0.75 * stats.norm.cdf(-2.5))
    nll = model.metrics(PointSet(np.array([[[0.0]]])))["nll"][0]
    density = 0.25 * stats.norm.pdf(0, -2, 0.5) + 0.75 * stats.norm.pdf(0, 3, 1)
    assert nll == pytest.approx(-math.log(density), rel=1e-10)


# ---- kernel density estimate ---------------------------------------------------------------


@pytest.mark.parametrize("rule", ["scott", "silverman"])
@pytest.mark.parametrize("dim", [1, 2])
def test_kde_bandwidth_rules_match_scipy(rule, dim):
    x = np.random.default_rng(3).standard_normal((2, 150, dim)) * [1.0, 2.0][:dim]
    model = KDE(rule)
    model.fit(PointSet(x))
    for r in range(2):
        ref = stats.gaussian_kde(x[r].T, bw_method=rule).covariance
        np.testing.assert_allclose(model.kernel[r], ref, rtol=1e-10)


def test_kde_fully_synthetic_variance_grows_by_the_bandwidth_squared():
    """V_t = Var of the KDE at t: E[V_t] = (1 - 1/n) E[V_{t-1}] + h^2, V_0 from N(0, 1) data."""
    n, h, T = 20, 0.5, 5
    x = np.random.default_rng(4).standard_normal((6000, n, 1))
    states = _states(KDE(h), PointSet(x), Policy("mix", math.inf), T, seed=5)
    expected = (1 - 1 / n) * 1.0 + h**2
    for t in range(T + 1):
        _within(states[t]["cov"][:, 0, 0], expected)
        expected = (1 - 1 / n) * expected + h**2
    # With many points the growth is h^2 per generation: E[V_t - V_{t-1}] = h^2 - E[V_{t-1}] / n.
    n = 5000
    big = _states(KDE(h), PointSet(np.zeros((400, n, 1))), Policy("mix", math.inf), 3, 6)
    previous = h**2  # V_0: the points do not vary, the kernel adds h^2
    for t in range(1, 4):
        step = h**2 - previous / n
        _within(big[t]["cov"][:, 0, 0] - big[t - 1]["cov"][:, 0, 0], step)
        assert abs(step - h**2) < 1e-3 * h**2
        previous += step


def test_kde_samples_have_the_kde_moments_and_rules_are_checked():
    model = KDE(0.3)
    x = np.random.default_rng(7).standard_normal((1, 50, 2))
    model.fit(PointSet(x))
    s = model.sample(400000, np.random.default_rng(8)).x[0]
    np.testing.assert_allclose(s.mean(0), model.state()["mean"][0], atol=4 * 1.2 / math.sqrt(4e5))
    np.testing.assert_allclose(np.cov(s.T, ddof=0), model.state()["cov"][0], atol=0.01)
    for bad in ("wide", 0.0, -1.0):
        with pytest.raises(UsageError, match="kde: bandwidth"):
            KDE(bad)


# ---- categorical and bigram models ---------------------------------------------------------


def test_categorical_retraining_is_wright_fisher():
    """MLE on its own samples: E[p_t] = p_0 (martingale), E[G_t] = (1 - 1/M)^t G_0 for the
    Gini-Simpson index G = 1 - sum p^2 with M tokens per refit."""
    n, T = 30, 6
    data = CategoricalData(categories=6, exponent=1.0)
    rng = np.random.default_rng(9)
    x = np.stack([data.sample(n, rng) for _ in range(8000)])
    model = NGram()
    states = _states(model, PointSet(x), Policy("mix", math.inf), T, seed=10)
    p0 = states[0]["unigram"]
    g0 = 1 - np.sum(p0**2, axis=1)
    for t in range(1, T + 1):
        p = states[t]["unigram"]
        _within(1 - np.sum(p**2, axis=1) - (1 - 1 / n) ** t * g0, 0.0)
        for i in range(6):
            _within(p[:, i] - p0[:, i], 0.0)
    lost = np.sum(states[T]["unigram"] == 0, axis=1) - np.sum(p0 == 0, axis=1)
    assert np.all(lost >= 0) and lost.mean() > 0.5  # symbols vanish and never return


def test_bigram_fit_counts_and_samples_the_transitions():
    data = MarkovData(categories=4, length=5, seed=1)
    rng = np.random.default_rng(11)
    x = np.stack([data.sample(3000, rng) for _ in range(2)])
    model = NGram(order=2, categories=4)
    model.fit(PointSet(x))
    counts = np.zeros((4, 4))
    for seq in x[1]:
        for a, b in zip(seq[:-1], seq[1:]):
            counts[a, b] += 1
    np.testing.assert_allclose(model.transition[1], counts / counts.sum(1, keepdims=True))
    s = model.sample(20000, np.random.default_rng(12)).x
    assert s.shape == (2, 20000, 5) and s.dtype.kind == "i"
    pairs = np.zeros((4, 4))
    np.add.at(pairs, (s[0, :, :-1].ravel(), s[0, :, 1:].ravel()), 1)
    freq = pairs / pairs.sum(1, keepdims=True)
    se = np.sqrt(model.transition[0] * (1 - model.transition[0]) / pairs.sum(1, keepdims=True))
    assert np.all(np.abs(freq - model.transition[0]) <= 4 * se + 1e-12)
    m = model.metrics(PointSet(x))
    assert m["support"].shape == (2,) and np.all(m["entropy"] > 0)
    assert np.all(m["tv"] < 0.05)  # the fitted unigram is close to the data's own frequencies


def test_ngram_smoothing_keeps_every_symbol_and_rejects_non_tokens():
    model = NGram(categories=5, smoothing=1.0)
    model.fit(PointSet(np.zeros((1, 10, 1), dtype=int)))
    np.testing.assert_allclose(model.unigram[0], [11 / 15] + [1 / 15] * 4)
    with pytest.raises(UsageError, match="integer tokens"):
        NGram().fit(PointSet(np.full((1, 3, 1), 0.5)))
    with pytest.raises(UsageError, match=r"tokens must lie in \[0, 5\)"):
        model.fit(PointSet(np.full((1, 3, 1), 5)))


def test_ngram_held_out_symbols_it_never_saw_count_in_the_total_variation():
    model = NGram()
    model.fit(PointSet(np.array([[[0], [0], [1], [1]]])))
    held = PointSet(np.array([[[0], [2], [2], [3]]]))
    # model (1/2, 1/2, 0, 0) against held-out (1/4, 0, 1/2, 1/4)
    assert model.metrics(held)["tv"][0] == pytest.approx(0.75)
    model.fit(PointSet(np.array([[[0], [3]]])))  # categories not given: K grows to 4
    np.testing.assert_allclose(model.unigram[0], [0.5, 0, 0, 0.5])


# ---- linear regression ---------------------------------------------------------------------


def _regression_errors(policy, runs=4000, n=12, d=3, sigma=0.8, T=4, seed=13):
    data = LinearData(dim=d, sigma=sigma, seed=0)
    rng = np.random.default_rng(seed)
    z = np.stack([data.sample(n, rng) for _ in range(runs)])
    states = _states(LinearRegression(noise=sigma), PointSet(z), policy, T, seed + 1)
    x = z[:, :, :-1]
    trace = np.trace(np.linalg.inv(np.einsum("rni,rnj->rij", x, x)), axis1=1, axis2=2)
    # ||w_t - w*||^2 / (sigma^2 tr (X^T X)^-1): its expectation given X is the known factor.
    return [np.sum((s["w"] - data.w_star) ** 2, axis=1) / (sigma**2 * trace) for s in states]


def test_replacing_labels_grows_the_error_linearly():
    errors = _regression_errors(Policy("mix", math.inf))
    for t, e in enumerate(errors):
        _within(e, t + 1.0)


def test_accumulating_labels_bounds_the_error_by_the_basel_sum():
    errors = _regression_errors(Policy("accumulate", 1.0))
    for t, e in enumerate(errors):
        _within(e, sum(1 / j**2 for j in range(1, t + 2)))
    assert sum(1 / j**2 for j in range(1, 6)) < math.pi**2 / 6


def test_regression_samples_keep_the_design_and_measure_test_error():
    data = LinearData(dim=2, sigma=0.5)
    z = data.sample(10, np.random.default_rng(14))[None]
    model = LinearRegression()
    model.fit(PointSet(z))
    s = model.sample(15, np.random.default_rng(15)).x
    np.testing.assert_array_equal(s[0, :10, :2], z[0, :, :2])
    np.testing.assert_array_equal(s[0, 10:, :2], z[0, :5, :2])
    w, *_ = np.linalg.lstsq(z[0, :, :2], z[0, :, 2], rcond=None)
    np.testing.assert_allclose(model.w[0], w, rtol=1e-10)
    resid = z[0, :, 2] - z[0, :, :2] @ w
    assert model.sigma[0] == pytest.approx(math.sqrt(resid @ resid / 8), rel=1e-10)
    held = data.sample(7, np.random.default_rng(16))[None]
    mse = np.mean((held[0, :, :2] @ w - held[0, :, 2]) ** 2)
    assert model.metrics(PointSet(held))["test_mse"][0] == pytest.approx(mse, rel=1e-10)


def test_the_gaussian_plugin_is_the_papers_model_on_points():
    x = np.random.default_rng(17).standard_normal((2, 30, 2))
    model = Gaussian()
    model.fit(PointSet(x))
    np.testing.assert_allclose(model.state()["cov"][1], np.cov(x[1].T), rtol=1e-12)
    assert model.sample(5, np.random.default_rng(0)).x.shape == (2, 5, 2)
    m = model.metrics(None)
    np.testing.assert_allclose(m["mean_x1"], x[:, :, 0].mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(m["trace_cov"], [np.trace(np.cov(x[r].T)) for r in range(2)])
