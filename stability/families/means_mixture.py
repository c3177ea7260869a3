"""Equal-weight two-component 1D Gaussian mixture with fixed sigma, theta = (mu_1, mu_2)."""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from stability.families.quadrature import composite_legendre
from stability.families.symbolic import SympyFamily1D


class MeansMixtureFamily(SympyFamily1D):
    """1/2 N(mu_1, sigma^2) + 1/2 N(mu_2, sigma^2) with sigma fixed, theta = (mu_1, mu_2).

    Derivatives are written through the responsibilities r_k = softmax(a)_k,
    a_k = -(x - mu_k)^2 / (2 sigma^2), which stay finite where the component densities underflow;
    with u_k = (x - mu_k)/sigma^2:
        d log p / d mu_k          = r_k u_k
        d^2 log p / d mu_k d mu_l = r_k (delta_kl - r_l) u_k u_l - delta_kl r_k / sigma^2.
    The sympy expression of the density (``logpdf_expr``) is kept for the tests, which compare
    these formulas with symbolic differentiation.
    """

    param_names = ("mu1", "mu2")
    derivatives = "given"

    def __init__(self, sigma: float = 0.7):
        self.sigma = float(sigma)
        self.name = f"mixture(sigma={sigma:g})"

    def logpdf_expr(self, x, params):
        """sympy log(1/2 N(x; m1, sigma^2) + 1/2 N(x; m2, sigma^2)) in x and params = (m1, m2)."""
        import sympy as sp

        m1, m2 = params
        s = sp.nsimplify(self.sigma)
        comp = lambda m: sp.exp(-((x - m) ** 2) / (2 * s**2)) / (s * sp.sqrt(2 * sp.pi))  # noqa: E731
        return sp.log((comp(m1) + comp(m2)) / 2)

    def _parts(self, x, theta):
        xs = np.asarray(x, dtype=float).reshape(-1, 1)
        mus = np.asarray(theta, dtype=float).reshape(1, 2)
        s2 = self.sigma**2
        a = -((xs - mus) ** 2) / (2 * s2)
        r = np.exp(a - special.logsumexp(a, axis=1, keepdims=True))
        u = (xs - mus) / s2
        return xs[:, 0], a, r, u, s2

    def logpdf(self, x, theta):
        """log p(x; m1, m2) = logsumexp_k(-(x - m_k)^2 / (2 sigma^2)) - log(2 sigma sqrt(2 pi)).

        Shape (N,).
        """
        _, a, _, _, _ = self._parts(x, theta)
        return special.logsumexp(a, axis=1) - math.log(2 * self.sigma * math.sqrt(2 * math.pi))

    def score(self, x, theta):
        """d/dm_k log p = r_k (x - m_k) / sigma^2 with responsibilities r_k, shape (N, 2)."""
        _, _, r, u, _ = self._parts(x, theta)
        return r * u

    def hessian(self, x, theta):
        """d^2 log p / dm_k dm_l = r_k (u_k^2 - 1/sigma^2) 1[k = l] - r_k u_k r_l u_l.

        u_k = (x - m_k) / sigma^2, r_k the responsibilities; shape (N, 2, 2).
        """
        _, _, r, u, s2 = self._parts(x, theta)
        ru = r * u
        h = -np.einsum("nk,nl->nkl", ru, ru)
        idx = np.arange(2)
        h[:, idx, idx] += r * u * u - r / s2
        return h

    def hessian_dx(self, x, theta):
        """d/dx of the closed-form Hessian, shape (N, 2, 2)."""
        # d r_k/dx = r_k (ubar - u_k), ubar = sum_j r_j u_j;  d u_k/dx = 1/sigma^2.
        _, _, r, u, s2 = self._parts(x, theta)
        ubar = np.sum(r * u, axis=1, keepdims=True)
        dr = r * (ubar - u)
        du = 1.0 / s2
        d_ru = dr * u + r * du
        out = -(np.einsum("nk,nl->nkl", d_ru, r * u) + np.einsum("nk,nl->nkl", r * u, d_ru))
        idx = np.arange(2)
        out[:, idx, idx] += dr * u * u + 2 * r * u * du - dr / s2
        return out

    def valid(self, theta) -> bool:
        """True when both means are finite."""
        return bool(np.all(np.isfinite(theta)))

    def nodes(self, theta):
        """Composite Gauss-Legendre over mu_k +- 14 sigma weighted by the density.

        Gauss-Hermite per component (80 nodes) integrates polynomials, not the
        responsibilities in the score: E_theta[score] was off by up to 2e-7 when the
        components overlap; 200 panels of 8 points reach rounding.
        """
        lo = float(min(theta)) - 14 * self.sigma
        hi = float(max(theta)) + 14 * self.sigma
        x, q = composite_legendre(np.linspace(lo, hi, 201))
        w = q * np.exp(self.logpdf(x, theta))
        return x[:, None], w / w.sum()

    def sample(self, rng, n, theta):
        """n draws: a fair coin picks m1 or m2, plus sigma z; shape (n, 1)."""
        comp = rng.integers(0, 2, size=n)
        return (np.asarray(theta)[comp] + self.sigma * rng.standard_normal(n))[:, None]

    def cdf(self, x, theta):
        """F(x) = (Phi((x - m1)/sigma) + Phi((x - m2)/sigma)) / 2."""
        return 0.5 * (
            stats.norm.cdf(x, theta[0], self.sigma) + stats.norm.cdf(x, theta[1], self.sigma)
        )

    def lipschitz_window(self, theta):
        """Interval (lo, hi) around both means, 40 sigma wide and more when they are close."""
        # r_k (1 - r_k) decays like exp(-|mu_1 - mu_2| |x - mid| / sigma^2) outside the means,
        # where the Hessian tends to diag(-1/sigma^2); a wide window costs nothing here.
        spread = abs(float(theta[1] - theta[0]))
        pad = 40 * self.sigma + 40 * self.sigma**2 / max(spread, 1e-3)
        return float(min(theta)) - pad, float(max(theta)) + pad

    def initial_guess(self, data) -> np.ndarray:
        """(mean - sd, mean + sd) of the data, shape (2,)."""
        m = float(data.mean[0])
        s = math.sqrt(float(data.cov[0, 0]))
        return np.array([m - s, m + s])

    def describe(self) -> str:
        """The mixture and its fixed sigma, in words."""
        return f"two-component mixture 1/2 N(mu1, {self.sigma:g}^2) + 1/2 N(mu2, {self.sigma:g}^2)"
