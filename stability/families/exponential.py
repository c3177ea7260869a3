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
        r = float(theta[0])
        xs = data_points(x)
        with np.errstate(divide="ignore"):
            return np.where(xs >= 0, math.log(r) - r * xs, -np.inf)

    def score(self, x, theta):
        return (1.0 / float(theta[0]) - data_points(x))[:, None]

    def hessian(self, x, theta):
        n = data_points(x).size
        return np.full((n, 1, 1), -1.0 / float(theta[0]) ** 2)

    def hessian_dx(self, x, theta):
        return np.zeros((data_points(x).size, 1, 1))

    def lipschitz(self, theta) -> float:
        """L = 0: the Hessian does not depend on x."""
        return 0.0

    def valid(self, theta) -> bool:
        return bool(np.all(np.isfinite(theta)) and theta[0] > 0)

    def nodes(self, theta):
        z, w = gauss_laguerre_std()
        return (z / float(theta[0]))[:, None], w

    def sample(self, rng, n, theta):
        return rng.exponential(1.0 / float(theta[0]), size=n)[:, None]

    def cdf(self, x, theta):
        return stats.expon.cdf(x, scale=1.0 / float(theta[0]))

    def check_data(self, x, w) -> None:
        super().check_data(x, w)
        if np.any(x < 0):
            raise UsageError("the exponential family lives on x >= 0: the data have x < 0")
        if float(w @ x[:, 0]) <= 0:
            raise UsageError("the data are all 0: the rate's maximiser is r = inf")

    def initial_guess(self, data) -> np.ndarray:
        x, w = data.nodes()
        return np.array([float(w.sum() / (w @ x[:, 0]))])

    def describe(self) -> str:
        return "exponential Exp(r) on x >= 0, theta = (r) (rate)"
