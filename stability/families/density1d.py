"""A 1D density known only through its log density: where it lives, a quadrature, CDF, sampler.

Used by the families given as a formula (`ExpressionFamily`): the density is located on a
very wide sinh-spaced grid, then integrated by a composite Gauss-Legendre rule on the interval
where it exceeds exp(-70) of its maximum; the CDF adds whole panels and a Gauss-Legendre rule
on the last partial panel; sampling inverts the CDF tabulated at the rule's nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stability.errors import UsageError
from stability.families.quadrature import composite_legendre, gauss_legendre, sinh_edges

LOG_FLOOR = 70.0  # the density is negligible where log p < max log p - LOG_FLOOR
SEARCH_HALF_WIDTH = 1e8


@dataclass
class DensityTable:
    """A normalised 1D density on [lo, hi] with its composite rule.

    Attributes
    ----------
    edges : array, shape (K+1,)
        Panel edges.
    x, w : arrays, shape (K*8,)
        Nodes and density-weighted quadrature weights (sum = mass).
    mass : float
        The integral of the density (1 for a normalised density).
    logpdf : callable
        x (N,) -> log density (N,).
    """

    edges: np.ndarray
    x: np.ndarray
    w: np.ndarray
    mass: float
    logpdf: Callable

    @classmethod
    def build(cls, logpdf: Callable, support=(-math.inf, math.inf), panels: int = 600):
        """Locate the density's bulk and build the rule (raises UsageError if it has none)."""
        lo_s, hi_s = support
        lo = max(lo_s, -SEARCH_HALF_WIDTH)
        hi = min(hi_s, SEARCH_HALF_WIDTH)
        probe = sinh_edges(lo, hi, 0.0 if lo < 0 < hi else 0.5 * (lo + hi), 1.0, 20000)
        probe = probe[(probe > lo_s) & (probe < hi_s)]
        with np.errstate(all="ignore"):
            lp = np.asarray(logpdf(probe), dtype=float)
        ok = np.isfinite(lp)
        if not ok.any():
            raise UsageError("the log density is not finite anywhere on its support")
        top = float(lp[ok].max())
        alive = np.flatnonzero(ok & (lp > top - LOG_FLOOR))
        i0, i1 = max(alive[0] - 1, 0), min(alive[-1] + 1, probe.size - 1)
        a = lo_s if (i0 == 0 and math.isfinite(lo_s)) else float(probe[i0])
        b = hi_s if (i1 == probe.size - 1 and math.isfinite(hi_s)) else float(probe[i1])
        mode = float(probe[int(np.argmax(np.where(ok, lp, -np.inf)))])
        edges = sinh_edges(a, b, min(max(mode, a), b), max((b - a) / 200, 1e-12), panels)
        x, q = composite_legendre(edges)
        with np.errstate(all="ignore"):
            dens = np.exp(np.asarray(logpdf(x), dtype=float))
        dens = np.where(np.isfinite(dens), dens, 0.0)
        w = q * dens
        return cls(edges, x, w, float(w.sum()), logpdf)

    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Nodes (M, 1) and weights (M,) for expectations (normalised to sum 1)."""
        return self.x[:, None], self.w / self.mass

    def cdf(self, t) -> np.ndarray:
        """CDF at points t of any shape: whole panels plus the partial panel's own rule."""
        t = np.asarray(t, dtype=float)
        flat = t.reshape(-1)
        panel_mass = self.w.reshape(-1, 8).sum(axis=1)
        cum = np.concatenate([[0.0], np.cumsum(panel_mass)])
        k = np.clip(np.searchsorted(self.edges, flat, side="right") - 1, 0, len(panel_mass) - 1)
        left = self.edges[k]
        right = np.clip(flat, self.edges[0], self.edges[-1])
        z, gw = gauss_legendre(8)
        half = 0.5 * (right - left)
        pts = (0.5 * (right + left))[:, None] + half[:, None] * z
        with np.errstate(all="ignore"):
            dens = np.exp(np.asarray(self.logpdf(pts.ravel()), dtype=float)).reshape(pts.shape)
        dens = np.where(np.isfinite(dens), dens, 0.0)
        partial = half * (dens @ gw)
        out = np.where(flat <= self.edges[0], 0.0, cum[k] + partial)
        out = np.where(flat >= self.edges[-1], self.mass, out)
        return (out / self.mass).reshape(t.shape)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n points by inverting the CDF tabulated at the nodes and edges, shape (n, 1)."""
        grid = np.unique(np.concatenate([self.edges, self.x]))
        table = self.cdf(grid)
        return np.interp(rng.random(n), table, grid)[:, None]


@dataclass
class DiscreteTable:
    """A probability mass function on integers k (K,) with probabilities p (K,)."""

    k: np.ndarray
    p: np.ndarray
    mass: float

    def nodes(self):
        """The atoms k (K, 1) and their normalised probabilities (K,)."""
        return self.k[:, None].astype(float), self.p / self.mass

    def cdf(self, t):
        """P(K <= floor(t)) at points t of any shape."""
        t = np.asarray(t, dtype=float)
        cum = np.cumsum(self.p) / self.mass
        i = np.searchsorted(self.k, np.floor(t), side="right") - 1
        return np.where(i < 0, 0.0, cum[np.clip(i, 0, len(cum) - 1)])

    def sample(self, rng, n):
        """n atoms drawn with the normalised probabilities, as floats, shape (n, 1)."""
        return rng.choice(self.k, size=n, p=self.p / self.p.sum()).astype(float)[:, None]


def discrete_table(logpmf: Callable, support=(0, math.inf), cap: int = 10**6) -> DiscreteTable:
    """Tabulate a log pmf on the integers of `support` until the remaining mass is negligible."""
    lo = int(support[0]) if math.isfinite(support[0]) else -cap // 2
    hi = int(support[1]) if math.isfinite(support[1]) else lo + cap
    ks = np.arange(lo, min(hi, lo + cap) + 1, dtype=float)
    with np.errstate(all="ignore"):
        p = np.exp(np.asarray(logpmf(ks), dtype=float))
    p = np.where(np.isfinite(p), p, 0.0)
    keep = p > 1e-300
    if not keep.any():
        raise UsageError("the probability mass function is zero on its support")
    return DiscreteTable(ks[keep], p[keep], float(p.sum()))
