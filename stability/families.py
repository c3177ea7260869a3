"""Model families p_theta and data distributions p_data for the retraining operator (eq 9).

A family supplies log p_theta(x), its gradient and Hessian in theta, the derivative of the Hessian
in x (for the Lipschitz constant L of Assumption 1), and a quadrature rule for expectations under
p_theta. A data distribution supplies a quadrature rule, a sampler and (in 1D) its CDF.
Expectations are deterministic quadratures, so the operator G_lambda^inf is a smooth function of
theta that finite differences can differentiate.

Families (theta in the coordinates used by every check):
- GaussianFamily(d): theta = (mu, svec(Sigma^-1)), the family of Proposition 2, any d;
- StudentTFamily(nu): 1D location-scale Student-t, theta = (m, s), Hessian not linear in x;
- MeansMixtureFamily(sigma): 1D equal-weight two-component Gaussian mixture with fixed sigma,
  theta = (mu_1, mu_2), Hessian not linear in x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import special, stats

from stability import gaussian
from stability.errors import UsageError
from stability.linalg import inv_spd, smat, svec

_GH_NODES = 80  # Gauss-Hermite nodes per dimension / component: exact to polynomial degree 159


def _gauss_hermite_std(k: int = _GH_NODES) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z and weights w with sum w f(z) ~ E[f(Z)], Z ~ N(0, 1), shape (k,) each."""
    z, w = np.polynomial.hermite_e.hermegauss(k)
    return z, w / math.sqrt(2 * math.pi)


# --------------------------------------------------------------------------------------------
# data distributions


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

    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature nodes x (K*80, 1) and weights (K*80,) for E_data."""
        z, w = _gauss_hermite_std()
        xs = np.concatenate([m + s * z for m, s in zip(self.means, self.sds)])
        ws = np.concatenate([wk * w for wk in self.weights])
        return xs[:, None], ws

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n i.i.d. points, shape (n, 1)."""
        comp = rng.choice(len(self.weights), size=n, p=np.asarray(self.weights))
        x = np.asarray(self.means)[comp] + np.asarray(self.sds)[comp] * rng.standard_normal(n)
        return x[:, None]

    def cdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return sum(
            wk * stats.norm.cdf(x, m, s) for wk, m, s in zip(self.weights, self.means, self.sds)
        )

    def pdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float).reshape(-1)
        return sum(
            wk * stats.norm.pdf(x, m, s) for wk, m, s in zip(self.weights, self.means, self.sds)
        )

    @property
    def mean(self) -> np.ndarray:
        return np.array([float(np.dot(self.weights, self.means))])

    @property
    def cov(self) -> np.ndarray:
        m = self.mean[0]
        second = sum(w * (s * s + mu * mu) for w, mu, s in zip(self.weights, self.means, self.sds))
        return np.array([[second - m * m]])

    def describe(self) -> str:
        parts = [f"{w:g} N({m:g}, {s:g}^2)" for w, m, s in zip(self.weights, self.means, self.sds)]
        return " + ".join(parts)


@dataclass(frozen=True)
class GaussianData:
    """p_data = N(mean, cov) in R^d (the well-specified case, eps = 0).

    Parameters
    ----------
    mean : array, shape (d,)
    cov : array, shape (d, d)
    """

    mean: np.ndarray
    cov: np.ndarray
    name: str = "gaussian"

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        return _gaussian_nodes(self.mean, self.cov)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.mean + rng.standard_normal((n, self.dim)) @ np.linalg.cholesky(self.cov).T

    def cdf(self, x: np.ndarray) -> np.ndarray:
        if self.dim != 1:
            raise UsageError("the CDF is defined here for 1D data only")
        return stats.norm.cdf(x, self.mean[0], math.sqrt(self.cov[0, 0]))

    def describe(self) -> str:
        return f"N(mean={np.round(self.mean, 3).tolist()}, cov={np.round(self.cov, 3).tolist()})"


def _gaussian_nodes(mean: np.ndarray, cov: np.ndarray, k: int | None = None):
    """Tensor Gauss-Hermite rule for N(mean, cov): nodes (k^d, d), weights (k^d,)."""
    d = mean.shape[0]
    k = k or (_GH_NODES if d == 1 else 24 if d == 2 else 10)
    z, w = _gauss_hermite_std(k)
    grids = np.meshgrid(*([z] * d), indexing="ij")
    zs = np.stack([g.ravel() for g in grids], axis=1)
    ws = np.prod(np.stack(np.meshgrid(*([w] * d), indexing="ij"), 0).reshape(d, -1), axis=0)
    return mean + zs @ np.linalg.cholesky(cov).T, ws


# --------------------------------------------------------------------------------------------
# model families


class GaussianFamily:
    """N(mu, Sigma) in R^d with theta = (mu, svec(Sigma^-1)) (Proposition 2's parametrisation)."""

    def __init__(self, d: int):
        self.dim = d
        self.n_params = gaussian.n_params(d, "svec")
        self.name = f"gaussian-{d}d"
        self.param_names = [f"mu{i}" for i in range(d)] + [
            f"P{i}{j}" for j in range(d) for i in range(j, d)
        ]

    def split(self, theta):
        return theta[: self.dim], smat(theta[self.dim :])

    def valid(self, theta) -> bool:
        _, prec = self.split(theta)
        return bool(np.all(np.isfinite(theta)) and np.linalg.eigvalsh(prec)[0] > 0)

    def logpdf(self, x, theta):
        mu, prec = self.split(theta)
        v = np.atleast_2d(x) - mu
        _, logdet = np.linalg.slogdet(prec)
        quad = np.einsum("ni,ij,nj->n", v, prec, v)
        return 0.5 * logdet - 0.5 * quad - 0.5 * self.dim * math.log(2 * math.pi)

    def score(self, x, theta):
        mu, prec = self.split(theta)
        return gaussian.score(x, mu, prec, "svec")

    def hessian(self, x, theta):
        mu, prec = self.split(theta)
        return gaussian.hessian(x, mu, prec, "svec")

    def nodes(self, theta):
        mu, prec = self.split(theta)
        return _gaussian_nodes(mu, inv_spd(prec))

    def sample(self, rng, n, theta):
        mu, prec = self.split(theta)
        chol = np.linalg.cholesky(inv_spd(prec))
        return mu + rng.standard_normal((n, self.dim)) @ chol.T

    def cdf(self, x, theta):
        mu, prec = self.split(theta)
        return stats.norm.cdf(x, mu[0], 1.0 / math.sqrt(prec[0, 0]))

    def lipschitz(self, theta) -> float:
        """L of Assumption 1 in svec coordinates: exactly 1 (see gaussian.lipschitz_constant)."""
        return gaussian.lipschitz_constant(self.dim, "svec")

    def initial_guess(self, data) -> np.ndarray:
        x, w = data.nodes()
        mean = w @ x
        cov = np.einsum("n,ni,nj->ij", w, x - mean, x - mean)
        return np.concatenate([mean, svec(inv_spd(cov))])

    def describe(self) -> str:
        return f"Gaussian N(mu, Sigma) in R^{self.dim}, theta = (mu, svec(Sigma^-1))"


class _SympyFamily1D:
    """A 1D family whose derivatives are derived once with sympy from its log-density."""

    dim = 1
    param_names: list[str] = []

    def _logpdf_expr(self, x, params):  # pragma: no cover - abstract
        raise NotImplementedError

    @cached_property
    def _compiled(self):
        import sympy as sp

        x = sp.Symbol("x", real=True)
        params = sp.symbols(" ".join(self.param_names), real=True)
        logp = self._logpdf_expr(x, params)
        grad = [sp.diff(logp, p) for p in params]
        hess = [[sp.diff(g, p) for p in params] for g in grad]
        dhess = [[sp.diff(h, x) for h in row] for row in hess]
        args = [x, *params]
        return tuple(
            sp.lambdify(args, expr, modules=["numpy", "scipy"], cse=True)
            for expr in (logp, grad, hess, dhess)
        )

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @staticmethod
    def _stack(values, n: int, shape: tuple) -> np.ndarray:
        """Broadcast the nested lists returned by lambdify to arrays of shape (n, *shape)."""
        arr = np.empty((n, *shape))
        flat = values if len(shape) == 1 else [v for row in values for v in row]
        arr.reshape(n, -1)[:] = np.stack([np.broadcast_to(v, (n,)) for v in flat], axis=1)
        return arr

    def logpdf(self, x, theta):
        xs = np.asarray(x, dtype=float).reshape(-1)
        return np.broadcast_to(self._compiled[0](xs, *theta), xs.shape).astype(float)

    def score(self, x, theta):
        xs = np.asarray(x, dtype=float).reshape(-1)
        return self._stack(self._compiled[1](xs, *theta), xs.size, (self.n_params,))

    def hessian(self, x, theta):
        xs = np.asarray(x, dtype=float).reshape(-1)
        p = self.n_params
        return self._stack(self._compiled[2](xs, *theta), xs.size, (p, p))

    def hessian_dx(self, x, theta):
        """d/dx of the Hessian, shape (N, p, p): its norm bounds the Lipschitz constant L."""
        xs = np.asarray(x, dtype=float).reshape(-1)
        p = self.n_params
        return self._stack(self._compiled[3](xs, *theta), xs.size, (p, p))

    def lipschitz(self, theta) -> float:
        """L = sup_x ||d/dx Hessian(x)||_2 (Assumption 1) by a dense grid and local refinement."""
        from scipy.optimize import minimize_scalar

        lo, hi = self._lipschitz_window(theta)
        grid = np.linspace(lo, hi, 20001)
        norms = np.linalg.norm(self.hessian_dx(grid, theta), ord=2, axis=(1, 2))
        i = int(np.argmax(norms))
        step = grid[1] - grid[0]

        def neg(x):
            return -np.linalg.norm(self.hessian_dx(np.array([x]), theta)[0], 2)

        res = minimize_scalar(
            neg, bounds=(grid[i] - step, grid[i] + step), method="bounded", options={"xatol": 1e-12}
        )
        return float(max(norms[i], -res.fun))


class StudentTFamily(_SympyFamily1D):
    """Location-scale Student-t with nu degrees of freedom, theta = (m, s), s > 0.

    log p = log Gamma((nu+1)/2) - log Gamma(nu/2) - log(pi nu)/2 - log s
            - (nu+1)/2 log(1 + (x - m)^2 / (nu s^2)).
    """

    param_names = ["m", "s"]

    def __init__(self, nu: float = 4.0, quad_nodes: int = 400):
        self.nu = float(nu)
        self.name = f"student-t(nu={nu:g})"
        self._quad_nodes = quad_nodes

    def _logpdf_expr(self, x, params):
        import sympy as sp

        m, s = params
        nu = sp.nsimplify(self.nu)
        const = sp.loggamma((nu + 1) / 2) - sp.loggamma(nu / 2) - sp.log(sp.pi * nu) / 2
        return const - sp.log(s) - (nu + 1) / 2 * sp.log(1 + (x - m) ** 2 / (nu * s**2))

    def valid(self, theta) -> bool:
        return bool(np.all(np.isfinite(theta)) and theta[1] > 0)

    def nodes(self, theta):
        """E_theta by x = m + s sqrt(nu) tan(phi): the t density becomes c cos^(nu-1)(phi) dphi."""
        m, s = theta
        u, w = np.polynomial.legendre.leggauss(self._quad_nodes)
        phi = 0.5 * math.pi * u
        nu = self.nu
        c = math.exp(special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2)) / math.sqrt(math.pi)
        weights = 0.5 * math.pi * w * c * np.cos(phi) ** (nu - 1)
        return (m + s * math.sqrt(nu) * np.tan(phi))[:, None], weights

    def sample(self, rng, n, theta):
        return (theta[0] + theta[1] * rng.standard_t(self.nu, size=n))[:, None]

    def cdf(self, x, theta):
        return stats.t.cdf(x, self.nu, loc=theta[0], scale=theta[1])

    def _lipschitz_window(self, theta):
        # d/dx Hessian decays like |x - m|^-1 and peaks within a few scales of m.
        return float(theta[0] - 60 * theta[1]), float(theta[0] + 60 * theta[1])

    def initial_guess(self, data) -> np.ndarray:
        return np.array([float(data.mean[0]), math.sqrt(float(data.cov[0, 0]))])

    def describe(self) -> str:
        return f"Student-t location-scale (nu = {self.nu:g}), theta = (m, s)"


class MeansMixtureFamily(_SympyFamily1D):
    """1/2 N(mu_1, sigma^2) + 1/2 N(mu_2, sigma^2) with sigma fixed, theta = (mu_1, mu_2).

    Derivatives are written through the responsibilities r_k = softmax(a)_k,
    a_k = -(x - mu_k)^2 / (2 sigma^2), which stay finite where the component densities underflow;
    with u_k = (x - mu_k)/sigma^2:
        d log p / d mu_k          = r_k u_k
        d^2 log p / d mu_k d mu_l = r_k (delta_kl - r_l) u_k u_l - delta_kl r_k / sigma^2.
    The sympy expression of the density (_logpdf_expr) is kept for the tests, which compare
    these formulas with symbolic differentiation.
    """

    param_names = ["mu1", "mu2"]

    def __init__(self, sigma: float = 0.7):
        self.sigma = float(sigma)
        self.name = f"mixture(sigma={sigma:g})"

    def _logpdf_expr(self, x, params):
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
        _, a, _, _, _ = self._parts(x, theta)
        return special.logsumexp(a, axis=1) - math.log(2 * self.sigma * math.sqrt(2 * math.pi))

    def score(self, x, theta):
        _, _, r, u, _ = self._parts(x, theta)
        return r * u

    def hessian(self, x, theta):
        _, _, r, u, s2 = self._parts(x, theta)
        ru = r * u
        h = -np.einsum("nk,nl->nkl", ru, ru)
        idx = np.arange(2)
        h[:, idx, idx] += r * u * u - r / s2
        return h

    def hessian_dx(self, x, theta):
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
        return bool(np.all(np.isfinite(theta)))

    def nodes(self, theta):
        z, w = _gauss_hermite_std()
        xs = np.concatenate([theta[0] + self.sigma * z, theta[1] + self.sigma * z])
        return xs[:, None], np.concatenate([0.5 * w, 0.5 * w])

    def sample(self, rng, n, theta):
        comp = rng.integers(0, 2, size=n)
        return (np.asarray(theta)[comp] + self.sigma * rng.standard_normal(n))[:, None]

    def cdf(self, x, theta):
        return 0.5 * (
            stats.norm.cdf(x, theta[0], self.sigma) + stats.norm.cdf(x, theta[1], self.sigma)
        )

    def _lipschitz_window(self, theta):
        # r_k (1 - r_k) decays like exp(-|mu_1 - mu_2| |x - mid| / sigma^2) outside the means,
        # where the Hessian tends to diag(-1/sigma^2); a wide window costs nothing here.
        spread = abs(float(theta[1] - theta[0]))
        pad = 40 * self.sigma + 40 * self.sigma**2 / max(spread, 1e-3)
        return float(min(theta)) - pad, float(max(theta)) + pad

    def initial_guess(self, data) -> np.ndarray:
        m = float(data.mean[0])
        s = math.sqrt(float(data.cov[0, 0]))
        return np.array([m - s, m + s])

    def describe(self) -> str:
        return f"two-component mixture 1/2 N(mu1, {self.sigma:g}^2) + 1/2 N(mu2, {self.sigma:g}^2)"


def w1_1d(cdf_a, cdf_b, lo: float, hi: float) -> float:
    """W1 between two distributions on R: integral of |F_a - F_b| (Vallender 1973).

    The integrand is integrated on [lo, hi] with adaptive quadrature; the caller picks lo, hi
    beyond which both CDFs are 0 or 1 to double precision (or adds the tails itself).
    """
    from scipy import integrate

    val, _ = integrate.quad(
        lambda x: abs(float(cdf_a(x)) - float(cdf_b(x))), lo, hi, limit=500, epsabs=1e-12
    )
    return float(val)


# The default (family, data) pairs of the checks: a skewed bimodal p_data that no family
# contains, so eps = W1(p_theta*, p_data) > 0 (the misspecified case of Theorem 1).
SKEWED_DATA = GaussianMixture1D(weights=(0.7, 0.3), means=(-0.5, 1.5), sds=(0.6, 0.8))


NEAR_MIXTURE_DATA = GaussianMixture1D(weights=(0.5, 0.5), means=(-1.0, 1.2), sds=(0.75, 0.66))


def default_settings():
    """The (name, family, data) triples on which the operator checks run."""
    rng = np.random.default_rng(20240101)
    from stability.linalg import random_spd

    cov2 = random_spd(2, 4.0, rng)
    return [
        ("gaussian-2d", GaussianFamily(2), GaussianData(np.array([0.5, -1.0]), cov2)),
        ("gaussian-1d", GaussianFamily(1), SKEWED_DATA),
        ("student-t", StudentTFamily(4.0), SKEWED_DATA),
        ("mixture", MeansMixtureFamily(0.7), SKEWED_DATA),
        # A nonlinear family inside Proposition 3's hypothesis: the data are almost in it
        # (component widths 0.75 and 0.66 vs the model's 0.7), eps L = 0.27 < alpha = 0.58.
        ("mixture-near", MeansMixtureFamily(0.7), NEAR_MIXTURE_DATA),
    ]
