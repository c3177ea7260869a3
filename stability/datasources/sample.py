"""p_data as a sample of points (a ``.npy``, ``.csv`` or ``.txt`` file): the empirical measure.

Expectations are sample averages; the Monte-Carlo error they carry is measured by the
bootstrap (`reweighted`: the same points with multinomial weights), so every number computed
from a sample comes with a standard error (`stability.operator_summary`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stability.datasources.base import DataSource
from stability.errors import UsageError, check_finite

MAX_VALUES = 50_000_000  # refuse files claiming more values than this before reading them


class SampleData(DataSource):
    """The empirical distribution of points x_1..x_n (optionally weighted).

    Parameters
    ----------
    points : array, shape (n,) or (n, d)
    weights : array, shape (n,), optional
        Non-negative, summing to 1 (default 1/n each).
    name : str
    """

    def __init__(self, points, weights=None, name: str = "sample"):
        x = check_finite(points, name)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[0] < 2:
            raise UsageError(
                f"{name}: a sample needs shape (n,) or (n, d) with n >= 2, got {x.shape}"
            )
        self.points = x
        self.size = int(x.shape[0])
        self.dim = int(x.shape[1])
        self.weights = np.full(self.size, 1.0 / self.size) if weights is None else weights
        self.discrete = bool(np.all(x == np.round(x)))
        self.name = name

    @classmethod
    def load(cls, path: str) -> SampleData:
        """Read a sample from .npy (any float or integer array) or a text file (.csv, .txt)."""
        file = Path(path)
        if not file.is_file():
            raise UsageError(f"no such data file: {path}")
        try:
            if file.suffix == ".npy":
                arr = np.load(file, mmap_mode="r", allow_pickle=False)
                if arr.size > MAX_VALUES:
                    raise UsageError(f"{path} holds {arr.size} values (at most {MAX_VALUES})")
                arr = np.array(arr, dtype=float)
            else:
                arr = np.loadtxt(file, delimiter="," if file.suffix == ".csv" else None, ndmin=1)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
        return cls(arr, name=file.name)

    def nodes(self):
        """The points (N, dim) and their weights (N,) (1/N unless reweighted)."""
        return self.points, self.weights

    def sample(self, rng, n):
        """n points drawn from the empirical distribution (with replacement)."""
        idx = rng.choice(self.size, size=n, p=self.weights)
        return self.points[idx]

    def cdf(self, x):
        """Weighted empirical CDF sum_i w_i 1[x_i <= x] at 1D points x of any shape."""
        if self.dim != 1:
            raise UsageError("the CDF of a sample is defined for 1D data only")
        table = self.__dict__.get("_cdf_table")
        if table is None:
            order = np.argsort(self.points[:, 0], kind="stable")
            cum = np.concatenate([[0.0], np.cumsum(self.weights[order])])
            table = self.__dict__["_cdf_table"] = (self.points[order, 0], cum)
        xs, cum = table
        return cum[np.searchsorted(xs, np.asarray(x, dtype=float), side="right")]

    def jumps(self):
        """The distinct 1D points (every one is an atom), None in more dimensions."""
        return np.unique(self.points[:, 0]) if self.dim == 1 else None

    def reweighted(self, weights: np.ndarray) -> SampleData:
        """The same points with other weights (n,), e.g. a bootstrap replicate."""
        w = np.asarray(weights, dtype=float)
        out = SampleData.__new__(SampleData)
        out.__dict__.update(
            points=self.points,
            size=self.size,
            dim=self.dim,
            discrete=self.discrete,
            name=self.name,
            weights=w / w.sum(),
        )
        return out

    def describe(self) -> str:
        """The sample's name, size and dimension."""
        return f"sample {self.name}: n = {self.size} points in R^{self.dim}" + (
            " (integers)" if self.discrete else ""
        )
