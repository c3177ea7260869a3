"""Gaussian retraining (Algorithm 1 with a Gaussian model): two engines, one interface.

- ``sample`` engine: draws the points and refits (eqs 4-5); works for any real data.
- ``exact`` engine: the same process in distribution from sufficient statistics only. A batch of
  k samples of N(mu, Sigma) has mean mu + L z / sqrt(k) and scatter L W L^T with
  W ~ Wishart_d(k - 1, I) (Bartlett decomposition), L L^T = Sigma, independent; the real data
  enter through their own mean and scatter. Data sets join exactly:
  n = n1 + n2, m = (n1 m1 + n2 m2)/n, S = S1 + S2 + (n1 n2 / n)(m1 - m2)(m1 - m2)^T.
  Cost per iteration O(runs d^3), independent of n; memory O(runs d^2).

Both plug into the Algorithm 1 of ``stability.loop`` through the fit / sample / state protocol,
batched over independent runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stability.errors import UsageError
from stability.linalg import sqrtm_psd, svec, sym
from stability.loop import PointSet

ENGINES = ("exact", "sample")
ESTIMATORS = {"unbiased": 1, "mle": 0}  # ddof of the covariance estimator (eq 5 / eq 2)


@dataclass
class GaussianStats:
    """Sufficient statistics of R data sets of equal size: count, means (R, d), scatters (R, d, d).

    The scatter is sum_i (x_i - mean)(x_i - mean)^T.
    """

    count: int
    mean: np.ndarray
    scatter: np.ndarray

    @property
    def size(self) -> int:
        """Number of points in each data set (the `DataSet` protocol of `stability.loop`)."""
        return int(self.count)

    @classmethod
    def from_points(cls, x: np.ndarray) -> GaussianStats:
        """Statistics of points of shape (R, N, d)."""
        mean = x.mean(axis=1)
        xc = x - mean[:, None, :]
        return cls(x.shape[1], mean, np.einsum("rni,rnj->rij", xc, xc))

    def union(self, other: GaussianStats) -> GaussianStats:
        """Statistics of each run's data set joined with `other`'s, exactly.

        n = n1 + n2, mean = (n1 m1 + n2 m2)/n, S = S1 + S2 + (n1 n2 / n)(m1 - m2)(m1 - m2)^T
        (an empty side returns the other unchanged).

        Parameters
        ----------
        other : GaussianStats
            The same R runs and dimension d: means (R, d), scatters (R, d, d).

        Returns
        -------
        GaussianStats
            count n1 + n2, means (R, d), scatters (R, d, d).
        """
        n1, n2 = self.count, other.count
        if n1 == 0:
            return other
        if n2 == 0:
            return self
        n = n1 + n2
        diff = self.mean - other.mean
        mean = other.mean + (n1 / n) * diff
        # S1 + S2 + (n1 n2 / n) diff diff^T, with as few temporaries as possible: this runs
        # once per iteration on (runs, d, d) arrays.
        scaled = (n1 * n2 / n) * diff
        scatter = np.multiply(scaled[:, :, None], diff[:, None, :])
        scatter += self.scatter
        scatter += other.scatter
        return GaussianStats(n, mean, scatter)

    def subsample(self, m, rng):
        """Refused: a subsample has no sufficient-statistics form.

        Subsamples overlap across iterations, so their statistics depend on the points, which
        the exact engine never draws; policy accumulate-subsample needs the sample engine.

        Raises
        ------
        UsageError
            Always.
        """
        raise UsageError(
            "a subsample has no sufficient-statistics form (subsamples overlap across iterations): "
            "use --engine sample for policy accumulate-subsample"
        )


def _root(cov: np.ndarray) -> np.ndarray:
    """A lower-triangular factor L with L L^T = Sigma for each run, shape (R, d, d).

    Closed form for d <= 2 (elementwise arrays: LAPACK's per-matrix overhead dominates for
    millions of 2 x 2 matrices), which also accepts the singular covariances that fully
    synthetic runs collapse to; LAPACK Cholesky above, with the symmetric square root as the
    fallback for numerically singular matrices.
    """
    d = cov.shape[-1]
    if d == 1:
        return np.sqrt(np.clip(cov, 0.0, None))
    if d == 2:
        a, b, c = cov[:, 0, 0], cov[:, 1, 0], cov[:, 1, 1]
        l11 = np.sqrt(np.clip(a, 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            l21 = np.where(l11 > 0, b / l11, 0.0)
        out = np.zeros_like(cov)
        out[:, 0, 0] = l11
        out[:, 1, 0] = l21
        out[:, 1, 1] = np.sqrt(np.clip(c - l21 * l21, 0.0, None))
        return out
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return sqrtm_psd(cov)


def wishart_identity(runs: int, d: int, dof: int, rng: np.random.Generator) -> np.ndarray:
    """W ~ Wishart_d(dof, I) for each run (Bartlett decomposition), shape (runs, d, d).

    W = A A^T with A lower triangular, A_ii^2 ~ chi^2(dof - i), A_ij ~ N(0, 1) (i > j), valid for
    dof >= d; for 0 <= dof < d (a singular Wishart) W = Z^T Z with Z of shape (dof, d).
    """
    if dof >= d:
        a = np.zeros((runs, d, d))
        idx = np.arange(d)
        a[:, idx, idx] = np.sqrt(rng.chisquare(dof - idx, size=(runs, d)))
        low = np.tril_indices(d, -1)
        a[:, low[0], low[1]] = rng.standard_normal((runs, len(low[0])))
        return a @ np.swapaxes(a, 1, 2)
    z = rng.standard_normal((runs, dof, d))
    return np.einsum("rki,rkj->rij", z, z)


def sample_stats(
    mu: np.ndarray, cov: np.ndarray, k: int, rng: np.random.Generator
) -> GaussianStats:
    """Sufficient statistics of k samples of N(mu_r, Sigma_r) per run, exactly in distribution.

    Parameters
    ----------
    mu : array, shape (R, d)
    cov : array, shape (R, d, d)
    """
    r, d = mu.shape
    if k == 0:
        return GaussianStats(0, np.zeros((r, d)), np.zeros((r, d, d)))
    root = _root(cov)
    z = rng.standard_normal((r, d))
    mean = mu + np.einsum("rij,rj->ri", root, z) / math.sqrt(k)
    if d == 1:
        scatter = (
            (root[:, 0, 0] ** 2 * rng.chisquare(k - 1, size=r))[:, None, None]
            if k > 1
            else np.zeros((r, 1, 1))
        )
        return GaussianStats(k, mean, scatter)
    if d == 2 and k - 1 >= 2:
        # Bartlett W = A A^T, A = [[a1, 0], [g, a2]]: L W L^T = (L A)(L A)^T with L A lower
        # triangular, written out elementwise.
        a1 = np.sqrt(rng.chisquare(k - 1, size=r))
        a2 = np.sqrt(rng.chisquare(k - 2, size=r))
        g = rng.standard_normal(r)
        p, q, s_ = root[:, 0, 0], root[:, 1, 0], root[:, 1, 1]
        m11, m21, m22 = p * a1, q * a1 + s_ * g, s_ * a2
        scatter = np.empty((r, 2, 2))
        scatter[:, 0, 0] = m11 * m11
        scatter[:, 0, 1] = scatter[:, 1, 0] = m11 * m21
        scatter[:, 1, 1] = m21 * m21 + m22 * m22
        return GaussianStats(k, mean, scatter)
    w = wishart_identity(r, d, k - 1, rng)
    scatter = root @ w @ np.swapaxes(root, 1, 2)
    return GaussianStats(k, mean, sym(scatter))


def sample_real_stats(source, runs: int, n: int, rng: np.random.Generator) -> GaussianStats:
    """Statistics of each run's real data set: exact for Gaussian data, from points otherwise."""
    if source.is_gaussian:
        mu = np.broadcast_to(source.mean, (runs, source.dim))
        cov = np.broadcast_to(source.cov, (runs, source.dim, source.dim))
        return sample_stats(np.array(mu), np.array(cov), n, rng)
    return GaussianStats.from_points(source.sample_runs(runs, n, rng))


class GaussianModel:
    """A Gaussian fitted by mean and covariance, batched over R runs (fit / sample / state).

    Parameters
    ----------
    engine : "exact" (data are GaussianStats) or "sample" (data are PointSets)
    ddof : 1 for the unbiased covariance of eq (5), 0 for maximum likelihood (eq 2)
    """

    def __init__(self, engine: str = "exact", ddof: int = 1):
        if engine not in ENGINES:
            raise UsageError(f"unknown engine {engine!r}; choose exact or sample")
        self.engine = engine
        self.ddof = ddof
        self.mu: np.ndarray | None = None
        self.cov: np.ndarray | None = None

    def fit(self, data) -> None:
        """Fit mean and covariance in each run: mu = mean, Sigma = S / (N - ddof).

        ddof = 1 is the unbiased estimator of eq (5), ddof = 0 the maximum likelihood of eq (2).

        Parameters
        ----------
        data : GaussianStats or PointSet
            Statistics (exact engine) or points x of shape (R, N, d) (sample engine).

        Raises
        ------
        UsageError
            When N - ddof <= 0 (no covariance can be estimated).
        """
        stats = data if isinstance(data, GaussianStats) else GaussianStats.from_points(data.x)
        if stats.count - self.ddof <= 0:
            raise UsageError(
                f"cannot fit a covariance on {stats.count} point(s) with ddof={self.ddof}"
            )
        # Scatters are symmetric by construction (outer products, congruences), so no sym().
        self.mu = stats.mean
        self.cov = stats.scatter / (stats.count - self.ddof)

    def sample(self, k: int, rng: np.random.Generator):
        """k samples of N(mu_r, Sigma_r) in each run (Algorithm 1's synthetic data).

        Parameters
        ----------
        k : int
            Samples per run.
        rng : numpy.random.Generator

        Returns
        -------
        GaussianStats or PointSet
            Their statistics, exact in distribution (`sample_stats`; exact engine), or the
            points, shape (R, k, d) (sample engine).
        """
        if self.engine == "exact":
            return sample_stats(self.mu, self.cov, k, rng)
        r, d = self.mu.shape
        z = rng.standard_normal((r, k, d))
        return PointSet(self.mu[:, None, :] + np.einsum("rkj,rij->rki", z, _root(self.cov)))

    def state(self) -> dict:
        """The fitted parameters: ``mu`` of shape (R, d) and ``cov`` of shape (R, d, d)."""
        return {"mu": self.mu, "cov": self.cov}


METRICS = ("mean_err2", "trace_cov", "trace_sqrt_cov", "logdet_cov", "w2", "theta_err")
METRIC_DOC = {
    "mean_err2": "||mu_t - mu_data||^2",
    "trace_cov": "tr Sigma_t",
    "trace_sqrt_cov": "tr sqrt(Sigma_t)",
    "logdet_cov": "log det Sigma_t",
    "w2": "W2(N(mu_t, Sigma_t), N(mu_data, Sigma_data)) (Bures-Wasserstein)",
    "theta_err": "||theta_t - theta*||, theta = (mu, svec(Sigma^-1))",
}


class Metrics:
    """Per-run metrics against the data's Gaussian N(mu_data, Sigma_data).

    Parameters
    ----------
    mean : array, shape (d,)
    cov : array, shape (d, d)
    """

    def __init__(self, mean: np.ndarray, cov: np.ndarray):
        self.mean = np.asarray(mean, dtype=float)
        self.cov = np.asarray(cov, dtype=float)
        self.cov_root = sqrtm_psd(self.cov)
        self.theta_star = np.concatenate([self.mean, svec(np.linalg.inv(self.cov))])

    def __call__(self, mu: np.ndarray, cov: np.ndarray) -> dict[str, np.ndarray]:
        """Metrics of R fitted Gaussians: mu (R, d), cov (R, d, d) -> dict of (R,) arrays."""
        d = mu.shape[1]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if d <= 2:
                return self._small(mu, cov)
            diff = mu - self.mean
            mean_err2 = np.sum(diff * diff, axis=1)
            w, v = np.linalg.eigh(cov)
            w = np.clip(w, 0.0, None)
            trace_cov = np.sum(w, axis=1)
            prec_svec = svec((v / w[:, None, :]) @ np.swapaxes(v, 1, 2))
            # tr sqrt(Sigma_d^1/2 Sigma Sigma_d^1/2): the Bures cross term.
            eig = np.linalg.eigvalsh(sym(self.cov_root @ cov @ self.cov_root))
            cross = np.sum(np.sqrt(np.clip(eig, 0, None)), axis=1)
            dtheta = np.concatenate([diff, prec_svec - self.theta_star[d:]], axis=1)
            theta_err = np.sqrt(np.sum(dtheta * dtheta, axis=1))
            out = {
                "mean_err2": mean_err2,
                "trace_cov": trace_cov,
                "trace_sqrt_cov": np.sum(np.sqrt(w), axis=1),
                "logdet_cov": np.sum(np.log(w), axis=1),
                "w2": np.sqrt(
                    np.clip(mean_err2 + trace_cov + np.trace(self.cov) - 2 * cross, 0, None)
                ),
                "theta_err": np.where(np.isfinite(theta_err), theta_err, np.inf),
            }
        return out

    def _small(self, mu: np.ndarray, cov: np.ndarray) -> dict[str, np.ndarray]:
        """All metrics in closed form for d <= 2, elementwise on (R,) arrays.

        For a 2 x 2 PSD matrix M, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); the Bures cross term
        uses M = Sigma_d^1/2 Sigma Sigma_d^1/2, whose trace is tr(Sigma_d Sigma) and whose
        determinant is det(Sigma_d) det(Sigma).
        """
        sd, ts = self.cov, self.theta_star
        if cov.shape[1] == 1:
            v = np.clip(cov[:, 0, 0], 0.0, None)
            e = mu[:, 0] - self.mean[0]
            mean_err2 = e * e
            cross = np.sqrt(v * sd[0, 0])
            dp = 1.0 / v - ts[1]
            theta_err = np.sqrt(mean_err2 + dp * dp)
            trace_cov, trace_sqrt, logdet = v, np.sqrt(v), np.log(v)
        else:
            e0, e1 = mu[:, 0] - self.mean[0], mu[:, 1] - self.mean[1]
            mean_err2 = e0 * e0 + e1 * e1
            a, b, c = cov[:, 0, 0], cov[:, 1, 0], cov[:, 1, 1]
            det = np.clip(a * c - b * b, 0.0, None)
            trace_cov = a + c
            root_det = np.sqrt(det)
            trace_sqrt = np.sqrt(trace_cov + 2 * root_det)
            logdet = np.log(det)
            # svec(Sigma^-1) = (c, -sqrt(2) b, a) / det, in the order of stability.linalg.svec.
            p0 = c / det - ts[2]
            p1 = -math.sqrt(2.0) * b / det - ts[3]
            p2 = a / det - ts[4]
            theta_err = np.sqrt(mean_err2 + p0 * p0 + p1 * p1 + p2 * p2)
            tr_prod = sd[0, 0] * a + 2 * sd[1, 0] * b + sd[1, 1] * c
            cross = np.sqrt(
                np.clip(tr_prod + 2 * root_det * math.sqrt(np.linalg.det(sd)), 0.0, None)
            )
        bures2 = trace_cov + np.trace(sd) - 2 * cross
        return {
            "mean_err2": mean_err2,
            "trace_cov": trace_cov,
            "trace_sqrt_cov": trace_sqrt,
            "logdet_cov": logdet,
            "w2": np.sqrt(np.clip(mean_err2 + bures2, 0, None)),
            "theta_err": np.where(np.isfinite(theta_err), theta_err, np.inf),
        }
