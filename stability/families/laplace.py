"""Laplace scale family with a known location, theta = (b,), b > 0."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from stability.errors import UsageError
from stability.families.base import Family, data_points
from stability.families.quadrature import gauss_laguerre_std


class LaplaceFamily(Family):
    """Laplace(loc, b) with loc fixed, theta = (b,): log p = -log(2 b) - |x - loc| / b.

    Derivatives in closed form: score = -1/b + |x - loc|/b^2, Hessian = 1/b^2 - 2|x - loc|/b^3,
    which is Lipschitz in x with L = 2/b^3 exactly. The location is not a parameter: log p is
    not differentiable in it at x = loc, so the pointwise Hessian misses the curvature of
    E[log p] (a point mass at the median) and Assumption 1 fails; fitting the location would
    leave the setting of Theorem 1.

    Parameters
    ----------
    loc : float
        The known location.
    """

    param_names = ("b",)
    derivatives = "given"

    def __init__(self, loc: float = 0.0):
        self.loc = float(loc)
        self.name = f"laplace(loc={self.loc:g})"

    def _dist(self, x):
        return np.abs(data_points(x) - self.loc)

    def logpdf(self, x, theta):
        """log p(x; b) = -log(2 b) - |x - loc| / b, shape (N,)."""
        b = float(theta[0])
        return -math.log(2 * b) - self._dist(x) / b

    def score(self, x, theta):
        """d/db log p = -1/b + |x - loc| / b^2, shape (N, 1)."""
        b = float(theta[0])
        return (-1.0 / b + self._dist(x) / b**2)[:, None]

    def hessian(self, x, theta):
        """d^2/db^2 log p = 1/b^2 - 2 |x - loc| / b^3, shape (N, 1, 1)."""
        b = float(theta[0])
        return (1.0 / b**2 - 2 * self._dist(x) / b**3)[:, None, None]

    def hessian_dx(self, x, theta):
        """d/dx of the Hessian, -2 sign(x - loc) / b^3, shape (N, 1, 1)."""
        b = float(theta[0])
        return (-2 * np.sign(data_points(x) - self.loc) / b**3)[:, None, None]

    def lipschitz(self, theta) -> float:
        """L = sup |d/dx Hessian| = 2 / b^3 (|x - loc| is 1-Lipschitz)."""
        return 2.0 / float(theta[0]) ** 3

    def valid(self, theta) -> bool:
        """True when the scale b is finite and > 0."""
        return bool(np.all(np.isfinite(theta)) and theta[0] > 0)

    def nodes(self, theta):
        """|x - loc| / b ~ Exp(1) on each side: Gauss-Laguerre, exact for the Hessian."""
        z, w = gauss_laguerre_std()
        b = float(theta[0])
        x = np.concatenate([self.loc - b * z[::-1], self.loc + b * z])
        return x[:, None], np.concatenate([w[::-1], w]) / 2

    def sample(self, rng, n, theta):
        """n draws of Laplace(loc, b), shape (n, 1)."""
        return rng.laplace(self.loc, float(theta[0]), size=n)[:, None]

    def cdf(self, x, theta):
        """The Laplace(loc, b) CDF at x."""
        return stats.laplace.cdf(x, loc=self.loc, scale=float(theta[0]))

    def check_data(self, x, w) -> None:
        """Also refuses data all at loc (the scale's maximiser would be b = 0)."""
        super().check_data(x, w)
        if float(w @ np.abs(x[:, 0] - self.loc)) <= 0:
            raise UsageError(f"the data sit at loc = {self.loc:g}: the scale's maximiser is b = 0")

    def initial_guess(self, data) -> np.ndarray:
        """The maximum-likelihood scale E_data|x - loc|, shape (1,)."""
        x, w = data.nodes()
        return np.array([float(w @ np.abs(x[:, 0] - self.loc) / w.sum())])

    def describe(self) -> str:
        """The family, its fixed location and its parameter, in words."""
        return f"Laplace scale family (loc = {self.loc:g} fixed), theta = (b)"
