"""Confidence intervals for the Monte-Carlo checks.

Every Monte-Carlo verdict compares a claim with an interval whose width comes from the number of
runs; when one check makes k comparisons, each uses level 1 - (1 - level)/k (Bonferroni) so the
whole check keeps its family-wise level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval [lo, hi]."""

    estimate: float
    lo: float
    hi: float
    level: float

    def contains(self, value: float) -> bool:
        """True when lo <= value <= hi."""
        return self.lo <= value <= self.hi

    def as_list(self) -> list[float]:
        """[lo, hi] as Python floats (for JSON)."""
        return [float(self.lo), float(self.hi)]


def z_value(level: float, comparisons: int = 1) -> float:
    """Two-sided normal quantile for a family-wise level over `comparisons` tests."""
    alpha = (1.0 - level) / max(1, comparisons)
    return float(stats.norm.ppf(1.0 - alpha / 2.0))


def mean_interval(samples: np.ndarray, level: float = 0.99, comparisons: int = 1) -> Interval:
    """CLT interval for the mean of i.i.d. samples, shape (R,)."""
    x = np.asarray(samples, dtype=float)
    m = float(x.mean())
    se = float(x.std(ddof=1) / np.sqrt(x.size))
    z = z_value(level, comparisons)
    return Interval(m, m - z * se, m + z * se, level)


def binomial_interval(
    successes: int, trials: int, level: float = 0.99, comparisons: int = 1
) -> Interval:
    """Clopper-Pearson (exact) interval for a binomial proportion."""
    a = (1.0 - level) / max(1, comparisons)
    k, n = int(successes), int(trials)
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return Interval(k / n, lo, hi, level)


@dataclass(frozen=True)
class MinEig:
    """Two one-sided estimates of lambda_min(E[M]) from i.i.d. symmetric matrices M.

    Attributes
    ----------
    estimate : float
        lambda_min of the sample mean.
    frob_se : float
        Standard error of ||mean - E M||_F (root of the summed entry variances over R); by Weyl's
        inequality lambda_min(E M) >= estimate - z frob_se (the lower side).
    split_mean, split_se : float
        Mean and standard error of v^T M v on the second half of the samples, v the direction of
        the smallest eigenvalue of the first half's mean; lambda_min(E M) <= v^T E[M] v (the
        upper side).
    direction : numpy.ndarray, shape (d,)
        v (the counterexample direction when the upper side is below 0).
    """

    estimate: float
    frob_se: float
    split_mean: float
    split_se: float
    direction: np.ndarray


def min_eig_estimates(samples: np.ndarray) -> MinEig:
    """lambda_min(E[M]) from i.i.d. symmetric matrices M, shape (R, d, d): see MinEig."""
    m = np.asarray(samples, dtype=float)
    r = m.shape[0]
    half = r // 2
    _, vecs = np.linalg.eigh(m[:half].mean(axis=0))
    v = vecs[:, 0]
    quad = np.einsum("i,rij,j->r", v, m[half:], v)
    est = float(np.linalg.eigvalsh(m.mean(axis=0))[0])
    frob_se = float(np.sqrt(m.var(axis=0, ddof=1).sum() / r))
    split_se = float(quad.std(ddof=1) / np.sqrt(quad.size))
    return MinEig(est, frob_se, float(quad.mean()), split_se, v)


def min_eig_interval(
    samples: np.ndarray, level: float = 0.99, comparisons: int = 1
) -> tuple[Interval, np.ndarray]:
    """Interval for lambda_min(E[M]) from i.i.d. symmetric matrices M, shape (R, d, d).

    Split sample: the first half picks the direction v of the smallest eigenvalue of its mean;
    on the second half v^T M v is a scalar mean with a CLT interval, which bounds lambda_min
    from above (lambda_min <= v^T E[M] v). A lower bound comes from Weyl's inequality,
    lambda_min(E M) >= lambda_min(mean) - ||mean - E M||_2 >= lambda_min(mean) - ||.||_F, with the
    Frobenius error bounded by z times the root of the summed entry variances over R.
    Returns the interval and the direction v (the counterexample when hi < 0).
    """
    e = min_eig_estimates(samples)
    z = z_value(level, comparisons)
    upper = e.split_mean + z * e.split_se
    lower = e.estimate - z * e.frob_se
    return Interval(e.estimate, lower, max(upper, lower), level), e.direction
