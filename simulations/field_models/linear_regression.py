"""Linear regression retrained on its own labels, batched over runs (Gerstgrasser et al. 2024,
"Is model collapse inevitable? Breaking the curse of recursion by accumulating real and
synthetic data"; the setting of Dohmatob et al. 2024, "Model collapse demystified").

Data points are rows z = (x, y) of R^(d+1): covariates x in R^d, label y. The model is ordinary
least squares without intercept, w = (X^T X)^-1 X^T y. Its samples keep the design X it was
first fitted on (the real covariates: fixed design) and draw new labels y = X w + sigma eps:
k samples per run are the design's rows in order, repeated if k > N. With sigma the data's noise
and the real labels y = X w* + sigma eps, the error e_t = w_t - w* has, over the label noise,

- replace (mix, lam = inf): E||e_t||^2 = (t + 1) sigma^2 tr((X^T X)^-1)  (grows linearly),
- accumulate, lam = 1: E||e_t||^2 = sigma^2 tr((X^T X)^-1) sum_{j=1}^{t+1} 1/j^2 (bounded by
  pi^2/6 times the error of t = 0),

Gerstgrasser et al.'s Theorems 1 and 2. The metric is the test error: the mean squared error of
x^T w against held-out real labels, whose expectation is sigma^2 + E||e_t||^2 for x ~ N(0, I).
"""

from __future__ import annotations

import math

import numpy as np

from stability.errors import UsageError
from stability.loop import PointSet


class LinearRegression:
    """Least squares on (x, y) rows, synthetic labels on the fixed design (fit / sample / state).

    Parameters
    ----------
    noise : float or "fitted"
        The standard deviation of synthetic labels: a number (the data's known sigma, the
        setting of the closed forms) or "fitted", the residual standard deviation
        sqrt(RSS / (N - d)) of each fit.
    """

    wasserstein = False  # the metric is the test error

    def __init__(self, noise="fitted"):
        if noise != "fitted" and not (math.isfinite(float(noise)) and float(noise) >= 0):
            raise UsageError(f"linear-regression: noise must be >= 0 or 'fitted', got {noise!r}")
        self.noise = noise
        self.design = self.w = self.sigma = None

    def fit(self, data) -> None:
        """OLS per run on rows of shape (R, N, d + 1); the first fit's covariates are the design."""
        z = np.asarray(data.x, dtype=float)
        x, y = z[:, :, :-1], z[:, :, -1]
        r, n, d = x.shape
        if n <= d:
            raise UsageError(f"linear-regression: {n} rows cannot determine {d} coefficients")
        gram = np.einsum("rni,rnj->rij", x, x)
        self.w = np.linalg.solve(gram, np.einsum("rni,rn->ri", x, y)[:, :, None])[:, :, 0]
        resid = y - np.einsum("rni,ri->rn", x, self.w)
        fitted = np.sqrt(np.sum(resid**2, axis=1) / (n - d))
        self.sigma = fitted if self.noise == "fitted" else np.full(r, float(self.noise))
        if self.design is None:
            self.design = x.copy()

    def sample(self, k: int, rng: np.random.Generator) -> PointSet:
        """k rows per run, shape (R, k, d + 1): design rows in order, labels X w + sigma eps."""
        n = self.design.shape[1]
        x = self.design[:, np.arange(k) % n]
        y = np.einsum("rki,ri->rk", x, self.w) + self.sigma[:, None] * rng.standard_normal(
            x.shape[:2]
        )
        return PointSet(np.concatenate([x, y[:, :, None]], axis=2))

    def state(self) -> dict:
        """w (R, d) and the label noise sigma (R,)."""
        return {"w": self.w, "sigma": self.sigma}

    def metrics(self, heldout) -> dict:
        """test_mse: mean of (x^T w - y)^2 over held-out real rows (R,)."""
        z = np.asarray(heldout.x, dtype=float)
        pred = np.einsum("rni,ri->rn", z[:, :, :-1], self.w)
        return {"test_mse": np.mean((pred - z[:, :, -1]) ** 2, axis=1)}


class LinearData:
    """Real data: x ~ N(0, I_d), y = x^T w* + sigma eps (a data plugin, ``linear``).

    Parameters
    ----------
    dim : d, the number of covariates
    sigma : the label noise
    seed : draws w* ~ N(0, I / d) (fixed, not the simulation's seed)
    """

    def __init__(self, dim=10, sigma=1.0, seed=0):
        if int(dim) < 1 or not float(sigma) >= 0:
            raise UsageError("linear: dim must be >= 1 and sigma >= 0")
        self.dim, self.sigma = int(dim), float(sigma)
        self.w_star = np.random.default_rng(int(seed)).standard_normal(self.dim) / math.sqrt(
            self.dim
        )

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n rows (x, y), shape (n, d + 1)."""
        x = rng.standard_normal((n, self.dim))
        y = x @ self.w_star + self.sigma * rng.standard_normal(n)
        return np.concatenate([x, y[:, None]], axis=1)

    def describe(self) -> str:
        """The dimension and the noise sigma, in words."""
        return f"linear model in R^{self.dim}, noise sigma = {self.sigma:g}"
