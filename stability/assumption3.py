"""Assumption 3's constants (a, b) and the contraction rho of Theorem 2, by simulation.

Assumption 3 (eq 13): for theta in a neighbourhood U of theta*, with probability 1 - delta,
||G_lambda^n(theta) - G_lambda^inf(theta)|| <= eps_OPT + a sqrt(log(b/delta)) / sqrt(n).
Here G^n is the exact refit (eps_OPT = 0 up to Newton's tolerance) on n fresh points of p_data
and floor(lam n) samples of p_theta. For points theta of U and several n, the
(1 - delta)-quantiles q of the deviation are measured over independent draws and (a, b) is the
pair that covers every measured q with the smallest radius a sqrt(log(b/delta)) at delta = 5%;
rho is the largest ||G^inf(theta) - theta*|| / ||theta - theta*|| over U (eq 109). Theorem 2
(eq 14) then bounds ||theta_t^n - theta*||.
"""

from __future__ import annotations

import math

import numpy as np

from stability.errors import check_lam
from stability.operator import NotConverged, Operator

DELTA = 0.05
B_GRID = (1.0, 2.0, math.e, 5.0, 10.0, 30.0, 100.0)


def neighbourhood(op: Operator, radius: float, count: int, rng) -> np.ndarray:
    """theta* and `count` valid points at distance `radius` from it, shape (count + 1, p)."""
    ts = op.theta_star()
    out = [ts]
    for _ in range(100 * count):
        if len(out) > count:
            break
        u = rng.standard_normal(ts.size)
        cand = ts + radius * u / np.linalg.norm(u)
        if op.family.valid(cand):
            out.append(cand)
    return np.array(out)


def default_radius(op: Operator) -> float:
    """The radius of U: 5% of max(1, ||theta*||)."""
    return 0.05 * max(1.0, float(np.linalg.norm(op.theta_star())))


def deviations(op: Operator, theta, lam: float, n: int, draws: int, rng) -> np.ndarray:
    """||G^n(theta) - G^inf(theta)|| over `draws` independent samplings, shape (draws,).

    A draw whose refit has no maximiser (e.g. a class never drawn) counts as infinite.
    """
    target = op.g_inf(theta, lam)
    out = np.empty(draws)
    for i in range(draws):
        real = op.data.sample(rng, n)
        try:
            out[i] = np.linalg.norm(op.g_n(theta, lam, real, rng) - target)
        except (NotConverged, ValueError, np.linalg.LinAlgError):
            out[i] = math.inf
    return out


def fit_ab(quantiles) -> tuple[float, float]:
    """(a, b) covering every (q sqrt(n), delta) with the smallest radius at delta = DELTA."""
    best = None
    for b in B_GRID:
        a = max(qn / math.sqrt(math.log(b / d)) for qn, d in quantiles)
        radius = a * math.sqrt(math.log(b / DELTA))
        if best is None or radius < best[2]:
            best = (a, b, radius)
    return best[0], best[1]


def estimate_assumption3(
    op: Operator,
    lam: float,
    rng: np.random.Generator,
    ns=(100, 400),
    deltas=(0.05, 0.1, 0.2),
    points: int = 3,
    draws: int = 30,
    radius: float | None = None,
) -> dict:
    """Assumption 3's (a, b) and rho on U = ball(theta*, radius), by simulation.

    Parameters
    ----------
    op : Operator
    lam : float
        Finite lambda > 0.
    rng : numpy Generator
    ns : sequence of int
        Sample sizes n of the one-step deviations.
    deltas : sequence of float
        Levels whose (1 - delta)-quantiles are fitted.
    points : int
        Points of U besides theta* itself.
    draws : int
        Draws per (theta, n).
    radius : float, optional
        Radius of U (default `default_radius`).

    Returns
    -------
    dict with a, b, rho, radius, ns, deltas, points, draws.
    """
    lam = check_lam(lam, allow_inf=False)
    radius = default_radius(op) if radius is None else float(radius)
    thetas = neighbourhood(op, radius, points, rng)
    quantiles = []
    for theta in thetas:
        for n in ns:
            dev = deviations(op, theta, lam, int(n), draws, rng)
            for delta in deltas:
                quantiles.append((float(np.quantile(dev, 1 - delta)) * math.sqrt(n), delta))
    a, b = fit_ab(quantiles)
    ts = op.theta_star()
    rho = max(
        float(np.linalg.norm(op.g_inf(t, lam) - ts) / np.linalg.norm(t - ts)) for t in thetas[1:]
    )
    return dict(
        a=a,
        b=b,
        rho=rho,
        radius=radius,
        ns=list(ns),
        deltas=list(deltas),
        points=int(points),
        draws=int(draws),
    )


def theorem2_bound(consts: dict, n: int, dist0: np.ndarray, steps: int) -> np.ndarray:
    """Right-hand side of eq (14) for t = 1..steps, shape (runs, steps); eps_OPT = 0.

    Parameters
    ----------
    consts : dict with a, b, rho (from `estimate_assumption3`)
    n : int
    dist0 : array, shape (runs,), ||theta_0 - theta*|| of each run
    steps : int
    """
    a, b, rho = consts["a"], consts["b"], consts["rho"]
    ts = np.arange(1, steps + 1)
    geo = np.array([sum(rho**k for k in range(t + 1)) for t in ts])
    radius = a / math.sqrt(n) * np.sqrt(np.log(b * ts / DELTA)) * geo
    return radius + rho**ts * np.asarray(dist0, dtype=float)[:, None]
