"""Poisson family on the integers k >= 0 with rate r > 0, theta = (r,)."""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from stability.errors import UsageError
from stability.families.base import Family, data_points


class PoissonFamily(Family):
    """Poisson(r): log p = k log r - r - log k!, theta = (r,), a discrete family.

    score = k/r - 1, Hessian = -k/r^2: linear in k, so on the integers L = 1/r^2 exactly.
    """

    param_names = ("r",)
    derivatives = "given"
    discrete = True
    name = "poisson"

    def logpdf(self, x, theta):
        """log p(k; r) = k log r - r - log k!, shape (N,)."""
        r = float(theta[0])
        k = data_points(x)
        return k * np.log(r) - r - special.gammaln(k + 1)

    def score(self, x, theta):
        """d/dr log p = k/r - 1, shape (N, 1)."""
        return (data_points(x) / float(theta[0]) - 1.0)[:, None]

    def hessian(self, x, theta):
        """d^2/dr^2 log p = -k/r^2, shape (N, 1, 1)."""
        return (-data_points(x) / float(theta[0]) ** 2)[:, None, None]

    def lipschitz(self, theta) -> float:
        """L = 1/r^2: the Hessian changes by exactly that between neighbouring integers."""
        return 1.0 / float(theta[0]) ** 2

    def valid(self, theta) -> bool:
        """True when the rate r is finite and > 0."""
        return bool(np.all(np.isfinite(theta)) and theta[0] > 0)

    def nodes(self, theta):
        """The atoms k = 0..K, shape (K + 1, 1), and their Poisson(r) probabilities.

        K is twice the 1e-15 upper quantile plus 20: the mass beyond is below 1e-300.
        """
        r = float(theta[0])
        top = 2 * int(stats.poisson.isf(1e-15, r)) + 20  # the mass beyond is below 1e-300
        k = np.arange(0, top + 1, dtype=float)
        w = stats.poisson.pmf(k, r)
        return k[:, None], w / w.sum()

    def sample(self, rng, n, theta):
        """n draws of Poisson(r), as floats, shape (n, 1)."""
        return rng.poisson(float(theta[0]), size=n).astype(float)[:, None]

    def cdf(self, x, theta):
        """P(K <= floor(x)) under Poisson(r)."""
        return stats.poisson.cdf(np.floor(x), float(theta[0]))

    def check_data(self, x, w) -> None:
        """Also refuses non-integer or negative data, and data all at 0 (maximiser r = 0)."""
        super().check_data(x, w)
        if np.any(x < 0) or np.any(x != np.round(x)):
            raise UsageError("the Poisson family needs integer data k >= 0 (e.g. poisson:mu=3)")
        if float(w @ x[:, 0]) <= 0:
            raise UsageError("the data are all 0: the rate's maximiser is r = 0")

    def initial_guess(self, data) -> np.ndarray:
        """The maximum-likelihood rate E_data[k], shape (1,)."""
        x, w = data.nodes()
        return np.array([float(w @ x[:, 0] / w.sum())])

    def describe(self) -> str:
        """The family and its parameter, in words."""
        return "Poisson(r) on k = 0, 1, ..., theta = (r) (rate)"
