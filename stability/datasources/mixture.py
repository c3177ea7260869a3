"""p_data as a finite mixture of data sources (``0.3*norm:loc=-1 + 0.7*laplace:loc=2``), and a
model p_theta used as data (`FamilyData`, the start of a misspecification path)."""

from __future__ import annotations

import numpy as np

from stability.datasources.base import DataSource
from stability.errors import UsageError


class MixtureData(DataSource):
    """sum_k w_k p_k for data sources p_k of one dimension.

    Parameters
    ----------
    components : list of (weight, source)
        Weights > 0 (normalised here).
    """

    def __init__(self, components, name: str | None = None):
        if not components:
            raise UsageError("a mixture needs at least one component")
        weights = np.array([float(w) for w, _ in components])
        if np.any(~np.isfinite(weights)) or np.any(weights <= 0):
            raise UsageError(f"mixture weights must be > 0, got {weights.tolist()}")
        dims = {src.dim for _, src in components}
        if len(dims) != 1:
            raise UsageError(f"mixture components of different dimensions {sorted(dims)}")
        self.weights = weights / weights.sum()
        self.sources = [src for _, src in components]
        self.dim = dims.pop()
        self.discrete = all(getattr(s, "discrete", False) for s in self.sources)
        self.name = name or " + ".join(
            f"{w:g}*{s.name}" for w, s in zip(self.weights, self.sources)
        )

    def nodes(self):
        """The components' rules joined, component k's weights rescaled to sum w_k.

        Nodes (N, dim), weights (N,).
        """
        xs, ws = [], []
        for w, src in zip(self.weights, self.sources):
            x, q = src.nodes()
            xs.append(x)
            ws.append(w * q / q.sum())
        return np.concatenate(xs), np.concatenate(ws)

    def sample(self, rng, n):
        """n points of sum_k w_k p_k, shape (n, dim).

        Multinomial counts per component, then shuffled.
        """
        counts = rng.multinomial(n, self.weights)
        parts = [src.sample(rng, int(c)) for c, src in zip(counts, self.sources) if c > 0]
        x = np.concatenate(parts)
        return x[rng.permutation(n)]

    def cdf(self, x):
        """F(x) = sum_k w_k F_k(x) at 1D points x of any shape."""
        return sum(w * src.cdf(x) for w, src in zip(self.weights, self.sources))

    def pdf(self, x):
        """p(x) = sum_k w_k p_k(x) at 1D points x of any shape."""
        return sum(w * src.pdf(x) for w, src in zip(self.weights, self.sources))

    def has_mean(self) -> bool:
        """True when every component has a finite mean."""
        return all(getattr(s, "has_mean", lambda: True)() for s in self.sources)

    def jumps(self):
        """The union of the components' atoms, sorted, or None when no component has one."""
        parts = [
            j for j in (getattr(s, "jumps", lambda: None)() for s in self.sources) if j is not None
        ]
        return np.unique(np.concatenate(parts)) if parts else None

    def describe(self) -> str:
        """The mixture as ``w_1 x [component 1] + w_2 x [component 2] ...``."""
        return " + ".join(
            f"{w:g} x [{getattr(s, 'describe', lambda s=s: s.name)()}]"
            for w, s in zip(self.weights, self.sources)
        )


class FamilyData(DataSource):
    """The model p_theta of a family, used as data (eps = 0 when fitted by the same family)."""

    def __init__(self, family, theta, name: str | None = None):
        self.family = family
        self.theta = np.asarray(theta, dtype=float)
        self.dim = int(getattr(family, "dim", 1))
        self.discrete = bool(getattr(family, "discrete", False))
        self.name = name or f"{family.name}{np.round(self.theta, 4).tolist()}"

    def nodes(self):
        """The family's quadrature rule at theta, weights normalised to sum 1: (N, dim), (N,)."""
        x, w = self.family.nodes(self.theta)
        return x, w / w.sum()

    def sample(self, rng, n):
        """n draws from p_theta, shape (n, dim)."""
        return self.family.sample(rng, n, self.theta)

    def cdf(self, x):
        """The family's CDF F_theta(x) at 1D points x."""
        return self.family.cdf(x, self.theta)

    def pdf(self, x):
        """p_theta(x) = exp(logpdf(x, theta)) at 1D points x, flattened: shape (N,)."""
        return np.exp(self.family.logpdf(np.asarray(x, dtype=float).reshape(-1), self.theta))

    def describe(self) -> str:
        """The family's name and theta, rounded to 6 digits."""
        return f"the model {self.family.name} at theta = {np.round(self.theta, 6).tolist()}"
