"""The Gaussian family of Proposition 2: N(mu, Sigma) in R^d, theta = (mu, svec(Sigma^-1))."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from stability import gaussian
from stability.errors import UsageError
from stability.families.base import Family
from stability.families.quadrature import gaussian_nodes
from stability.linalg import inv_spd, smat, svec


class GaussianFamily(Family):
    """N(mu, Sigma) in R^d with theta = (mu, svec(Sigma^-1)) (Proposition 2's parametrisation).

    Score and Hessian in closed form (`stability.gaussian`); the Hessian is linear in x with
    Lipschitz constant exactly 1 in these coordinates.

    Parameters
    ----------
    d : int
        Dimension of x.
    """

    derivatives = "given"

    def __init__(self, d: int = 1):
        self.dim = int(d)
        self.name = f"gaussian-{self.dim}d"
        self.param_names = tuple(
            [f"mu{i}" for i in range(self.dim)]
            + [f"P{i}{j}" for j in range(self.dim) for i in range(j, self.dim)]
        )

    def split(self, theta):
        """(mu (d,), precision (d, d)) from theta (p,)."""
        theta = np.asarray(theta, dtype=float)
        return theta[: self.dim], smat(theta[self.dim :])

    def valid(self, theta) -> bool:
        """True when theta is finite and its precision Sigma^-1 is positive definite."""
        if not np.all(np.isfinite(theta)):
            return False
        _, prec = self.split(theta)
        return bool(np.linalg.eigvalsh(prec)[0] > 0)

    def logpdf(self, x, theta):
        """log N(x; mu, Sigma) = (log det P - (x - mu)^T P (x - mu) - d log 2 pi) / 2.

        P = Sigma^-1; x (N, d), returns (N,).
        """
        mu, prec = self.split(theta)
        v = np.asarray(x, dtype=float).reshape(-1, self.dim) - mu
        _, logdet = np.linalg.slogdet(prec)
        quad = np.einsum("ni,ij,nj->n", v, prec, v)
        return 0.5 * logdet - 0.5 * quad - 0.5 * self.dim * math.log(2 * math.pi)

    def score(self, x, theta):
        """Gradient in theta = (mu, svec(P)) of log N(x; mu, P^-1), shape (N, p).

        From stability.gaussian.score.
        """
        mu, prec = self.split(theta)
        return gaussian.score(np.asarray(x, dtype=float).reshape(-1, self.dim), mu, prec, "svec")

    def hessian(self, x, theta):
        """Hessian in theta = (mu, svec(P)), shape (N, p, p).

        From stability.gaussian.hessian (Proposition 2).
        """
        mu, prec = self.split(theta)
        return gaussian.hessian(np.asarray(x, dtype=float).reshape(-1, self.dim), mu, prec, "svec")

    def nodes(self, theta):
        """Gaussian quadrature rule of N(mu, Sigma): nodes (N, d), weights (N,)."""
        mu, prec = self.split(theta)
        return gaussian_nodes(mu, inv_spd(prec))

    def sample(self, rng, n, theta):
        """n draws mu + L z, L L^T = Sigma, shape (n, d)."""
        mu, prec = self.split(theta)
        chol = np.linalg.cholesky(inv_spd(prec))
        return mu + rng.standard_normal((n, self.dim)) @ chol.T

    def cdf(self, x, theta):
        """The 1D normal CDF Phi((x - mu) sqrt(P)) (first coordinate only)."""
        mu, prec = self.split(theta)
        return stats.norm.cdf(x, mu[0], 1.0 / math.sqrt(prec[0, 0]))

    def lipschitz(self, theta) -> float:
        """L of Assumption 1 in svec coordinates: exactly 1 (see gaussian.lipschitz_constant)."""
        return gaussian.lipschitz_constant(self.dim, "svec")

    def check_data(self, x, w) -> None:
        """Also refuses data with a singular covariance (no likelihood maximiser)."""
        super().check_data(x, w)
        mean = w @ x / w.sum()
        cov = np.einsum("n,ni,nj->ij", w, x - mean, x - mean) / w.sum()
        if np.linalg.eigvalsh(cov)[0] <= 1e-14 * max(1.0, float(np.abs(cov).max())):
            raise UsageError(
                "the data covariance is singular: the Gaussian likelihood has no maximiser"
            )

    def initial_guess(self, data) -> np.ndarray:
        """The maximum-likelihood (mean, svec(cov^-1)) of the data, shape (p,)."""
        x, w = data.nodes()
        mean = w @ x
        cov = np.einsum("n,ni,nj->ij", w, x - mean, x - mean)
        return np.concatenate([mean, svec(inv_spd(cov))])

    def describe(self) -> str:
        """The family, its dimension and its parametrisation, in words."""
        return f"Gaussian N(mu, Sigma) in R^{self.dim}, theta = (mu, svec(Sigma^-1))"
