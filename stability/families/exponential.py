"""Exponential family on x >= 0 with rate r > 0, theta = (r,)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from stability.errors import UsageError
from stability.families.base import Family, data_points
from stability.families.quadrature import gauss_laguerre_std


class ExponentialFamily(Family):
    """Exp(r): log p = log r - r x on x >= 0, theta = (r,).

    score = 1/r - x, Hessian = -1/r^2: independent of x, so L = 0 (Assumption 1) and
    A = B~ for any data; G_lambda's Jacobian at theta* is lambda/(1 + lambda) exactly.
    """

    param_names = ("r",)
    derivatives = "given"
    name = "exponential"

    def logpdf(self, x, theta):
        """log p(x; r) = log r - r x on x >= 0 (-inf for x < 0), shape (N,)."""
        r = float(theta[0])
        xs = data_points(x)
        with np.errstate(divide="ignore"):
            return np.where(xs >= 0, math.log(r) - r * xs, -np.inf)

    def score(self, x, theta):
        """d/dr log p(x; r) = 1/r - x, shape (N, 1)."""
        return (1.0 / float(theta[0]) - data_points(x))[:, None]

    def hessian(self, x, theta):
        """d^2/dr^2 log p(x; r) = -1/r^2 at every x, shape (N, 1, 1)."""
        n = data_points(x).size
        return np.full((n, 1, 1), -1.0 / float(theta[0]) ** 2)

    def hessian_dx(self, x, theta):
        """d/dx of the Hessian: 0, since -1/r^2 does not depend on x; shape (N, 1, 1)."""
        return np.zeros((data_points(x).size, 1, 1))

    def lipschitz(self, theta) -> float:
        """L = 0: the Hessian does not depend on x."""
        return 0.0

    def valid(self, theta) -> bool:
        """True when the rate r is finite and > 0."""
        return bool(np.all(np.isfinite(theta)) and theta[0] > 0)

    def nodes(self, theta):
        """Gauss-Laguerre nodes z / r (N, 1) and weights (N,) for E over Exp(r)."""
        z, w = gauss_laguerre_std()
        return (z / float(theta[0]))[:, None], w

    def sample(self, rng, n, theta):
        """n draws of Exp(r), shape (n, 1)."""
        return rng.exponential(1.0 / float(theta[0]), size=n)[:, None]

    def cdf(self, x, theta):
        """F(x; r) = 1 - exp(-r x) for x >= 0, 0 below."""
        return stats.expon.cdf(x, scale=1.0 / float(theta[0]))

    def check_data(self, x, w) -> None:
        """Also refuses data with x < 0 or all at 0 (the rate's maximiser would be inf)."""
        super().check_data(x, w)
        if np.any(x < 0):
            raise UsageError("the exponential family lives on x >= 0: the data have x < 0")
        if float(w @ x[:, 0]) <= 0:
            raise UsageError("the data are all 0: the rate's maximiser is r = inf")

    def initial_guess(self, data) -> np.ndarray:
        """The maximum-likelihood rate 1 / E_data[x], shape (1,)."""
        x, w = data.nodes()
        return np.array([float(w.sum() / (w @ x[:, 0]))])

    def describe(self) -> str:
        """The family and its parameter, in words."""
        return "exponential Exp(r) on x >= 0, theta = (r) (rate)"
