"""Quadrature rules and Wasserstein-1 distances on the line, the integers and the circle.

Expectations in the operator are deterministic quadratures, so G_lambda^inf (eq 9) is a smooth
function of theta that finite differences can differentiate. eps = W1(p_theta*, p_data) (eq 8)
is computed from the two CDFs (Vallender 1973: W1 = integral of |F_a - F_b| on R; on the
circle, Rabin, Delon and Gousseau 2011: min over c of the integral of |F_a - F_b - c|).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

GH_NODES = 80  # Gauss-Hermite nodes per dimension / component: exact to polynomial degree 159


def _frozen(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays


@lru_cache(maxsize=16)
def gauss_hermite_std(k: int = GH_NODES) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z and weights w with sum w f(z) ~ E[f(Z)], Z ~ N(0, 1), shape (k,) each."""
    z, w = np.polynomial.hermite_e.hermegauss(k)
    return _frozen(z, w / math.sqrt(2 * math.pi))


@lru_cache(maxsize=16)
def gauss_laguerre_std(k: int = GH_NODES) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z and weights w with sum w f(z) ~ E[f(Z)], Z ~ Exp(1), shape (k,) each."""
    return _frozen(*np.polynomial.laguerre.laggauss(k))


@lru_cache(maxsize=16)
def gauss_legendre(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [-1, 1], shape (k,) each (cached, read-only)."""
    return _frozen(*np.polynomial.legendre.leggauss(k))


def gaussian_nodes(mean: np.ndarray, cov: np.ndarray, k: int | None = None):
    """Tensor Gauss-Hermite rule for N(mean, cov): nodes (k^d, d), weights (k^d,).

    Parameters
    ----------
    mean : array, shape (d,)
    cov : array, shape (d, d), positive definite
    """
    d = mean.shape[0]
    k = k or (GH_NODES if d == 1 else 24 if d == 2 else 10)
    z, w = gauss_hermite_std(k)
    grids = np.meshgrid(*([z] * d), indexing="ij")
    zs = np.stack([g.ravel() for g in grids], axis=1)
    ws = np.prod(np.stack(np.meshgrid(*([w] * d), indexing="ij"), 0).reshape(d, -1), axis=0)
    return mean + zs @ np.linalg.cholesky(cov).T, ws


def composite_legendre(edges: np.ndarray, order: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre rule of `order` points on each panel [edges[i], edges[i+1]]: x, w (K,)."""
    z, w = gauss_legendre(order)
    edges = np.asarray(edges, dtype=float)
    mid = 0.5 * (edges[1:] + edges[:-1])[:, None]
    half = 0.5 * (edges[1:] - edges[:-1])[:, None]
    return (mid + half * z).ravel(), (half * w).ravel()


def sinh_edges(lo: float, hi: float, center: float, scale: float, panels: int) -> np.ndarray:
    """Panel edges on [lo, hi], dense within a few `scale` of `center` and coarse further out."""
    a = math.asinh((lo - center) / scale)
    b = math.asinh((hi - center) / scale)
    edges = center + scale * np.sinh(np.linspace(a, b, panels + 1))
    edges[0], edges[-1] = lo, hi
    return edges


def tanh_sinh_unit(level: int = 7, tiny: float = 1e-30):
    """Tanh-sinh rule on (0, 1): nodes u, their complements 1 - u (exact), weights; (K,) each.

    The double-exponential clustering at 0 and 1 integrates endpoint singularities, which is
    what E[f(X)] = int_0^1 f(F^-1(u)) du has for heavy-tailed X (Takahasi and Mori 1974).
    Nodes closer than `tiny` to an end are dropped: beyond, quantiles of heavy-tailed laws
    overflow the squares that log densities take (Cauchy: x ~ 1/u).
    """
    h = 2.0**-level
    t = np.arange(-6.0, 6.0 + h / 2, h)
    s = 0.5 * math.pi * np.sinh(t)
    # u = (1 + tanh s)/2 and its complement, each without cancellation; 1/cosh^2 s likewise.
    e = np.exp(-2 * np.abs(s))
    small = e / (1 + e)
    u = np.where(s < 0, small, 1 / (1 + e))
    comp = np.where(s < 0, 1 / (1 + e), small)
    w = h * 0.5 * math.pi * np.cosh(t) * 4 * e / (1 + e) ** 2 * 0.5
    keep = (u > tiny) & (comp > tiny) & (w > 0)
    return u[keep], comp[keep], w[keep]


# --------------------------------------------------------------------------------------------
# W1 on the line, the integers and the circle


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


def w1_line(
    cdf_a: Callable,
    cdf_b: Callable,
    lo: float,
    hi: float,
    jumps: np.ndarray | None = None,
    center: float | None = None,
    scale: float | None = None,
) -> float:
    """W1 on R by a composite rule on [lo, hi] plus both tails, vectorised.

    Parameters
    ----------
    cdf_a, cdf_b : callables, vectorised over x of shape (K,)
    lo, hi : float
        Where both distributions' mass lies (to ~1e-18); the tails beyond are added by
        tanh-sinh quadrature after s = u/(1 - u).
    jumps : array, shape (J,), optional
        Points where either CDF jumps (atoms of an empirical distribution): panel edges, so
        that each panel integrates a smooth function.
    center, scale : float, optional
        Where the bulk is and its width: panels are dense within a few scales of the center
        and grow geometrically beyond (default: the middle of [lo, hi] and 2% of its length).
    """
    center = 0.5 * (lo + hi) if center is None else min(max(center, lo), hi)
    scale = max(0.02 * (hi - lo) if scale is None else scale, 1e-12)
    edges = sinh_edges(lo, hi, center, scale, 4000)
    if jumps is not None and len(jumps):
        inside = np.asarray(jumps, dtype=float)
        edges = np.unique(np.concatenate([edges, inside[(inside > lo) & (inside < hi)]]))
    edges = np.sort(np.concatenate([edges, crossings(cdf_a, cdf_b, edges)]))
    x, w = composite_legendre(edges)
    bulk = float(w @ np.abs(cdf_a(x) - cdf_b(x)))

    # Tails: x = lo - s and x = hi + s with s = u/(1 - u), u in (0, 1) by tanh-sinh, which
    # integrates the algebraic decay of heavy tails (an endpoint singularity in u).
    u, comp, wu = tanh_sinh_unit(level=6)
    s, ds = u / comp, wu / comp**2
    tails = 0.0
    for t in (lo - s, hi + s):
        tails += float(ds @ np.abs(np.asarray(cdf_a(t), float) - np.asarray(cdf_b(t), float)))
    return bulk + tails


def crossings(cdf_a: Callable, cdf_b: Callable, edges: np.ndarray, iterations: int = 60):
    """Points where F_a - F_b changes sign between consecutive edges, by vectorised bisection.

    |F_a - F_b| has a kink there; as panel edges they leave every panel a smooth integrand, so
    that Gauss-Legendre converges at its full order instead of O(h^2).
    """
    d = cdf_a(edges) - cdf_b(edges)
    i = np.flatnonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)
    lo, hi, dlo = edges[i].copy(), edges[i + 1].copy(), d[i]
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        dm = cdf_a(mid) - cdf_b(mid)
        left = np.sign(dm) == np.sign(dlo)
        lo, dlo = np.where(left, mid, lo), np.where(left, dm, dlo)
        hi = np.where(left, hi, mid)
    return 0.5 * (lo + hi)


def w1_integers(cdf_a: Callable, cdf_b: Callable, kmin: int, kmax: int) -> float:
    """W1 between two distributions on the integers: sum over k of |F_a(k) - F_b(k)|.

    Both CDFs are constant on [k, k+1), so the integral of |F_a - F_b| is this sum; kmin, kmax
    bound both supports (below kmin both CDFs are 0, from kmax on both are 1).
    """
    ks = np.arange(int(kmin), int(kmax) + 1, dtype=float)
    return float(np.sum(np.abs(cdf_a(ks) - cdf_b(ks))))


def w1_circle(cdf_a: Callable, cdf_b: Callable, start: float) -> float:
    """W1 on the circle of circumference 2 pi (arc length): min_c int |F_a - F_b - c|.

    Parameters
    ----------
    cdf_a, cdf_b : callables
        CDFs of the two distributions wrapped to [start, start + 2 pi): 0 at start, 1 at the end.
    start : float
        Where the circle is cut; the result does not depend on it.
    """
    edges = np.linspace(start, start + 2 * math.pi, 2049)
    x, w = composite_legendre(edges)
    diff = cdf_a(x) - cdf_b(x)
    order = np.argsort(diff)
    cum = np.cumsum(w[order])
    c = diff[order][np.searchsorted(cum, 0.5 * cum[-1])]  # the weighted median minimises
    return float(w @ np.abs(diff - c))


def wrapped_cdf(cdf: Callable, start: float, turns: int = 3) -> Callable:
    """The CDF of a distribution on R wrapped onto [start, start + 2 pi), for W1 on the circle.

    `cdf` is clipped to [0, 1] first: scipy's von Mises CDF continues periodically (it gains 1
    per turn), which clipping turns into the CDF of the distribution on one period.
    """

    def proper(t):
        return np.clip(np.asarray(cdf(t), dtype=float), 0.0, 1.0)

    def wrapped(x):
        x = np.asarray(x, dtype=float)
        total = np.zeros_like(x)
        for k in range(-turns, turns + 1):
            shift = 2 * math.pi * k
            total += proper(x + shift) - proper(np.full_like(x, start + shift))
        return total

    return wrapped
