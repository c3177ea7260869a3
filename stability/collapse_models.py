"""Small models of the model-collapse literature, as plug-ins of Algorithm 1 (`stability.loop`).

Each follows the loop's protocol (fit / sample / state) and is vectorised over R independent
runs: data are `stability.loop.PointSet` arrays of shape (R, N, d). They are the models that
the results checked in `stability.checks.literature` are about: the Gaussian refit by its
sample moments (Shumailov et al. 2023; Alemohammad et al. 2023; Gerstgrasser et al. 2024), the
Bernoulli refit by its frequency (Suresh et al. 2024), least squares on labels from the
previous model (Dohmatob et al. 2024; Gerstgrasser et al. 2024) and a weighted mean of fresh
real and synthetic data (He et al. 2025).
"""

from __future__ import annotations

import numpy as np

from stability.loop import PointSet


class GaussianMLE:
    """N(mu, Sigma) refit by the sample mean and covariance with divisor N - ddof, per run.

    Data: PointSet x (R, N, d). ``cov`` fixed (not refit) gives the known-covariance model.
    """

    def __init__(self, ddof: int = 1, cov=None):
        self.ddof = ddof
        self.fixed_cov = None if cov is None else np.asarray(cov, dtype=float)

    def fit(self, data: PointSet) -> None:
        """Per-run mean mu (R, d) and covariance Sigma (R, d, d) of x (R, N, d).

        The covariance divides by N - ddof; a fixed ``cov`` is broadcast instead.
        """
        x = data.x
        self.mu = x.mean(axis=1)
        if self.fixed_cov is not None:
            self.cov = np.broadcast_to(self.fixed_cov, (x.shape[0], *self.fixed_cov.shape))
            return
        c = x - self.mu[:, None, :]
        self.cov = np.matmul(c.transpose(0, 2, 1), c) / (x.shape[1] - self.ddof)

    def sample(self, k: int, rng) -> PointSet:
        """k draws mu + chol(Sigma) z, z ~ N(0, I), per run: PointSet (R, k, d)."""
        r, d = self.mu.shape
        chol = np.linalg.cholesky(self.cov)
        z = rng.standard_normal((r, k, d))
        return PointSet(self.mu[:, None, :] + np.matmul(z, chol.transpose(0, 2, 1)))

    def state(self) -> dict:
        """The fitted ``mu`` (R, d) and ``cov`` (R, d, d)."""
        return {"mu": self.mu, "cov": self.cov}


class BernoulliMLE:
    """P(x = 1) refit by the empirical frequency, per run. Data: PointSet of 0/1, (R, N, 1)."""

    def fit(self, data: PointSet) -> None:
        """p = mean of the 0/1 data (R, N, 1), per run: shape (R,)."""
        self.p = data.x[:, :, 0].mean(axis=1)

    def sample(self, k: int, rng) -> PointSet:
        """k Bernoulli(p) draws per run: PointSet of 0.0/1.0, (R, k, 1)."""
        return PointSet((rng.random((self.p.size, k, 1)) < self.p[:, None, None]).astype(float))

    def state(self) -> dict:
        """The fitted ``p``, shape (R,)."""
        return {"p": self.p}


class LinearRegressionOLS:
    """y = x^T w + sigma noise, w refit by least squares; data PointSet (R, N, d + 1) = (x, y).

    sample(k) labels k design points with the fitted w and fresh noise: new Gaussian designs
    (``fixed_design=False``, Dohmatob et al.) or the first rows of the design of the first fit
    (``fixed_design=True``, Gerstgrasser et al.).
    """

    def __init__(self, sigma: float = 1.0, fixed_design: bool = False):
        self.sigma = sigma
        self.fixed_design = fixed_design
        self.design = None

    def fit(self, data: PointSet) -> None:
        """w = (X^T X)^{-1} X^T y per run, shape (R, d), from data (R, N, d + 1) = (X, y)."""
        x, y = data.x[:, :, :-1], data.x[:, :, -1]
        xt = x.transpose(0, 2, 1)
        self.w = np.linalg.solve(np.matmul(xt, x), np.matmul(xt, y[:, :, None]))[:, :, 0]
        if self.design is None:
            self.design = x

    def sample(self, k: int, rng) -> PointSet:
        """k labelled points (x, x^T w + sigma z), z ~ N(0, 1): PointSet (R, k, d + 1)."""
        r, d = self.w.shape
        x = self.design[:, :k] if self.fixed_design else rng.standard_normal((r, k, d))
        y = np.matmul(x, self.w[:, :, None])[:, :, 0] + self.sigma * rng.standard_normal((r, k))
        return PointSet(np.concatenate([x, y[:, :, None]], axis=2))

    def state(self) -> dict:
        """The fitted ``w``, shape (R, d)."""
        return {"w": self.w}


class WeightedMean:
    """He et al.'s weighted estimator of a Gaussian mean with known sigma.

    Data: PointSet (R, N, 2) of (value, 1 for real / 0 for synthetic). The fit is
    w * mean(real) + (1 - w) * mean(synthetic) (the real mean alone when there is no synthetic
    point, at t = 0); samples are N(mu, sigma^2), tagged synthetic.
    """

    def __init__(self, weight: float, sigma: float = 1.0):
        self.weight = weight
        self.sigma = sigma

    def fit(self, data: PointSet) -> None:
        """mu = w mean(real) + (1 - w) mean(synthetic) per run, shape (R,), from data (R, N, 2)."""
        v, real = data.x[:, :, 0], data.x[:, :, 1]
        n_real, n_syn = real.sum(axis=1), (1 - real).sum(axis=1)
        m_real = (v * real).sum(axis=1) / n_real
        with np.errstate(invalid="ignore", divide="ignore"):
            m_syn = (v * (1 - real)).sum(axis=1) / n_syn
        self.mu = np.where(n_syn > 0, self.weight * m_real + (1 - self.weight) * m_syn, m_real)

    def sample(self, k: int, rng) -> PointSet:
        """k draws N(mu, sigma^2) per run, tagged 0 (synthetic): PointSet (R, k, 2)."""
        v = self.mu[:, None] + self.sigma * rng.standard_normal((self.mu.size, k))
        return PointSet(np.stack([v, np.zeros_like(v)], axis=2))

    def state(self) -> dict:
        """The fitted ``mu``, shape (R,)."""
        return {"mu": self.mu}
