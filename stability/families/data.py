"""The data distributions of the default settings: a 1D Gaussian mixture and a Gaussian in R^d.

Both follow the data protocol of `stability.datasources` (``nodes``, ``sample``, ``cdf``,
``mean``, ``cov``, ``name``, ``dim``, ``discrete``); they stay here because the checks and
notebooks import them from `stability.families`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from stability.errors import UsageError
from stability.families.quadrature import gauss_hermite_std, gaussian_nodes


@dataclass(frozen=True)
class GaussianMixture1D:
    """p_data = sum_k w_k N(m_k, s_k^2) on R.

    Parameters
    ----------
    weights, means, sds : tuples of floats, each of length K
    """

    weights: tuple
    means: tuple
    sds: tuple
    name: str = "mixture"
    dim: int = 1
    discrete: bool = False

    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature nodes x (K*80, 1) and weights (K*80,) for E_data."""
        z, w = gauss_hermite_std()
        xs = np.concatenate([m + s * z for m, s in zip(self.means, self.sds)])
        ws = np.concatenate([wk * w for wk in self.weights])
        return xs[:, None], ws

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n i.i.d. points, shape (n, 1)."""
        comp = rng.choice(len(self.weights), size=n, p=np.asarray(self.weights))
        x = np.asarray(self.means)[comp] + np.asarray(self.sds)[comp] * rng.standard_normal(n)
        return x[:, None]

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """CDF at points x of any shape."""
        x = np.asarray(x, dtype=float)
        return sum(
            wk * stats.norm.cdf(x, m, s) for wk, m, s in zip(self.weights, self.means, self.sds)
        )

    def pdf(self, x: np.ndarray) -> np.ndarray:
        """Density at points x, flattened to shape (N,)."""
        x = np.asarray(x, dtype=float).reshape(-1)
        return sum(
            wk * stats.norm.pdf(x, m, s) for wk, m, s in zip(self.weights, self.means, self.sds)
        )

    @property
    def mean(self) -> np.ndarray:
        """E[x] = sum_k w_k mu_k, shape (1,)."""
        return np.array([float(np.dot(self.weights, self.means))])

    @property
    def cov(self) -> np.ndarray:
        """Var[x] = sum_k w_k (s_k^2 + mu_k^2) - E[x]^2, shape (1, 1)."""
        m = self.mean[0]
        second = sum(w * (s * s + mu * mu) for w, mu, s in zip(self.weights, self.means, self.sds))
        return np.array([[second - m * m]])

    def describe(self) -> str:
        """The mixture as ``w_1 N(mu_1, s_1^2) + ...``."""
        parts = [f"{w:g} N({m:g}, {s:g}^2)" for w, m, s in zip(self.weights, self.means, self.sds)]
        return " + ".join(parts)


@dataclass(frozen=True)
class GaussianData:
    """p_data = N(mean, cov) in R^d (the well-specified case of the Gaussian family, eps = 0).

    Parameters
    ----------
    mean : array, shape (d,)
    cov : array, shape (d, d)
    """

    mean: np.ndarray
    cov: np.ndarray
    name: str = "gaussian"
    discrete: bool = False

    @property
    def dim(self) -> int:
        """Dimension d of x, from the mean's length."""
        return int(self.mean.shape[0])

    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian quadrature rule of N(mean, cov): nodes (N, d), weights (N,)."""
        return gaussian_nodes(self.mean, self.cov)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n draws mean + L z, L L^T = cov, shape (n, d)."""
        return self.mean + rng.standard_normal((n, self.dim)) @ np.linalg.cholesky(self.cov).T

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """The normal CDF at 1D points x (UsageError in more dimensions)."""
        if self.dim != 1:
            raise UsageError("the CDF is defined here for 1D data only")
        return stats.norm.cdf(x, self.mean[0], math.sqrt(self.cov[0, 0]))

    def describe(self) -> str:
        """The mean and covariance, rounded to 3 digits."""
        return f"N(mean={np.round(self.mean, 3).tolist()}, cov={np.round(self.cov, 3).tolist()})"
