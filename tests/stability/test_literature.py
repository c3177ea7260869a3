"""The literature checks: each holds for the model its result is about and fails for a mutant.

A mutant changes one thing a published result depends on (the variance divisor, what the model
remembers, the noise of its samples, the estimator); the check must notice.
"""

import numpy as np
import pytest

from stability import collapse_models as M
from stability.checks import Context, resolve
from stability.checks import literature as L
from stability.checks.verdict import MARGIN_SE
from stability.loop import PointSet

QUICK = Context(mode="quick", seed=0)


class BiasedVariance(M.GaussianMLE):
    """Divides the scatter by N instead of N - 1."""

    def __init__(self, ddof=1, cov=None):
        super().__init__(ddof=0, cov=cov)


class Forgetful(M.GaussianMLE):
    """Refits on the newest n points only: accumulation degenerates to replacement."""

    def fit(self, data):
        super().fit(PointSet(data.x[:, -20:]))


class Noiseless(M.LinearRegressionOLS):
    """Labels its samples without noise."""

    def __init__(self, sigma=1.0, fixed_design=False):
        super().__init__(sigma=0.0, fixed_design=fixed_design)


class AddOne(M.BernoulliMLE):
    """Laplace's add-one estimator: a symbol is never lost."""

    def fit(self, data):
        x = data.x[:, :, 0]
        self.p = (x.sum(axis=1) + 1) / (x.shape[1] + 2)


class Inflated(M.GaussianMLE):
    """Samples with 1.3 times the fitted variance."""

    def sample(self, k, rng):
        z = rng.standard_normal((self.mu.shape[0], k, self.mu.shape[1]))
        return PointSet(self.mu[:, None, :] + np.sqrt(1.3 * self.cov[:, :1, :1]) * z)


class Swapped(M.WeightedMean):
    """Puts the weight on the synthetic mean instead of the real one."""

    def __init__(self, weight, sigma=1.0):
        super().__init__(1 - weight, sigma)


CASES = [
    (L.gaussian_collapse, dict(model=BiasedVariance)),
    (L.accumulate_bound, dict(model=Forgetful)),
    (L.accumulate_bound, dict(regression=Noiseless)),
    (L.regression_growth, dict(model=Noiseless)),
    (L.bernoulli_collapse, dict(model=AddOne)),
    (L.gaussian_tail, dict(model=Inflated)),
    (L.golden_ratio, dict(model=Swapped)),
]


@pytest.fixture(scope="module")
def honest():
    return {fn.__name__: fn(QUICK) for fn, _ in CASES}


@pytest.mark.parametrize("fn,mutant", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_holds_for_the_model_and_fails_for_a_mutant(honest, fn, mutant):
    res = honest[fn.__name__]
    assert res["verdict"] == "holds", res["summary"]
    assert np.isfinite(res["measured"]) and np.isfinite(res["expected"])
    # Decided by the verdict rule, with margin, in --quick: the deciding estimate is at least
    # 5 standard errors inside its bound and its interval is the estimate +- 5 of them.
    assert res["margin_se"] is not None and res["margin_se"] >= MARGIN_SE, res["margin_se"]
    lo, hi = res["interval"]
    assert lo <= res["measured"] <= hi
    bad = fn(QUICK, **mutant)
    assert bad["verdict"] == "fails", bad["summary"]
    assert bad["margin_se"] >= MARGIN_SE
    assert bad["counterexample"] is not None


def test_registered_as_a_group_with_sources():
    specs = resolve(["literature"])
    assert len(specs) == 6
    for spec in specs:
        assert spec.group == "literature" and spec.reference and spec.claim
        assert any(str(y) in spec.reference for y in (2023, 2024, 2025))


def test_wright_fisher_chain_against_its_martingale_and_a_direct_simulation():
    # The chain's loss probability is 1 - p for any n (optional stopping of the martingale);
    # its mean time to loss is checked against an independent scalar simulation.
    for n, p in ((5, 0.4), (12, 0.25)):
        loss, time = L.wright_fisher(n, p)
        assert loss == pytest.approx(1 - p, abs=1e-12)
    rng = np.random.default_rng(0)
    n, p, runs = 6, 0.3, 40000
    k = rng.binomial(n, p, runs)
    t = np.zeros(runs)
    alive = (k > 0) & (k < n)
    while alive.any():
        k[alive] = rng.binomial(n, k[alive] / n)
        t[alive] += 1
        alive = (k > 0) & (k < n)
    lost = k == 0
    mean, se = t[lost].mean(), t[lost].std() / np.sqrt(lost.sum())
    assert abs(mean - L.wright_fisher(n, p)[1]) < 4 * se


def test_golden_ratio_weight_is_the_minimiser_for_several_ratios():
    from scipy.optimize import minimize_scalar

    for lam in (0.5, 1.0, 3.0):
        best = minimize_scalar(
            lambda w, lam=lam: float(L.stationary_mse(w, lam, 10)),
            bounds=(1e-9, 1),
            method="bounded",
            options={"xatol": 1e-12},
        ).x
        assert best == pytest.approx(L.golden_weight(lam), abs=1e-7)
    assert L.golden_weight(1.0) == pytest.approx(1 / L.GOLDEN, abs=1e-15)
