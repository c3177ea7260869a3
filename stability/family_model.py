"""A model of any family as a plug-in of Algorithm 1 (`stability.loop`'s fit/sample/state).

``fit`` is the maximum-likelihood refit of eq (2), started from the current parameters (the
local maximiser reached from theta_t, the tie-break of eq 3); ``sample`` draws from p_theta.
"""

from __future__ import annotations

import numpy as np

from stability.loop import PointSet
from stability.operator import maximise


class FamilyModel:
    """p_theta of a family, refit by Newton's method on each training set (one run).

    Parameters
    ----------
    family : a family (`stability.families.Family` protocol)
    theta0 : array, shape (p,)
        Where the first fit (on the real data) starts.
    tol : float
        Gradient tolerance of the refit (eps_OPT of Theorem 2 is this small).
    """

    def __init__(self, family, theta0, tol: float = 1e-10):
        self.family = family
        self.theta = np.asarray(theta0, dtype=float).copy()
        self.tol = tol

    def fit(self, data: PointSet) -> None:
        """Refit on a single-run PointSet (x of shape (1, N, dim))."""
        x = data.x[0]
        self.theta = maximise(self.family, self.theta, x, np.ones(len(x)), tol=self.tol)

    def sample(self, k: int, rng: np.random.Generator) -> PointSet:
        """k points of p_theta as a single-run PointSet, shape (1, k, dim)."""
        return PointSet(self.family.sample(rng, k, self.theta)[None])

    def state(self) -> dict:
        """The fitted parameter, ``{"theta": theta}``, a copy of shape (p,)."""
        return {"theta": self.theta.copy()}
