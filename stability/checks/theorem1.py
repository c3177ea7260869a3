"""Checks of Theorem 1 (local stability of G_lambda^inf at theta*), eqs (11)-(12).

The norm of the Jacobian is measured by central finite differences of the map
(`props34.jacobian_fd`) wherever the theorem's condition lam (1 + L eps/alpha) < 1/2 holds;
how far beyond it the spectral radius stays below 1 is reported from the corrected eq (78)
(checked against finite differences by lemma-e1-eq78).
"""

from __future__ import annotations

import numpy as np

from stability.checks import register
from stability.checks.props34 import LAMBDAS, constants, jacobian_fd, near, operators
from stability.checks.verdict import Measured, result

GROUP = "theorem1"


def _spectral_radius(j):
    return float(np.max(np.abs(np.linalg.eigvals(j))))


@register(
    "theorem1-bound",
    "If lam (1 + L eps/alpha) < 1/2 then ||J G_lambda^inf(theta*)||_2 <= lam (alpha + eps L)/"
    "(alpha - lam (alpha + eps L)) < 1; and where the spectral radius actually stays below 1",
    "Theorem 1, eq (11)",
    GROUP,
)
def check_theorem1(ctx):
    rows, claims, families = [], [], []
    for i, op in enumerate(operators()):
        c = constants(op)
        lam_thm = op.theorem1_lambda_max()
        # The condition's edge and its middle; the fixed grid below the edge in larger modes.
        grid = {0.5 * lam_thm, 0.99 * lam_thm}
        if ctx.mode != "quick":
            grid |= {lam for lam in LAMBDAS if lam < lam_thm}
        grid = sorted(grid)
        for lam in grid:
            j = jacobian_fd(i, lam)
            row = dict(
                family=op.name,
                lam=lam,
                condition=bool(lam * (1 + c["eps_L"] / c["alpha"]) < 0.5),
                norm_J=float(np.linalg.norm(j, 2)),
                spectral_radius=_spectral_radius(j),
                bound11=op.theorem1_bound(lam),
            )
            rows.append(row)
            case = dict(family=op.name, lam=lam)
            # The condition holds on this grid by construction (lam < lam_thm): both are claims.
            claims.append(Measured(float(not row["condition"]), 0.0, case=dict(case, what="cond")))
            claims.append(Measured(row["norm_J"], row["bound11"] + 1e-7, case=case))
            claims.append(Measured(row["bound11"], 1.0, case=dict(case, what="bound < 1")))
        # Beyond the condition: eigenvalues of (I + lam M)^-1 lam M, M = A^-1 B (corrected).
        m = np.linalg.solve(op.A(), op.H22())
        rho = {
            lam: _spectral_radius(np.linalg.solve(np.eye(len(m)) + lam * m, lam * m))
            for lam in LAMBDAS
        }
        families.append(
            dict(
                family=op.name,
                alpha=c["alpha"],
                L=c["L"],
                eps=c["eps"],
                lambda_theorem=lam_thm,
                lambda_spectral=op.spectral_lambda_max(),
                largest_grid_lambda_with_rho_lt_1=max(
                    (lam for lam, r in rho.items() if r < 1), default=0.0
                ),
            )
        )
    head_op = operators()[2] if len(operators()) > 2 else operators()[0]
    lam_h = 0.5 * head_op.theorem1_lambda_max()
    head = next(r for r in rows if r["family"] == head_op.name and abs(r["lam"] - lam_h) < 1e-12)
    return result(
        claims,
        summary=f"eq (11) holds wherever its condition does ({len(rows)} (family, lambda) cases, "
        "finite differences); it is conservative: "
        + "; ".join(
            f"{s['family']}: theorem allows lambda < {s['lambda_theorem']:.3f}, spectral radius < 1 "
            f"up to lambda = {s['lambda_spectral']}"
            for s in families
        )
        + f" (eigenvalues of A^-1 B; rho < 1 on the grid up to lambda = {max(LAMBDAS):g})",
        details=dict(rows=rows, families=families),
        measured=head["norm_J"],
        expected=head["bound11"],
    )


@register(
    "theorem1-convergence",
    "Under Theorem 1's condition theta_{t+1} = G_lambda^inf(theta_t) converges to theta* at a "
    "linear rate no worse than the bound of eq (11)",
    "Theorem 1, eq (12)",
    GROUP,
)
def check_theorem1_convergence(ctx):
    rng = ctx.rng("theorem1-convergence")
    rows, claims = [], []
    steps = ctx.size(8, 15, 30)
    for i, op in enumerate(operators()):
        ts = op.theta_star()
        for frac in (0.5, 0.99):  # the lambdas of theorem1-bound (cached Jacobians)
            lam = frac * op.theorem1_lambda_max()
            theta = near(op, rng, 0.05)
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
            bound = op.theorem1_bound(lam)
            row = dict(
                family=op.name,
                lam=lam,
                initial=dists[0],
                final=dists[-1],
                rate=rate,
                bound11=bound,
                spectral_radius=_spectral_radius(jacobian_fd(i, lam)),
            )
            rows.append(row)
            case = dict(family=op.name, lam=lam)
            claims.append(Measured(dists[-1], dists[0], case=dict(case, what="converges")))
            claims.append(Measured(rate, bound + 1e-3, case=dict(case, what="rate <= eq (11)")))
    return result(
        claims,
        summary=f"all {len(rows)} runs converge to theta*; observed rates (<= "
        f"{max(r['rate'] for r in rows):.3f}) track the spectral radius and stay below eq (11)",
        details=dict(rows=rows, steps=steps),
        measured=max(r["rate"] for r in rows),
        expected=max(r["bound11"] for r in rows),
    )
