"""Confidence intervals against independent implementations and known coverage."""

import numpy as np
import pytest
from scipy import stats as sst

from stability.stats import binomial_interval, mean_interval, min_eig_interval, z_value


@pytest.mark.parametrize("k,n", [(0, 20), (3, 20), (17, 20), (20, 20), (450, 1000)])
def test_binomial_interval_is_clopper_pearson(k, n):
    ours = binomial_interval(k, n, level=0.95)
    ref = sst.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert ours.lo == pytest.approx(ref.low, abs=1e-12)
    assert ours.hi == pytest.approx(ref.high, abs=1e-12)


def test_bonferroni_widens():
    assert z_value(0.99, 10) > z_value(0.99, 1)
    assert z_value(0.95) == pytest.approx(1.959963984540054)


def test_mean_interval_coverage():
    rng = np.random.default_rng(3)
    hits = sum(mean_interval(rng.exponential(size=200), 0.9).contains(1.0) for _ in range(2000))
    # Coverage of a 90% CLT interval for an exponential mean, n = 200: within binomial noise.
    ci = binomial_interval(hits, 2000, 0.999)
    assert ci.lo < 0.9 < ci.hi + 0.02


def test_min_eig_interval_brackets_known_value():
    rng = np.random.default_rng(4)
    target = np.diag([2.0, -0.5, 1.0])
    noise = rng.standard_normal((20000, 3, 3)) * 0.3
    samples = target + 0.5 * (noise + np.swapaxes(noise, 1, 2))
    interval, v = min_eig_interval(samples, 0.99)
    assert interval.lo <= -0.5 <= interval.hi
    assert abs(abs(v[1]) - 1) < 0.05
