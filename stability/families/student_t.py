"""Student-t location-scale family with nu degrees of freedom, theta = (m, s), s > 0."""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from stability.errors import UsageError
from stability.families.base import robust_location_scale
from stability.families.quadrature import gauss_legendre
from stability.families.symbolic import SympyFamily1D


class StudentTFamily(SympyFamily1D):
    """Location-scale Student-t, theta = (m, s); derivatives by sympy. Hessian not linear in x.

    log p = log Gamma((nu+1)/2) - log Gamma(nu/2) - log(pi nu)/2 - log s
            - (nu+1)/2 log(1 + (x - m)^2 / (nu s^2)).

    Parameters
    ----------
    nu : float > 0
        Degrees of freedom.
    quad_nodes : int
        Gauss-Legendre nodes of the rule for E_theta (after x = m + s sqrt(nu) tan(phi)).
    """

    param_names = ("m", "s")

    def __init__(self, nu: float = 4.0, quad_nodes: int = 400):
        if not (math.isfinite(float(nu)) and float(nu) > 0):
            raise UsageError(f"student-t needs nu > 0, got {nu!r}")
        self.nu = float(nu)
        self.name = f"student-t(nu={self.nu:g})"
        self.quad_nodes = int(quad_nodes)

    def logpdf_expr(self, x, params):
        """sympy log p(x; m, s) of the Student-t location-scale density (nu fixed)."""
        import sympy as sp

        m, s = params
        nu = sp.nsimplify(self.nu)
        const = sp.loggamma((nu + 1) / 2) - sp.loggamma(nu / 2) - sp.log(sp.pi * nu) / 2
        return const - sp.log(s) - (nu + 1) / 2 * sp.log(1 + (x - m) ** 2 / (nu * s**2))

    def valid(self, theta) -> bool:
        """True when theta is finite and the scale s > 0."""
        return bool(np.all(np.isfinite(theta)) and theta[1] > 0)

    def nodes(self, theta):
        """E_theta by x = m + s sqrt(nu) tan(phi): the t density becomes c cos^(nu-1)(phi) dphi."""
        m, s = theta
        u, w = gauss_legendre(self.quad_nodes)
        phi = 0.5 * math.pi * u
        nu = self.nu
        c = math.exp(special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2)) / math.sqrt(math.pi)
        weights = 0.5 * math.pi * w * c * np.cos(phi) ** (nu - 1)
        return (m + s * math.sqrt(nu) * np.tan(phi))[:, None], weights

    def sample(self, rng, n, theta):
        """n draws m + s T, T ~ t_nu, shape (n, 1)."""
        return (theta[0] + theta[1] * rng.standard_t(self.nu, size=n))[:, None]

    def cdf(self, x, theta):
        """The t_nu CDF of (x - m) / s."""
        return stats.t.cdf(x, self.nu, loc=theta[0], scale=theta[1])

    def lipschitz_window(self, theta):
        """m +- 60 s, where d/dx of the Hessian is largest."""
        # d/dx Hessian decays like |x - m|^-1 and peaks within a few scales of m.
        return float(theta[0] - 60 * theta[1]), float(theta[0] + 60 * theta[1])

    def check_data(self, x, w) -> None:
        """Also refuses data at a single point (the scale's maximiser would be s = 0)."""
        super().check_data(x, w)
        if np.ptp(x[w > 0, 0]) <= 0:
            raise UsageError("the data are a single point: the scale's maximiser is s = 0")

    def initial_guess(self, data) -> np.ndarray:
        """Median and a robust scale: the data may have no variance (Cauchy)."""
        return np.array(robust_location_scale(data))

    def describe(self) -> str:
        """The family and its nu, in words."""
        return f"Student-t location-scale (nu = {self.nu:g}), theta = (m, s)"
