"""p_data as a density tabulated on a grid (``grid:FILE``: two columns x, density).

The density is linear between grid points and zero outside them; it need not be normalised.
Expectations use 4 Gauss-Legendre points per cell (exact for polynomials of degree 6 times the
linear density), the CDF is piecewise quadratic, sampling inverts it exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stability.datasources.base import DataSource
from stability.errors import UsageError, check_finite
from stability.families.quadrature import gauss_legendre


class GridData(DataSource):
    """A 1D density given at increasing points.

    Parameters
    ----------
    x : array, shape (K,)
        Strictly increasing grid.
    density : array, shape (K,)
        Non-negative values (any positive total mass).
    name : str
    """

    def __init__(self, x, density, name: str = "grid"):
        x = check_finite(x, f"{name} (x)").reshape(-1)
        d = check_finite(density, f"{name} (density)").reshape(-1)
        if x.size < 2 or x.size != d.size:
            raise UsageError(f"{name}: need >= 2 grid points with one density value each")
        if np.any(np.diff(x) <= 0):
            raise UsageError(f"{name}: grid points must be strictly increasing")
        if np.any(d < 0):
            raise UsageError(f"{name}: the density must be >= 0")
        h = np.diff(x)
        cell = 0.5 * h * (d[1:] + d[:-1])
        if cell.sum() <= 0:
            raise UsageError(f"{name}: the density has zero mass")
        self.x, self.h = x, h
        self.density = d / cell.sum()
        self.cum = np.concatenate([[0.0], np.cumsum(cell / cell.sum())])
        self.name = name

    @classmethod
    def load(cls, path: str) -> GridData:
        """Read (x, density) from .npy (shape (K, 2)) or a two-column .csv/.txt file."""
        file = Path(path)
        if not file.is_file():
            raise UsageError(f"no such grid file: {path}")
        try:
            if file.suffix == ".npy":
                arr = np.load(file, allow_pickle=False)
            else:
                arr = np.loadtxt(file, delimiter="," if file.suffix == ".csv" else None, ndmin=2)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
        arr = np.asarray(arr, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise UsageError(f"{path}: a grid needs two columns (x, density), got {arr.shape}")
        return cls(arr[:, 0], arr[:, 1], name=f"grid {file.name}")

    def nodes(self):
        """4 Gauss-Legendre points per cell, weighted by the linear density.

        Nodes (4 (K - 1), 1) for K grid points, weights (4 (K - 1),) summing to 1.
        """
        z, gw = gauss_legendre(4)
        t = 0.5 * (z + 1)  # position inside each cell, in [0, 1]
        d0, d1 = self.density[:-1, None], self.density[1:, None]
        pts = self.x[:-1, None] + self.h[:, None] * t
        w = 0.5 * gw * self.h[:, None] * (d0 + (d1 - d0) * t)
        return pts.reshape(-1, 1), w.reshape(-1) / w.sum()

    def cdf(self, t):
        """The piecewise quadratic CDF at points t of any shape.

        0 left of the grid, 1 right of it.
        """
        t = np.asarray(t, dtype=float)
        k = np.clip(np.searchsorted(self.x, t, side="right") - 1, 0, self.h.size - 1)
        s = np.clip(t - self.x[k], 0.0, self.h[k])
        d0, d1 = self.density[k], self.density[k + 1]
        inside = self.cum[k] + d0 * s + (d1 - d0) * s * s / (2 * self.h[k])
        return np.where(t < self.x[0], 0.0, np.where(t >= self.x[-1], 1.0, inside))

    def sample(self, rng, n):
        """n draws by exact inversion of the piecewise quadratic CDF, shape (n, 1)."""
        u = rng.random(n)
        k = np.clip(np.searchsorted(self.cum, u, side="right") - 1, 0, self.h.size - 1)
        d0, d1, h = self.density[k], self.density[k + 1], self.h[k]
        r = u - self.cum[k]
        slope = (d1 - d0) / h
        # Solve d0 s + slope s^2 / 2 = r for s in [0, h]; the form avoids cancellation.
        disc = np.sqrt(np.maximum(d0 * d0 + 2 * slope * r, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(d0 + disc > 0, 2 * r / (d0 + disc), 0.0)
        return (self.x[k] + np.clip(s, 0.0, h))[:, None]

    def pdf(self, t):
        """The linear interpolant, zero outside the grid, at points t flattened to (N,)."""
        return np.interp(np.asarray(t, dtype=float).reshape(-1), self.x, self.density, 0, 0)

    def describe(self) -> str:
        """The name, the number of grid points and their range."""
        return f"{self.name}: density on {self.x.size} points in [{self.x[0]:g}, {self.x[-1]:g}]"
