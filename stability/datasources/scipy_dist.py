"""p_data from scipy.stats: a distribution by name and parameters (``t:df=3``, ``poisson:mu=3``)."""

from __future__ import annotations

import math

import numpy as np

from stability.datasources.base import DataSource
from stability.errors import UsageError
from stability.families.density1d import DensityTable
from stability.families.quadrature import tanh_sinh_unit

DISCRETE_TAIL = 1e-15  # discrete supports: from the 1e-15 quantiles, then widened
MAX_ATOMS = 2_000_000
# scipy's vonmises has a periodic density on the whole line; vonmises_line is the same law on
# one period [loc - pi, loc + pi], which is what a distribution of angles is.
ALIASES = {"vonmises": "vonmises_line"}


def scipy_distribution(name: str, params: dict):
    """The frozen scipy.stats distribution `name` with keyword `params` (UsageError if bad)."""
    from scipy import stats

    dist = getattr(stats, ALIASES.get(name, name), None)
    if not isinstance(dist, (stats.rv_continuous, stats.rv_discrete)):
        raise UsageError(
            f"unknown data {name!r}: not a scipy.stats distribution, a .npy file or grid:FILE"
        )
    bad = [k for k, v in params.items() if not isinstance(v, float)]
    if bad:
        raise UsageError(f"parameter {bad[0]} of {name!r} must be a number")
    try:
        frozen = dist(**params)
        with np.errstate(all="ignore"):
            median = float(frozen.median())
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad parameters for {name!r}: {exc}") from None
    if math.isnan(median):  # scipy answers nan for parameters outside the domain
        raise UsageError(f"bad parameters for {name!r}: {params} (outside scipy's domain)")
    return frozen


class ScipyData(DataSource):
    """A scipy.stats distribution as p_data.

    Continuous: E_data[f] = int_0^1 f(F^-1(u)) du by tanh-sinh quadrature on each half of
    (0, 1) (the quantile function is taken from the lower tail below the median and from the
    upper tail above, so that both tails are resolved to u ~ 1e-30); this handles heavy tails
    and densities with a kink at the median (Laplace). Distributions whose quantile function
    scipy finds by root finding (slow) are integrated in x on an adaptive composite rule of
    their density instead (`stability.families.density1d`). Discrete: the probability mass function
    on its support, cut where the tails hold less than about 1e-300.

    Parameters
    ----------
    name : str
        A scipy.stats distribution, e.g. ``"laplace"``, ``"t"``, ``"gamma"``, ``"poisson"``.
    params : dict
        Its keyword parameters (shape parameters, ``loc``, ``scale``).
    dist : scipy distribution, optional
        A ready distribution (e.g. ``scipy.stats.rv_discrete(values=...)``) instead of a name.
    """

    def __init__(self, name: str, params: dict | None = None, dist=None):
        self.params = dict(params or {})
        self.dist = scipy_distribution(name, self.params) if dist is None else dist
        self.dist_name = name
        self.discrete = hasattr(getattr(self.dist, "dist", self.dist), "pmf")
        self.name = name if not self.params else f"{name}({_fmt(self.params)})"

    def nodes(self):
        """Quadrature rule for E_data, computed once: nodes (N, 1), weights (N,) summing to 1.

        Continuous: tanh-sinh nodes in quantile space, each half of (0, 1) from its nearer tail
        (or a tabulated density when scipy finds quantiles by root finding); discrete: the atoms
        between the 1e-15 quantiles, widened, with their probabilities.
        """
        cache = self.__dict__.get("_nodes")
        if cache is None:
            cache = self._discrete_nodes() if self.discrete else self._continuous_nodes()
            self.__dict__["_nodes"] = cache
        return cache

    def _continuous_nodes(self):
        if not self.fast_quantiles():
            table = DensityTable.build(self.dist.logpdf, self.dist.support(), panels=800)
            if abs(table.mass - 1) > 1e-6:
                raise UsageError(
                    f"{self.name}: scipy's density integrates to {table.mass:.6g} on its support"
                )
            return table.nodes()
        u, comp, w = tanh_sinh_unit(level=6)
        # Each half of (0, 1) mapped to the unit interval: quantiles from the nearer tail.
        lower = self.dist.ppf(0.5 * u)
        upper = self.dist.isf(0.5 * u)
        x = np.concatenate([lower, upper])
        ws = np.concatenate([0.5 * w, 0.5 * w])
        keep = np.isfinite(x)
        x, ws = x[keep], ws[keep]
        order = np.argsort(x)
        return x[order][:, None], ws[order] / ws.sum()

    def fast_quantiles(self) -> bool:
        """True when scipy has the quantile function in closed form (not by root finding)."""
        from scipy import stats

        generic = stats.rv_continuous._ppf, stats.rv_continuous._isf
        cls = type(getattr(self.dist, "dist", self.dist))
        return cls._ppf is not generic[0] and cls._isf is not generic[1]

    def _discrete_nodes(self):
        with np.errstate(all="ignore"):
            lo = float(self.dist.ppf(DISCRETE_TAIL))
            hi = float(self.dist.isf(DISCRETE_TAIL))
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo > MAX_ATOMS:
            raise UsageError(f"{self.name}: support too wide to tabulate ({lo:g} .. {hi:g})")
        # Beyond the 1e-15 quantiles the mass is negligible but kept: widen, then drop zeros.
        span = hi - lo + 10
        k = np.arange(max(lo - span, self.dist.support()[0]), hi + span + 1, dtype=float)
        p = self.dist.pmf(k)
        keep = p > 1e-300
        return k[keep][:, None], p[keep] / p[keep].sum()

    def sample(self, rng, n):
        """n draws of the scipy distribution, shape (n, 1)."""
        return np.asarray(self.dist.rvs(size=n, random_state=rng), dtype=float).reshape(n, 1)

    def cdf(self, x):
        """scipy's CDF at x, same shape as x."""
        return self.dist.cdf(x)

    def pdf(self, x):
        """Density (continuous) at points x, flattened to (N,)."""
        return self.dist.pdf(np.asarray(x, dtype=float).reshape(-1))

    def has_mean(self) -> bool:
        """True when scipy reports a finite mean."""
        with np.errstate(all="ignore"):
            return bool(np.isfinite(self.dist.mean()))

    def jumps(self):
        """The atoms (N,) for a discrete distribution, None for a continuous one."""
        if self.discrete:
            return self.nodes()[0][:, 0]
        return None

    def describe(self) -> str:
        """``scipy.stats.NAME(params) [discrete|continuous]``."""
        kind = "discrete" if self.discrete else "continuous"
        return f"scipy.stats.{self.dist_name}({_fmt(self.params)}) [{kind}]"


def _fmt(params: dict) -> str:
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
