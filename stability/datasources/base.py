"""The data protocol: what the operator needs to know about p_data.

A data source has ``nodes()`` (a quadrature rule for E_data: nodes (N, dim), weights (N,)
summing to 1), ``sample(rng, n)`` (n i.i.d. points, (n, dim)), in 1D ``cdf(x)`` (for eps =
W1, eq 8), ``mean`` (dim,), ``cov`` (dim, dim), ``name``, ``dim``, ``discrete`` and
``describe()``. A sample (`SampleData`) also has ``size`` (the number of points) and
``reweighted(weights)``: the same points with other weights, for the bootstrap that carries
its Monte-Carlo error into every number. The default-setting classes of `stability.families`
follow the same protocol.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np


class DataSource:
    """Base class: mean, covariance and checks derived from ``nodes()``."""

    name: str = "data"
    dim: int = 1
    discrete: bool = False
    size: int | None = None  # number of points of an empirical distribution, else None

    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature rule for E_data: nodes (N, dim), weights (N,) summing to 1."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n i.i.d. points, shape (n, dim)."""
        raise NotImplementedError

    def cdf(self, x) -> np.ndarray:
        """CDF at 1D points x of any shape."""
        raise NotImplementedError(f"data {self.name} give no CDF")

    @cached_property
    def mean(self) -> np.ndarray:
        """E_data[x], shape (dim,)."""
        x, w = self.nodes()
        return w @ x / w.sum()

    @cached_property
    def cov(self) -> np.ndarray:
        """Cov_data[x], shape (dim, dim)."""
        x, w = self.nodes()
        c = x - self.mean
        return np.einsum("n,ni,nj->ij", w, c, c) / w.sum()

    def support(self) -> tuple[float, float]:
        """Where the 1D rule's nodes with non-negligible weight lie: (lo, hi)."""
        x, w = self.nodes()
        keep = x[w > 1e-18 * w.max(), 0]
        return float(keep.min()), float(keep.max())

    def has_mean(self) -> bool:
        """False when E|x| is infinite (then W1 to any light-tailed model is infinite)."""
        return True

    def jumps(self) -> np.ndarray | None:
        """Atoms of the distribution (points where the 1D CDF jumps), if any."""
        return None

    def describe(self) -> str:
        """One line that says what the data are (default: the name)."""
        return self.name
