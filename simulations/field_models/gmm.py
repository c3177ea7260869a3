"""A Gaussian mixture fitted by EM, batched over runs (Shumailov et al. 2023, "The curse of
recursion: training on generated data makes models forget", their GMM experiment).

The model is p(x) = sum_k w_k N(x; mu_k, Sigma_k). Expectation-maximisation (Dempster, Laird
and Rubin 1977) alternates responsibilities r_nk = w_k N(x_n; mu_k, Sigma_k) / p(x_n) and the
weighted maximum-likelihood update w_k = N_k / N, mu_k = sum_n r_nk x_n / N_k,
Sigma_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T / N_k + reg I (N_k = sum_n r_nk), until the mean
log-likelihood improves by less than `tol`. Each run stops on its own (a converged run is frozen
while the others continue), so a run's fit does not depend on the other runs of its batch.

The first fit starts from a deterministic k-means (farthest-point seeds, then Lloyd steps);
later fits fine-tune from the current parameters (warm start), as Algorithm 1 fine-tunes.
"""

from __future__ import annotations

import math

import numpy as np

from stability.errors import UsageError, check_n
from stability.loop import PointSet


def _log_components(x, weights, means, covs):
    """log w_k + log N(x_n; mu_k, Sigma_k), shape (R, N, K), for x (R, N, d)."""
    d = x.shape[2]
    chol = np.linalg.cholesky(covs)  # (R, K, d, d)
    inv = np.linalg.inv(chol)
    diff = x[:, :, None, :] - means[:, None, :, :]  # (R, N, K, d)
    z = np.einsum("rkij,rnkj->rnki", inv, diff)
    logdet = 2 * np.log(np.diagonal(chol, axis1=2, axis2=3)).sum(axis=2)  # (R, K)
    log_w = np.log(np.maximum(weights, 1e-300))
    return log_w[:, None, :] - 0.5 * (
        np.sum(z * z, axis=3) + logdet[:, None, :] + d * math.log(2 * math.pi)
    )


def _logsumexp(a, axis):
    top = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(a - top), axis=axis))


class GaussianMixture:
    """K-component Gaussian mixture fitted by EM (fit / sample / state / metrics), batched.

    Parameters
    ----------
    components : K
    em_steps : maximum EM iterations per fit
    tol : stop a run when its mean log-likelihood improves by less than this
    reg : added to every covariance's diagonal (keeps collapsing components invertible)
    warm_start : fine-tune from the current parameters (False: k-means start at every fit)
    """

    def __init__(self, components=3, em_steps=200, tol=1e-8, reg=1e-6, warm_start=True):
        check_n(components, "gmm: components", minimum=1)
        check_n(em_steps, "gmm: em_steps", minimum=1)
        if not (float(reg) >= 0 and float(tol) >= 0):
            raise UsageError("gmm: reg and tol must be >= 0")
        self.k, self.em_steps = int(components), int(em_steps)
        self.tol, self.reg, self.warm_start = float(tol), float(reg), bool(warm_start)
        self.weights = self.means = self.covs = None  # (R, K), (R, K, d), (R, K, d, d)

    def _m_step(self, x, resp, active):
        nk = resp.sum(axis=1)  # (R, K)
        alive = nk > 1e-10 * x.shape[1]
        safe = np.maximum(nk, 1e-300)
        means = np.einsum("rnk,rnd->rkd", resp, x) / safe[:, :, None]
        diff = x[:, :, None, :] - means[:, None, :, :]
        covs = np.einsum("rnk,rnki,rnkj->rkij", resp, diff, diff) / safe[:, :, None, None]
        covs = covs + self.reg * np.eye(x.shape[2])
        # A component no point belongs to keeps its parameters (its weight is ~0).
        if self.means is not None:
            keep = ~alive
            means[keep], covs[keep] = self.means[keep], self.covs[keep]
            upd = active[:, None]
            self.weights = np.where(upd, nk / x.shape[1], self.weights)
            self.means = np.where(upd[:, :, None], means, self.means)
            self.covs = np.where(upd[:, :, None, None], covs, self.covs)
        else:
            self.weights, self.means, self.covs = nk / x.shape[1], means, covs

    def _kmeans_start(self, x, lloyd_steps=20):
        r, n, d = x.shape
        k = min(self.k, n)
        # Farthest-point seeds: the point farthest from the mean, then the point farthest
        # from the seeds so far (deterministic).
        dist = np.sum((x - x.mean(axis=1, keepdims=True)) ** 2, axis=2)
        seeds = [np.argmax(dist, axis=1)]
        near = np.full((r, n), np.inf)
        for _ in range(1, k):
            c = np.take_along_axis(x, seeds[-1][:, None, None], axis=1)
            near = np.minimum(near, np.sum((x - c) ** 2, axis=2))
            seeds.append(np.argmax(near, axis=1))
        centres = np.take_along_axis(x, np.stack(seeds, axis=1)[:, :, None], axis=1)
        for _ in range(lloyd_steps):
            label = np.argmin(np.sum((x[:, :, None] - centres[:, None]) ** 2, axis=3), axis=2)
            onehot = (label[:, :, None] == np.arange(k)).astype(float)
            count = onehot.sum(axis=1)
            sums = np.einsum("rnk,rnd->rkd", onehot, x)
            centres = np.where(
                count[:, :, None] > 0, sums / np.maximum(count, 1)[:, :, None], centres
            )
        if k < self.k:  # fewer points than components: duplicate seeds (weight shared)
            centres = np.concatenate([centres, np.repeat(centres[:, :1], self.k - k, axis=1)], 1)
        label = np.argmin(np.sum((x[:, :, None] - centres[:, None]) ** 2, axis=3), axis=2)
        resp = (label[:, :, None] == np.arange(self.k)).astype(float)
        self.weights = self.means = self.covs = None
        self._m_step(x, resp, np.ones(r, bool))
        # Components without points: the data's covariance, so that they can still grow.
        xc = x - x.mean(axis=1, keepdims=True)
        pooled = np.einsum("rni,rnj->rij", xc, xc) / n + self.reg * np.eye(d)
        empty = resp.sum(axis=1) == 0
        self.covs[empty] = np.broadcast_to(pooled[:, None], self.covs.shape)[empty]
        self.means[empty] = centres[empty]

    def fit(self, data) -> None:
        """EM on x of shape (R, N, d) (warm start from the current parameters after the first)."""
        x = np.asarray(data.x, dtype=float)
        if self.means is None or not self.warm_start or self.means.shape[0] != x.shape[0]:
            self._kmeans_start(x)
        active = np.ones(x.shape[0], bool)
        previous = np.full(x.shape[0], -np.inf)
        for _ in range(self.em_steps):
            log_p = _log_components(x, self.weights, self.means, self.covs)
            log_norm = _logsumexp(log_p, axis=2)  # (R, N)
            ll = log_norm.mean(axis=1)
            active &= ~(ll - previous < self.tol)
            if not active.any():
                break
            previous = np.where(active, ll, previous)
            self._m_step(x, np.exp(log_p - log_norm[:, :, None]), active)

    def sample(self, k: int, rng: np.random.Generator) -> PointSet:
        """k samples per run, shape (R, k, d): a component by weight, then its Gaussian."""
        r, kk, d = self.means.shape
        cdf = np.cumsum(self.weights, axis=1)
        u = rng.random((r, k)) * cdf[:, -1:]
        comp = np.minimum(np.sum(u[:, :, None] >= cdf[:, None, :], axis=2), kk - 1)
        mu = np.take_along_axis(self.means, comp[:, :, None], axis=1)
        chol = np.linalg.cholesky(self.covs)
        root = np.take_along_axis(chol, comp[:, :, None, None], axis=1)
        return PointSet(mu + np.einsum("rkij,rkj->rki", root, rng.standard_normal((r, k, d))))

    def state(self) -> dict:
        """weights (R, K), means (R, K, d), covs (R, K, d, d)."""
        return {"weights": self.weights, "means": self.means, "covs": self.covs}

    def metrics(self, heldout) -> dict:
        """nll: the mean negative log-likelihood of held-out real points (R,)."""
        x = np.asarray(heldout.x, dtype=float)
        log_p = _log_components(x, self.weights, self.means, self.covs)
        return {"nll": -_logsumexp(log_p, axis=2).mean(axis=1)}


class MixtureData:
    """Real data: a Gaussian mixture with isotropic components (a data plugin, ``mixture``).

    Parameters
    ----------
    means : list
        Component means: numbers (1D) or lists of d numbers.
    std : float or list
        Each component's standard deviation (one for all, or one per component).
    weights : list, optional
        Component weights (default equal).
    """

    def __init__(self, means=(-4.0, 0.0, 4.0), std=0.5, weights=None):
        m = np.asarray(means, dtype=float)
        self.means = m[:, None] if m.ndim == 1 else m
        k = self.means.shape[0]
        self.std = np.broadcast_to(np.asarray(std, dtype=float), (k,)).copy()
        w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (k,) or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
            raise UsageError("mixture: weights must be K numbers >= 0 summing to 1")
        if np.any(self.std <= 0) or not np.all(np.isfinite(self.means)):
            raise UsageError("mixture: std must be > 0 and means finite")
        self.weights = w

    @property
    def dim(self) -> int:
        """Dimension d of x, from the means (K, d)."""
        return int(self.means.shape[1])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n points, shape (n, d)."""
        comp = rng.choice(len(self.weights), size=n, p=self.weights)
        return self.means[comp] + self.std[comp, None] * rng.standard_normal((n, self.dim))

    def describe(self) -> str:
        """The number of components and the dimension, in words."""
        return f"mixture of {len(self.weights)} Gaussians in R^{self.dim}"
