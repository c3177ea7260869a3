"""The `Family` interface: a parametric model p_theta, its log density and derivatives in theta.

The retraining operator G_lambda (eqs 2, 3, 9) and every quantity of Theorem 1 need, for a
family:

- ``logpdf(x, theta)``, ``score(x, theta)`` (gradient in theta) and ``hessian(x, theta)``
  (second derivative in theta) at many points x at once;
- ``nodes(theta)``, a quadrature rule for E_theta[f] (deterministic, so that G_lambda^inf is a
  smooth function of theta), and ``sample(rng, n, theta)`` for G_lambda^n;
- ``lipschitz(theta)``, the constant L of Assumption 1 (x -> Hessian is L-Lipschitz), and, in
  1D, ``cdf(x, theta)`` for eps = W1(p_theta*, p_data) (eq 8).

Derivatives come three ways, named by ``derivatives``: ``"given"`` (closed forms written in the
class), ``"sympy"`` (derived symbolically from an expression, `stability.families.symbolic`) or
``"numeric"`` (this base class's defaults: complex step or Richardson-extrapolated central
differences, with an error estimate from `derivative_errors`). A subclass writes ``logpdf``,
``nodes``, ``sample`` and ``initial_guess``; everything else has a default. Any object with the
same methods works where a family is expected (the operator only calls them).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from stability.errors import UsageError
from stability.families import numeric


class Family(ABC):
    """A parametric family p_theta(x), theta in an open set of R^p.

    Attributes
    ----------
    name : str
        Short name, e.g. ``"student-t(nu=4)"``.
    param_names : tuple of str
        Names of theta's p coordinates, in order.
    dim : int
        Dimension of x.
    discrete : bool
        True when x takes integer values (then p_data must be discrete too, and Assumption 1's
        Lipschitz constant is taken over consecutive integers).
    circular : bool
        True when x is an angle (W1 is then taken on the circle).
    derivatives : {"given", "sympy", "numeric"}
        Where ``score`` and ``hessian`` come from.
    complex_safe : bool
        ``logpdf`` accepts complex theta and is analytic in it: numeric scores use the complex
        step instead of differences.
    """

    name: str = "family"
    param_names: tuple = ()
    dim: int = 1
    discrete: bool = False
    circular: bool = False
    derivatives: str = "numeric"
    complex_safe: bool = False

    @property
    def n_params(self) -> int:
        """p, the number of parameters."""
        return len(self.param_names)

    # ---- the density and its derivatives ------------------------------------------------------
    @abstractmethod
    def logpdf(self, x, theta) -> np.ndarray:
        """log p_theta(x) for points x of shape (N, dim) (or (N,) in 1D): shape (N,)."""

    def score(self, x, theta) -> np.ndarray:
        """Gradient of log p_theta(x) in theta, shape (N, p) (numerical by default)."""
        return self._numeric_score(x, theta)[0]

    def hessian(self, x, theta) -> np.ndarray:
        """Second derivative of log p_theta(x) in theta, shape (N, p, p) (numerical by default).

        Its expectation under p_data at theta* is A of Lemma E.1 and under p_theta* it is B~
        (the Hessian in theta' of H_2, the form that eq (100) integrates).
        """
        return self._numeric_hessian(x, theta)[0]

    def hessian_dx(self, x, theta) -> np.ndarray:
        """d/dx of the Hessian for 1D x, shape (N, p, p); its norm bounds L (Assumption 1)."""
        xs = np.asarray(x, dtype=float).reshape(-1)
        return numeric.derivative_in_x(lambda z: self.hessian(z, theta), xs)[0]

    def derivative_errors(self, x, theta) -> tuple[np.ndarray, np.ndarray]:
        """Error estimates of ``score`` and ``hessian`` at x, shapes (N, p) and (N, p, p).

        Zero for derivatives given in closed form or by sympy (exact to rounding); the
        Richardson (or complex-step) estimate for numerical ones.
        """
        n = np.asarray(x).reshape(-1, self.dim).shape[0]
        p = self.n_params
        if self.derivatives != "numeric":
            return np.zeros((n, p)), np.zeros((n, p, p))
        return self._numeric_score(x, theta)[1], self._numeric_hessian(x, theta)[1]

    def _numeric_score(self, x, theta):
        theta = np.asarray(theta, dtype=float)
        return numeric.gradient(
            lambda t: self.logpdf(x, t), theta, self.valid, complex_step=self.complex_safe
        )

    def _numeric_hessian(self, x, theta):
        theta = np.asarray(theta, dtype=float)
        score_given = type(self).score is not Family.score
        if score_given or self.complex_safe:
            # Differences of an exact (given or complex-step) score.
            inner = 0.0 if score_given else self._numeric_score(x, theta)[1]
            return numeric.jacobian_of(lambda t: self.score(x, t), theta, self.valid, inner)
        return numeric.hessian_from_values(lambda t: self.logpdf(x, t), theta, self.valid)

    # ---- the parameter domain and the data ------------------------------------------------------
    def valid(self, theta) -> bool:
        """True when theta is inside the parameter domain (default: finite)."""
        return bool(np.all(np.isfinite(np.asarray(theta, dtype=float))))

    def check_data(self, x: np.ndarray, w: np.ndarray) -> None:
        """Raise UsageError when p_data (nodes x (N, dim), weights w (N,)) is outside the
        family's support, or when no maximiser of E_data[log p_theta] can exist."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise UsageError(
                f"family {self.name} models {self.dim}-dimensional x, the data have shape "
                f"{tuple(x.shape[1:]) or (1,)}"
            )

    @abstractmethod
    def initial_guess(self, data) -> np.ndarray:
        """A starting theta, shape (p,), for the maximisation of E_data[log p_theta] (eq 7)."""

    # ---- expectations under p_theta, sampling ---------------------------------------------------
    @abstractmethod
    def nodes(self, theta) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature rule for E_theta: nodes x of shape (M, dim), weights of shape (M,)."""

    @abstractmethod
    def sample(self, rng: np.random.Generator, n: int, theta) -> np.ndarray:
        """n i.i.d. points of p_theta, shape (n, dim)."""

    def cdf(self, x, theta) -> np.ndarray:
        """CDF of p_theta at 1D points x (for eps = W1, eq 8); not every family has one."""
        raise NotImplementedError(f"family {self.name} gives no CDF")

    # ---- Assumption 1 ---------------------------------------------------------------------------
    def lipschitz_window(self, theta) -> tuple[float, float]:
        """Interval of x on which L is searched: the quadrature nodes' range, widened by half."""
        x, w = self.nodes(theta)
        keep = x[w > 1e-300 * w.max(), 0]
        lo, hi = float(keep.min()), float(keep.max())
        pad = 0.5 * (hi - lo) + 1.0
        return lo - pad, hi + pad

    def lipschitz(self, theta) -> float:
        """L of Assumption 1, sup_x ||d/dx Hessian(x)||_2, searched on `lipschitz_window`.

        Discrete families: sup over consecutive integers k of ||Hessian(k+1) - Hessian(k)||_2
        (W1 on the integers is dual to functions that are 1-Lipschitz between neighbours). The
        search is numerical (a dense grid, then a bounded refinement); closed forms override.
        """
        if self.dim != 1:
            raise NotImplementedError(f"no Lipschitz constant for {self.dim}-dimensional x")
        lo, hi = self.lipschitz_window(theta)
        if self.discrete:
            ks = np.arange(math.floor(lo), math.ceil(hi) + 1, dtype=float)
            h = self.hessian(ks, theta)
            return float(np.max(np.linalg.norm(np.diff(h, axis=0), ord=2, axis=(1, 2)), initial=0))
        return sup_norm_1d(lambda z: self.hessian_dx(z, theta), lo, hi)

    def describe(self) -> str:
        """One line: the family and its parametrisation."""
        return f"{self.name}, theta = ({', '.join(self.param_names)})"


def sup_norm_1d(fn, lo: float, hi: float, points: int = 20001) -> float:
    """sup over x in [lo, hi] of ||fn(x)||_2, fn: (N,) -> (N, p, p); grid then refinement."""
    from scipy.optimize import minimize_scalar

    grid = np.linspace(lo, hi, points)
    norms = np.linalg.norm(fn(grid), ord=2, axis=(1, 2))
    i = int(np.argmax(norms))
    step = grid[1] - grid[0]

    def neg(x):
        return -float(np.linalg.norm(fn(np.array([x]))[0], 2))

    res = minimize_scalar(
        neg, bounds=(grid[i] - step, grid[i] + step), method="bounded", options={"xatol": 1e-12}
    )
    return float(max(norms[i], -res.fun))


def robust_location_scale(data) -> tuple[float, float]:
    """Median and IQR/1.349 (the sd for Gaussian data) of 1D data: starts that heavy tails
    (infinite variance) do not spoil."""
    x, w = data.nodes()
    xs = np.asarray(x, dtype=float).reshape(-1)
    order = np.argsort(xs)
    cum = np.cumsum(np.asarray(w, dtype=float)[order])
    cum /= cum[-1]
    q1, med, q3 = (xs[order][min(np.searchsorted(cum, q), xs.size - 1)] for q in (0.25, 0.5, 0.75))
    spread = (q3 - q1) / 1.349
    if not spread > 0:
        spread = math.sqrt(max(float(data.cov[0, 0]), 1e-300))
    return float(med), float(spread)


def data_points(x) -> np.ndarray:
    """x as a float array of shape (N,) for 1D families."""
    return np.asarray(x, dtype=float).reshape(-1)
