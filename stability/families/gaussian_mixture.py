"""1D Gaussian mixture with a fixed number K of components, all parameters free."""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from stability.errors import UsageError
from stability.families.base import Family, data_points
from stability.families.quadrature import composite_legendre


class GaussianMixtureFamily(Family):
    """p = sum_k pi_k N(mu_k, sigma_k^2), theta = (eta_2..eta_K, mu_1..mu_K, rho_1..rho_K).

    pi = softmax(0, eta_2, ..., eta_K) (component 1's logit fixed at 0 for identifiability)
    and sigma_k = exp(rho_k), so every finite theta is valid. Derivatives in closed form through
    the responsibilities r = softmax(a), a_k = log pi_k + log N(x; mu_k, sigma_k^2), which stay
    finite where the component densities underflow: with g_k = grad a_k and H_k = Hess a_k,
        score = sum_k r_k g_k,   Hessian = sum_k r_k (H_k + (g_k - score)(g_k - score)^T).
    d/dx of the Hessian (for L) is numerical (`Family.hessian_dx`). The maximiser is a local
    one (mixtures have several); it does not exist when a component can shrink onto a data atom.

    Parameters
    ----------
    k : int >= 1
        Number of components.
    """

    derivatives = "given"

    def __init__(self, k: int = 2):
        if int(k) != k or k < 1:
            raise UsageError(f"a Gaussian mixture needs k >= 1 components, got {k!r}")
        self.k = int(k)
        self.name = f"gaussian-mixture(k={self.k})"
        self.param_names = tuple(
            [f"eta{j}" for j in range(2, self.k + 1)]
            + [f"mu{j}" for j in range(1, self.k + 1)]
            + [f"rho{j}" for j in range(1, self.k + 1)]
        )

    def split(self, theta):
        """(pi (K,), mu (K,), sigma (K,)) from theta (3K - 1,)."""
        theta = np.asarray(theta, dtype=float)
        k = self.k
        eta = np.concatenate([[0.0], theta[: k - 1]])
        pi = np.exp(eta - special.logsumexp(eta))
        return pi, theta[k - 1 : 2 * k - 1], np.exp(theta[2 * k - 1 :])

    def _parts(self, x, theta):
        pi, mu, sig = self.split(theta)
        xs = data_points(x)[:, None]
        z = (xs - mu) / sig
        a = np.log(pi) - np.log(sig) - 0.5 * z * z - 0.5 * math.log(2 * math.pi)
        lse = special.logsumexp(a, axis=1)
        r = np.exp(a - lse[:, None])
        return pi, sig, z, r, lse

    def _grads(self, pi, sig, z):
        """g_k for every point and component, shape (N, K, P)."""
        n, k = z.shape
        g = np.zeros((n, k, 3 * k - 1))
        g[:, :, : k - 1] = np.eye(k)[:, 1:] - pi[1:]
        idx = np.arange(k)
        g[:, idx, k - 1 + idx] = z / sig
        g[:, idx, 2 * k - 1 + idx] = z * z - 1.0
        return g

    def logpdf(self, x, theta):
        """log p(x) = logsumexp_k(log pi_k + log N(x; mu_k, sigma_k^2)), shape (N,)."""
        return self._parts(x, theta)[4]

    def score(self, x, theta):
        """sum_k r_k grad a_k with responsibilities r_k, shape (N, 3K - 1)."""
        pi, sig, z, r, _ = self._parts(x, theta)
        return np.einsum("nk,nkp->np", r, self._grads(pi, sig, z))

    def hessian(self, x, theta):
        """sum_k r_k (H_k + (g_k - s)(g_k - s)^T), s the score; shape (N, 3K - 1, 3K - 1)."""
        pi, sig, z, r, _ = self._parts(x, theta)
        k = self.k
        g = self._grads(pi, sig, z)
        # sum_k r_k g_k g_k^T - s s^T written as a covariance: in the tails, where one
        # component takes all the responsibility, the two terms are ~x^4 and cancel.
        c = g - np.einsum("nk,nkp->np", r, g)[:, None, :]
        h = np.einsum("nk,nkp,nkq->npq", r, c, c)
        h[:, : k - 1, : k - 1] -= np.diag(pi[1:]) - np.outer(pi[1:], pi[1:])
        idx = np.arange(k)
        mu_i, rho_i = k - 1 + idx, 2 * k - 1 + idx
        h[:, mu_i, mu_i] -= r / sig**2
        h[:, mu_i, rho_i] -= 2 * r * z / sig
        h[:, rho_i, mu_i] -= 2 * r * z / sig
        h[:, rho_i, rho_i] -= 2 * r * z * z
        return h

    def valid(self, theta) -> bool:
        """True when theta is finite and every log sd has |rho_k| < 30."""
        theta = np.asarray(theta, dtype=float)
        return bool(np.all(np.isfinite(theta)) and np.all(np.abs(theta[2 * self.k - 1 :]) < 30))

    def nodes(self, theta):
        """Composite Gauss-Legendre over mu_k +- 14 sigma_k weighted by the density.

        Gauss-Hermite per component integrates polynomials, not the responsibilities in the
        score (errors ~1e-7 with 80 nodes when components overlap); 200 panels of 8 points reach
        rounding.
        """
        _, mu, sig = self.split(theta)
        edges = np.linspace(float(np.min(mu - 14 * sig)), float(np.max(mu + 14 * sig)), 201)
        x, q = composite_legendre(edges)
        w = q * np.exp(self.logpdf(x, theta))
        return x[:, None], w / w.sum()

    def sample(self, rng, n, theta):
        """n draws: a component k ~ pi, then mu_k + sigma_k z; shape (n, 1)."""
        pi, mu, sig = self.split(theta)
        comp = rng.choice(self.k, size=n, p=pi)
        return (mu[comp] + sig[comp] * rng.standard_normal(n))[:, None]

    def cdf(self, x, theta):
        """F(x) = sum_k pi_k Phi((x - mu_k) / sigma_k)."""
        pi, mu, sig = self.split(theta)
        x = np.asarray(x, dtype=float)
        return sum(p * stats.norm.cdf(x, m, s) for p, m, s in zip(pi, mu, sig))

    def lipschitz_window(self, theta):
        """From the lowest mu_k - 12 sigma_k to the highest mu_k + 12 sigma_k."""
        _, mu, sig = self.split(theta)
        return float(np.min(mu - 12 * sig)), float(np.max(mu + 12 * sig))

    def initial_guess(self, data) -> np.ndarray:
        """Equal weights, means at the data's (j + 1/2)/K quantiles, sds = data sd / K."""
        x, w = data.nodes()
        order = np.argsort(x[:, 0])
        cum = np.cumsum(w[order]) / w.sum()
        qs = (np.arange(self.k) + 0.5) / self.k
        mus = x[order, 0][np.minimum(np.searchsorted(cum, qs), len(cum) - 1)]
        sd = math.sqrt(float(data.cov[0, 0])) / self.k
        return np.concatenate([np.zeros(self.k - 1), mus, np.full(self.k, math.log(sd))])

    def describe(self) -> str:
        """The number of components and the parametrisation, in words."""
        return (
            f"Gaussian mixture with {self.k} components, theta = (logits vs component 1, "
            "means, log sds)"
        )
