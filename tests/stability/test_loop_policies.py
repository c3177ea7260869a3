"""The field's data policies (stability.policies) and accumulate-subsample against known answers.

Each Monte-Carlo test compares a mean over runs with an expectation computed independently
(closed forms, quadrature), within 4 standard errors, with fixed seeds.
"""

import math

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate, stats

from stability.errors import RunError, UsageError
from stability.loop import DataPolicy, LoopState, PointSet, Policy, retrain
from stability.policies import (
    Curate,
    SelfCorrect,
    Verify,
    build_policy,
    data_likelihood,
    first_coordinate,
    gaussian_ot,
    likely_under_data,
    near_real_data,
    nearest_real,
    within_data_range,
)


class Gauss1D:
    """N(mu, sd^2) per run fitted by mean and standard deviation (ddof), batched."""

    def __init__(self, ddof=0):
        self.ddof = ddof

    def fit(self, data):
        x = data.x[:, :, 0]
        self.mu, self.sd = x.mean(axis=1), x.std(axis=1, ddof=self.ddof)

    def sample(self, k, rng):
        z = rng.standard_normal((len(self.mu), k))
        return PointSet((self.mu[:, None] + self.sd[:, None] * z)[:, :, None])

    def state(self):
        return {"mu": self.mu.copy(), "sd": self.sd.copy()}


def _trace(policy, runs, n, iterations, seed, mean=0.0, ddof=0):
    """(mu_t, sd_t) of every run for t = 0..T, shapes (T+1, R)."""
    rng = np.random.default_rng(seed)
    real = PointSet(mean + rng.standard_normal((runs, n, 1)))
    states = []
    retrain(
        Gauss1D(ddof),
        real,
        policy,
        iterations,
        rng,
        on_iteration=lambda t, m, d: states.append(m.state()),
    )
    return np.array([s["mu"] for s in states]), np.array([s["sd"] for s in states])


def _within(values, expected, k=4.0):
    values = np.asarray(values, float).ravel()
    se = values.std(ddof=1) / math.sqrt(values.size)
    assert abs(values.mean() - expected) < k * se, (values.mean(), expected, se)


def _top_k_mean(k, m):
    """E[mean of the k largest of m i.i.d. N(0, 1)] by quadrature.

    The sum of the top k is sum_j X_j 1{X_j among the top k}, so its expectation is
    m * int x phi(x) P(Bin(m - 1, 1 - Phi(x)) <= k - 1) dx.
    """

    def f(x):
        return x * stats.norm.pdf(x) * stats.binom.cdf(k - 1, m - 1, stats.norm.sf(x))

    value, _ = integrate.quad(f, -12, 12, points=[stats.norm.isf(k / m)], limit=200)
    return m * value / k


@pytest.mark.parametrize("fraction", [0.5, 0.2])
def test_curation_by_linear_reward_shifts_the_mean_by_the_truncated_normal_amount(fraction):
    n = 500
    policy = Curate(math.inf, first_coordinate, "first-coordinate", fraction=fraction)
    mu, sd = _trace(policy, runs=300, n=n, iterations=4, seed=1)
    exact = _top_k_mean(n, math.ceil(n / fraction))
    z = stats.norm.isf(fraction)
    # The top fraction q of N(mu, sd^2) has mean mu + sd phi(z_q) / q (truncated normal);
    # the top k of ceil(k / q) samples differs from it by O(1/k).
    assert abs(exact - stats.norm.pdf(z) / fraction) < 0.01
    # (mu_t - mu_{t-1}) / sd_{t-1} is the mean of the top k of m standard normals, every t.
    _within((mu[1:] - mu[:-1]) / sd[:-1], exact)


def test_bradley_terry_choice_between_two_candidates_matches_quadrature():
    tau = 0.7
    policy = Curate(math.inf, first_coordinate, "first-coordinate", candidates=2, temperature=tau)
    mu, sd = _trace(policy, runs=2000, n=100, iterations=1, seed=2)
    # E[Z_chosen] = 2 E[Z_1 sigmoid(s (Z_1 - Z_2))], s = sd_0 / tau, by Gauss-Hermite quadrature.
    z, w = hermegauss(60)
    w = w / w.sum()
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    ww = np.outer(w, w)

    def shift(s):
        return 2 * np.sum(ww * z1 / (1 + np.exp(-s * (z1 - z2))))

    expected = np.array([s * shift(s / tau) for s in sd[0]])
    _within(mu[1] - mu[0] - expected, 0.0)
    assert np.mean(mu[1] - mu[0]) > 0.3  # the preferred (larger) samples are kept


def test_verification_keeps_the_model_conditioned_on_acceptance():
    policy = Verify(math.inf, lambda x, real: x[:, :, 0] > 0, "positive")
    mu, sd = _trace(policy, runs=3000, n=40, iterations=1, seed=3, mean=0.3, ddof=1)
    # Accepted samples are i.i.d. N(mu_0, sd_0^2) truncated to x > 0.
    a = -mu[0] / sd[0]
    hazard = stats.norm.pdf(a) / stats.norm.sf(a)
    _within(mu[1] - (mu[0] + sd[0] * hazard), 0.0)
    _within(sd[1] ** 2 - sd[0] ** 2 * (1 + a * hazard - hazard**2), 0.0)


def test_verification_fills_slots_in_drawing_order_and_gives_up_loudly():
    class Counter:
        def __init__(self):
            self.next = 0

        def sample(self, k, rng):
            out = np.arange(self.next, self.next + k, dtype=float)
            self.next += k
            return PointSet(np.stack([out, out + 1000])[:, :, None])

    real = PointSet(np.zeros((2, 4, 1)))
    batch = Verify(math.inf, lambda x, r: x[:, :, 0] % 3 == 0, "thirds").draw(
        Counter(), 5, real, np.random.default_rng(0)
    )
    assert batch.x[0, :, 0].tolist() == [0, 3, 6, 9, 12]
    assert batch.x[1, :, 0].tolist() == [1002, 1005, 1008, 1011, 1014]
    never = Verify(math.inf, lambda x, r: x[:, :, 0] < -1, "never", max_rounds=3)
    with pytest.raises(RunError, match="'never' accepted only 0 of the 5 samples needed in 3"):
        never.draw(Counter(), 5, real, np.random.default_rng(0))


def test_gaussian_ot_correction_moves_moments_along_the_geodesic():
    rng = np.random.default_rng(4)
    x = 2.0 + 3.0 * rng.standard_normal((3, 50, 1))
    real = -1.0 + 0.5 * rng.standard_normal((3, 80, 1))
    for gamma in (0.0, 0.3, 1.0):
        moved = x + gamma * (gaussian_ot(x, real) - x)
        np.testing.assert_allclose(
            moved.mean(axis=1), (1 - gamma) * x.mean(axis=1) + gamma * real.mean(axis=1), atol=1e-12
        )
        np.testing.assert_allclose(
            moved.std(axis=1, ddof=1),
            (1 - gamma) * x.std(axis=1, ddof=1) + gamma * real.std(axis=1, ddof=1),
            rtol=1e-12,
        )
    # In 3D the map pushes the batch's Gaussian onto the data's: equal covariances.
    x3 = rng.standard_normal((2, 60, 3)) @ np.array([[2.0, 0, 0], [1, 1, 0], [0, 0.5, 0.2]])
    r3 = rng.standard_normal((2, 70, 3))
    c = gaussian_ot(x3, r3)
    for r in range(2):
        np.testing.assert_allclose(np.cov(c[r].T), np.cov(r3[r].T), atol=1e-10)


def test_full_self_correction_refits_the_real_moments():
    policy = SelfCorrect(math.inf, gaussian_ot, "gaussian-ot", strength=1.0)
    rng = np.random.default_rng(5)
    real = PointSet(rng.standard_normal((4, 30, 1)))
    states = []
    retrain(Gauss1D(1), real, policy, 3, rng, on_iteration=lambda t, m, d: states.append(m.state()))
    for s in states[1:]:
        np.testing.assert_allclose(s["mu"], states[0]["mu"], atol=1e-12)
        np.testing.assert_allclose(s["sd"], states[0]["sd"], rtol=1e-12)


def test_nearest_real_and_the_shipped_rewards_and_verifiers():
    rng = np.random.default_rng(6)
    real = rng.standard_normal((2, 40, 2))
    x = 3 * rng.standard_normal((2, 25, 2))
    near = nearest_real(x, real)
    for r in range(2):
        d = np.linalg.norm(x[r][:, None] - real[r][None], axis=2)
        np.testing.assert_array_equal(near[r], real[r][np.argmin(d, axis=1)])
    np.testing.assert_array_equal(first_coordinate(x, real), x[:, :, 0])
    for r in range(2):
        ref = stats.multivariate_normal(real[r].mean(0), np.cov(real[r].T)).logpdf(x[r])
        np.testing.assert_allclose(data_likelihood(x, real)[r], ref, rtol=1e-10)
    inside = within_data_range(x, real)
    box = (x >= real.min(1)[:, None]) & (x <= real.max(1)[:, None])
    np.testing.assert_array_equal(inside, box.all(axis=2))
    assert np.all(within_data_range(real, real))
    assert np.all(likely_under_data(real, real).mean(axis=1) >= 0.95)
    # near-real-data: radius = the 95% quantile of the real points' nearest-neighbour distances.
    for r in range(2):
        d_real = np.linalg.norm(real[r][:, None] - real[r][None], axis=2)
        np.fill_diagonal(d_real, np.inf)
        radius = np.quantile(d_real.min(axis=1), 0.95)
        d = np.linalg.norm(x[r][:, None] - real[r][None], axis=2).min(axis=1)
        np.testing.assert_array_equal(near_real_data(x, real)[r], d <= radius)
    assert 0 < near_real_data(x, real).mean() < 1


def test_accumulate_subsample_matches_its_closed_form_for_the_gaussian():
    """E[sd_t^2] and E[mu_t^2] of accumulate-subsample (lam = 1, subsample n) with a Gaussian
    fitted by mean and unbiased variance, real data N(0, 1).

    Batch j of the pool has mean m_j and n points; batch 0 is the real data, batch t >= 1 is
    drawn from theta_{t-1}: m_t = mu_{t-1} + sd_{t-1} Zbar, E[s_t^2] = E[sd_{t-1}^2]. A uniform
    subsample of n from the pool of N = (t+1) n points has E[s^2] = S^2 (the pool's variance with
    divisor N - 1) and a mean with E = M (the pool mean), Var = S^2 (1/n - 1/N). The recursion
    over the second moments c_ij = E[m_i m_j] is therefore exact.
    """
    n, T = 8, 6
    c = np.zeros((T + 1, T + 1))
    c[0, 0] = 1.0 / n
    ems = [1.0]  # E[s_j^2] of batch j
    v, e = [1.0], [1.0 / n]  # E[sd_t^2], E[mu_t^2]
    mu_m = {0: 1.0 / n}  # E[mu_t m_j] for the current t
    for t in range(1, T + 1):
        for j in range(t):
            c[t, j] = c[j, t] = mu_m[j]
        c[t, t] = e[-1] + v[-1] / n
        ems.append(v[-1])
        b, N = t + 1, (t + 1) * n
        pool = ((n - 1) * sum(ems) + n * np.trace(c[:b, :b]) - n * c[:b, :b].sum() / b) / (N - 1)
        v.append(pool)
        e.append(c[:b, :b].sum() / b**2 + pool * (1 / n - 1 / N))
        mu_m = {j: c[:b, j].sum() / b for j in range(b)}
    mu, sd = _trace(Policy("accumulate-subsample", 1.0), 20000, n, T, seed=7, ddof=1)
    for t in range(T + 1):
        _within(sd[t] ** 2, v[t])
        _within(mu[t] ** 2, e[t])
    # Accumulating keeps the variance far from the collapse of pure replacement.
    assert v[-1] > 0.7


def test_field_policies_follow_the_loop_protocol_and_sizes():
    for policy in (
        Curate(0.5, first_coordinate, fraction=0.5),
        Verify(0.5, lambda x, r: x[:, :, 0] > -10),
        SelfCorrect(0.5, gaussian_ot),
        Policy("mix", 0.5),
    ):
        assert isinstance(policy, DataPolicy)
        sizes = []
        retrain(
            Gauss1D(),
            PointSet(np.random.default_rng(0).standard_normal((2, 10, 1))),
            policy,
            3,
            np.random.default_rng(1),
            on_iteration=lambda t, m, d, out=sizes: out.append(d.size),
        )
        assert sizes == policy.sizes(10, 3) == [10, 15, 15, 15]
    assert Curate(math.inf, first_coordinate, fraction=0.5).sizes(10, 2) == [10, 10, 10]


def test_policy_factories_by_name_and_their_errors():
    assert build_policy("mix", math.inf).label == "mix(lam=inf)"
    p = build_policy("curate", 0.5, {"fraction": 0.25})
    assert isinstance(p, Curate) and p.fraction == 0.25 and p.reward_name == "first-coordinate"
    assert build_policy("accumulate-subsample", 1.0, {"subsample_size": 7}).subsample_size == 7
    assert (
        build_policy("self-correct", 1.0, {"correction": "nearest-real"}).correction is nearest_real
    )
    with pytest.raises(UsageError, match="either fraction"):
        build_policy("curate", 0.5, {"fraction": 0.5, "candidates": 3})
    with pytest.raises(UsageError, match="unknown reward 'nope'; registered: data-likelihood"):
        build_policy("curate", 0.5, {"reward": "nope"})
    with pytest.raises(UsageError, match="unknown policy 'replay'; registered: accumulate"):
        build_policy("replay", 0.5)
    with pytest.raises(UsageError, match="policy plugin 'verify'.*unexpected keyword.*'rounds'"):
        build_policy("verify", 0.5, {"rounds": 3})
    with pytest.raises(UsageError, match="only makes sense for policy 'mix'"):
        build_policy("accumulate", math.inf)
    with pytest.raises(UsageError, match="strength must be in"):
        build_policy("self-correct", 1.0, {"strength": 1.5})


def test_a_reward_of_the_wrong_shape_is_named():
    bad = Curate(1.0, lambda x, r: x[:, :, 0].ravel(), "flat", fraction=0.5)
    real = PointSet(np.zeros((2, 4, 1)))
    model = Gauss1D()
    model.fit(real)
    model.sd = np.ones(2)
    with pytest.raises(
        UsageError, match=r"reward 'flat' returned shape \(16,\), expected \(2, 8\)"
    ):
        bad.train_set(1, real, model, np.random.default_rng(0), LoopState())
    broken = Curate(1.0, lambda x, r: 1 / 0, "broken", fraction=0.5)
    with pytest.raises(RunError, match="reward 'broken' failed: ZeroDivisionError"):
        broken.train_set(1, real, model, np.random.default_rng(0), LoopState())
