"""Checks of Theorem 1 (local stability of G_lambda^inf at theta*), eqs (11)-(12).

The norm of the Jacobian is measured by central finite differences of the map
(`props34.jacobian_at_star`) wherever the theorem's condition lam (1 + L eps/alpha) < 1/2
holds; how far beyond it the spectral radius stays below 1 is reported from the corrected
eq (78) (checked against finite differences by lemma-e1-eq78). Both checks take the operators
they measure (the paper's by default, a researcher's from `stability.family_checks`); where
eps is not computed they are inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from stability.checks import register
from stability.checks.props34 import (
    LAMBDAS,
    Radius,
    constants,
    fixed_radius,
    jacobian_at_star,
    near,
    resolve_operators,
)
from stability.checks.verdict import Measured, decide, result
from stability.operator import Operator

GROUP = "theorem1"


def _spectral_radius(j):
    return float(np.max(np.abs(np.linalg.eigvals(j))))


def _unmeasurable(op: Operator, c: dict) -> Measured | None:
    """An inconclusive claim where Theorem 1 cannot be evaluated on `op`, else None."""
    if math.isnan(c["eps"]):
        why = "eps (eq 8) is not computed for these data"
    elif op.theorem1_lambda_max() <= 0:
        why = "Theorem 1's condition holds for no lambda > 0 (eps L = inf)"
    else:
        return None
    return Measured(math.nan, 0.0, case=dict(family=op.name, why=why))


@register(
    "theorem1-bound",
    "If lam (1 + L eps/alpha) < 1/2 then ||J G_lambda^inf(theta*)||_2 <= lam (alpha + eps L)/"
    "(alpha - lam (alpha + eps L)) < 1; and where the spectral radius actually stays below 1",
    "Theorem 1, eq (11)",
    GROUP,
)
def check_theorem1(ctx, ops: Sequence[Operator] | None = None) -> dict:
    """Theorem 1, eq (11): ||J G_lambda(theta*)||_2 <= lam (alpha + eps L) / (alpha - lam
    (alpha + eps L)) < 1 wherever lam (1 + L eps / alpha) < 1/2.

    J (p, p) by central finite differences of the map at 0.5 and 0.99 of the condition's largest
    lambda (and at `LAMBDAS` below it outside quick mode); the condition, the bound and
    bound < 1 are claims at each. How far beyond the condition the spectral radius of the
    corrected eq (78) stays below 1 is reported, not judged.

    Parameters
    ----------
    ctx : Context
        Quick mode measures two lambdas per operator, the others add `LAMBDAS` below the edge.
    ops : sequence of Operator, optional
        Default `props34.operators()`; the third (else the first) gives `measured`.

    Returns
    -------
    dict
        `CheckResult` fields; a claim is inconclusive on an operator whose eps is not computed.
    """
    ops = resolve_operators(ops)
    rows, claims, families = [], [], []
    for op in ops:
        c = constants(op)
        missing = _unmeasurable(op, c)
        if missing is not None:
            claims.append(missing)
            continue
        op_rows = _bound_rows(ctx, op, c)
        rows += op_rows
        for row in op_rows:
            case = dict(family=op.name, lam=row["lam"])
            # The condition holds on this grid by construction (lam < lam_thm): both are claims.
            claims.append(Measured(float(not row["condition"]), 0.0, case=dict(case, what="cond")))
            claims.append(Measured(row["norm_J"], row["bound11"] + 1e-7, case=case))
            claims.append(Measured(row["bound11"], 1.0, case=dict(case, what="bound < 1")))
        families.append(_beyond_condition(op, c))
    head_op = ops[2] if len(ops) > 2 else ops[0]
    lam_h = next(
        (0.5 * s["lambda_theorem"] for s in families if s["family"] == head_op.name), math.nan
    )
    head = next(
        (r for r in rows if r["family"] == head_op.name and abs(r["lam"] - lam_h) < 1e-12), None
    )
    return result(
        claims,
        summary=_bound_summary(claims, rows, families),
        details=dict(rows=rows, families=families),
        measured=None if head is None else head["norm_J"],
        expected=None if head is None else head["bound11"],
    )


def _bound_summary(claims, rows, families):
    """What theorem1-bound found, and how far beyond its condition the radius stays < 1."""
    verdict = {"holds": "holds", "fails": "fails"}.get(decide(claims)[0], "is not decided")
    summary = (
        f"eq (11) {verdict} wherever its condition does ({len(rows)} (family, lambda) cases, "
        "finite differences)"
    )
    if families:
        summary += (
            "; it is conservative: "
            + "; ".join(
                f"{s['family']}: theorem allows lambda < {s['lambda_theorem']:.3f}, spectral "
                f"radius < 1 up to lambda = {s['lambda_spectral']}"
                for s in families
            )
            + f" (eigenvalues of A^-1 B; rho < 1 on the grid up to lambda = {max(LAMBDAS):g})"
        )
    return summary + _not_evaluated(claims)


def _not_evaluated(claims):
    """'; not evaluated on ...' for the operators `_unmeasurable` set aside, else ''."""
    why = [f"{m.case['family']}: {m.case['why']}" for m in claims if "why" in m.case]
    return "; not evaluated on " + "; ".join(why) if why else ""


def _bound_rows(ctx, op, c):
    """||J||_2, spectral radius and bound (11) on the grid of lambda below the condition's edge."""
    lam_thm = op.theorem1_lambda_max()
    # The condition's edge and its middle; the fixed grid below the edge in larger modes.
    grid = {0.5 * lam_thm, 0.99 * lam_thm}
    if ctx.mode != "quick":
        grid |= {lam for lam in LAMBDAS if lam < lam_thm}
    rows = []
    for lam in sorted(grid):
        j = jacobian_at_star(op, lam)
        rows.append(
            dict(
                family=op.name,
                lam=lam,
                condition=bool(lam * (1 + c["eps_L"] / c["alpha"]) < 0.5),
                norm_J=float(np.linalg.norm(j, 2)),
                spectral_radius=_spectral_radius(j),
                bound11=op.theorem1_bound(lam),
            )
        )
    return rows


def _beyond_condition(op, c):
    """Where the spectral radius of J stays below 1, from the eigenvalues of
    (I + lam M)^-1 lam M, M = A^-1 B~ (the corrected eq 78)."""
    m = np.linalg.solve(op.A(), op.H22())
    rho = {
        lam: _spectral_radius(np.linalg.solve(np.eye(len(m)) + lam * m, lam * m)) for lam in LAMBDAS
    }
    return dict(
        family=op.name,
        alpha=c["alpha"],
        L=c["L"],
        eps=c["eps"],
        lambda_theorem=op.theorem1_lambda_max(),
        lambda_spectral=op.spectral_lambda_max(),
        largest_grid_lambda_with_rho_lt_1=max(
            (lam for lam, r in rho.items() if r < 1), default=0.0
        ),
    )


@register(
    "theorem1-convergence",
    "Under Theorem 1's condition theta_{t+1} = G_lambda^inf(theta_t) converges to theta* at a "
    "linear rate no worse than the bound of eq (11)",
    "Theorem 1, eq (12)",
    GROUP,
)
def check_theorem1_convergence(
    ctx, ops: Sequence[Operator] | None = None, radius: Radius = fixed_radius
) -> dict:
    """Theorem 1, eq (12): theta_{t+1} = G_lambda^inf(theta_t) converges to theta* at a linear
    rate no worse than bound (11).

    From a point at distance `radius(op)` of theta*, at 0.5 and 0.99 of the condition's largest
    lambda: the final distance <= the initial one and the observed geometric rate <= bound (11)
    + 1e-3 are claims.

    Parameters
    ----------
    ctx : Context
        Seeds the starting points; the mode sets the number of steps.
    ops : sequence of Operator, optional
        Default `props34.operators()`.
    radius : callable, optional
        Operator -> distance of the start from theta* (`props34.fixed_radius`: 0.05).

    Returns
    -------
    dict
        `CheckResult` fields; inconclusive where eps is not computed.
    """
    rng = ctx.rng("theorem1-convergence")
    rows, claims = [], []
    steps = ctx.size(8, 15, 30)
    for op in resolve_operators(ops):
        missing = _unmeasurable(op, constants(op))
        if missing is not None:
            claims.append(missing)
            continue
        for frac in (0.5, 0.99):  # the lambdas of theorem1-bound (cached Jacobians)
            lam = frac * op.theorem1_lambda_max()
            row = _iterate(op, lam, near(op, rng, radius(op)), steps)
            rows.append(row)
            case = dict(family=op.name, lam=lam)
            claims.append(Measured(row["final"], row["initial"], case=dict(case, what="converges")))
            claims.append(
                Measured(
                    row["rate"], row["bound11"] + 1e-3, case=dict(case, what="rate <= eq (11)")
                )
            )
    top_rate = max((r["rate"] for r in rows), default=math.nan)
    if decide(claims)[0] == "holds":
        summary = (
            f"all {len(rows)} runs converge to theta*; observed rates (<= {top_rate:.3f}) track "
            "the spectral radius and stay below eq (11)"
        )
    else:
        summary = f"{len(rows)} runs, observed rates up to {top_rate:.3f} (see the rows)"
    return result(
        claims,
        summary=summary + _not_evaluated(claims),
        details=dict(rows=rows, steps=steps),
        measured=top_rate,
        expected=max((r["bound11"] for r in rows), default=math.nan),
    )


def _iterate(op, lam, theta, steps):
    """Distances to theta* along `steps` iterations of G_lambda^inf from theta, and their rate."""
    ts = op.theta_star()
    dists = [float(np.linalg.norm(theta - ts))]
    for _ in range(steps):
        theta = op.g_inf(theta, lam)
        dists.append(float(np.linalg.norm(theta - ts)))
    # Rate from step 1 (past the transient of the nonlinear map) to the last step above
    # the numerical floor of G (~1e-10: the Newton tolerance of the maximisation).
    usable = [k for k in range(1, steps + 1) if dists[k] > 1e-8]
    rate = (
        (dists[usable[-1]] / dists[usable[0]]) ** (1.0 / (usable[-1] - usable[0]))
        if len(usable) > 1
        else 0.0
    )
    return dict(
        family=op.name,
        lam=lam,
        initial=dists[0],
        final=dists[-1],
        rate=rate,
        bound11=op.theorem1_bound(lam),
        spectral_radius=_spectral_radius(jacobian_at_star(op, lam)),
    )
