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
    m = np.asarray(samples, dtype=float)
    r = m.shape[0]
    half = r // 2
    w, vecs = np.linalg.eigh(m[:half].mean(axis=0))
    v = vecs[:, 0]
    quad = np.einsum("i,rij,j->r", v, m[half:], v)
    z = z_value(level, comparisons)
    upper = float(quad.mean() + z * quad.std(ddof=1) / np.sqrt(quad.size))
    mean_all = m.mean(axis=0)
    est = float(np.linalg.eigvalsh(mean_all)[0])
    frob_se = float(np.sqrt(m.var(axis=0, ddof=1).sum() / r))
    lower = est - z * frob_se
    return Interval(est, lower, max(upper, lower), level), v
