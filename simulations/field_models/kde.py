"""Gaussian kernel density estimation, batched over runs (Kazdan et al. 2024, "Collapse or
thrive? Perils and promises of synthetic data in a self-generating world").

A KDE fitted on N points x_1..x_N of R^d is the mixture (1/N) sum_i N(x_i, H): its samples are
a uniformly chosen point plus N(0, H) noise. Its mean is the points' mean and its covariance is
the points' covariance (divisor N) plus H, so refitting on its own samples adds H to the
variance each generation while the points' scatter shrinks by (N - 1)/N in expectation:
E[V_{t+1}] = (1 - 1/N) E[V_t] + H (fully synthetic). The kernel covariance H comes from a rule:

- a number h: H = h^2 I;
- ``"scott"``: H = f^2 S, f = N^(-1/(d+4)) (Scott 1992);
- ``"silverman"``: H = f^2 S, f = (N (d + 2) / 4)^(-1/(d+4)) (Silverman 1986),

with S the points' unbiased covariance (scipy.stats.gaussian_kde's conventions).
"""

from __future__ import annotations

import math

import numpy as np

from stability.errors import UsageError
from stability.loop import PointSet

RULES = ("scott", "silverman")


class KDE:
    """A Gaussian KDE per run (fit / sample / state), batched over R runs.

    Parameters
    ----------
    bandwidth : float or str
        A fixed bandwidth h > 0 (kernel covariance h^2 I), or a rule of `RULES`.
    """

    def __init__(self, bandwidth="silverman"):
        if isinstance(bandwidth, str):
            if bandwidth not in RULES:
                raise UsageError(f"kde: bandwidth must be a number > 0 or one of {RULES}")
        elif not (math.isfinite(float(bandwidth)) and float(bandwidth) > 0):
            raise UsageError(f"kde: bandwidth must be > 0, got {bandwidth!r}")
        self.bandwidth = bandwidth
        self.points: np.ndarray | None = None  # (R, N, d)
        self.kernel: np.ndarray | None = None  # (R, d, d)

    def kernel_covariance(self, x: np.ndarray) -> np.ndarray:
        """H for points x of shape (R, N, d): (R, d, d)."""
        r, n, d = x.shape
        if not isinstance(self.bandwidth, str):
            return np.broadcast_to(float(self.bandwidth) ** 2 * np.eye(d), (r, d, d)).copy()
        xc = x - x.mean(axis=1, keepdims=True)
        cov = np.einsum("rni,rnj->rij", xc, xc) / (n - 1)
        if self.bandwidth == "scott":
            factor = n ** (-1.0 / (d + 4))
        else:
            factor = (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
        return factor**2 * cov

    def fit(self, data) -> None:
        """Keep the points, shape (R, N, d), and compute each run's kernel covariance."""
        x = np.asarray(data.x, dtype=float)
        if x.shape[1] < 2:
            raise UsageError(f"kde: cannot fit on {x.shape[1]} point(s) per run")
        self.points = x.copy()
        self.kernel = self.kernel_covariance(x)

    def sample(self, k: int, rng: np.random.Generator) -> PointSet:
        """k samples per run: a uniform point plus N(0, H) noise, shape (R, k, d)."""
        r, n, d = self.points.shape
        idx = rng.integers(0, n, size=(r, k))
        centres = np.take_along_axis(self.points, idx[:, :, None], axis=1)
        # eigh, not Cholesky: a rule's H is singular when a run's points have collapsed.
        w, v = np.linalg.eigh(self.kernel)
        root = v * np.sqrt(np.clip(w, 0.0, None))[:, None, :]
        return PointSet(centres + np.einsum("rkj,rij->rki", rng.standard_normal((r, k, d)), root))

    def state(self) -> dict:
        """The KDE's mean (R, d), covariance (R, d, d) and bandwidth sqrt(tr H / d) (R,)."""
        x = self.points
        mean = x.mean(axis=1)
        xc = x - mean[:, None, :]
        cov = np.einsum("rni,rnj->rij", xc, xc) / x.shape[1] + self.kernel
        h = np.sqrt(np.trace(self.kernel, axis1=1, axis2=2) / x.shape[2])
        return {"mean": mean, "cov": cov, "bandwidth": h}

    def metrics(self, heldout) -> dict:
        """tr of the KDE's covariance (R,): the variance that grows by tr H per generation."""
        return {"trace_cov": np.trace(self.state()["cov"], axis1=1, axis2=2)}
