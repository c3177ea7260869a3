"""The operator and Theorem 1-2 checks on a (family, data) pair of the researcher's choosing.

`stability check --family F --data D` runs these on `Operator(F, D)`; each returns a
`stability.checks.CheckResult` (the JSON contract of `stability check`). They are the paper's
claims, measured independently of the formulas they test: the Jacobian by finite differences
of the map G_lambda^inf itself, convergence by iterating the map, Theorem 2 by Monte-Carlo runs
of Algorithm 1 (`stability.loop.retrain`) with the family's own maximum-likelihood refit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from stability.assumption3 import DELTA, estimate_assumption3, theorem2_bound
from stability.checks import CheckResult, Context
from stability.family_model import FamilyModel
from stability.loop import PointSet, Policy, retrain
from stability.operator import Operator, maximise
from stability.stats import binomial_interval

LAMBDAS = (0.1, 0.5, 1.0, 2.0, 10.0)


def near(op: Operator, rng, radius: float) -> np.ndarray:
    """A valid point at distance `radius` from theta* in a random direction."""
    ts = op.theta_star()
    for _ in range(200):
        u = rng.standard_normal(ts.size)
        cand = ts + radius * u / np.linalg.norm(u)
        if op.family.valid(cand):
            return cand
    raise RuntimeError("no valid point near theta*")


def _scale(op: Operator) -> float:
    return 0.05 * max(1.0, float(np.linalg.norm(op.theta_star())))


def fixed_point(op: Operator, ctx: Context) -> dict:
    """Proposition 4: theta* is a fixed point, G_lambda(theta*) = theta*.

    Measured: max_lambda ||G_lambda(theta*) - theta*|| (expected 0; holds below 1e-8).

    Parameters
    ----------
    op : Operator
        G_lambda^inf of the (family, data) pair.
    ctx : Context
        Seeds and the size setting of the check run.

    Returns
    -------
    dict
        `CheckResult` fields: verdict, measured, expected, summary (details, counterexample).
    """
    worst = max(
        float(np.linalg.norm(op.g_inf(op.theta_star(), lam) - op.theta_star())) for lam in LAMBDAS
    )
    return dict(
        verdict="holds" if worst < 1e-8 else "fails",
        measured=worst,
        expected=0.0,
        summary=f"max ||G_lambda(theta*) - theta*|| = {worst:.1e} for lambda in {list(LAMBDAS)}",
    )


def eq76(op: Operator, ctx: Context) -> dict:
    """Eq (76): the Jacobian of G_lambda^inf by the implicit-function formula equals finite
    differences of the map itself, at theta* and at a nearby theta, lambda in {0.3, 2}.

    Measured: the largest relative difference (holds below 1e-6).

    Parameters
    ----------
    op : Operator
        G_lambda^inf of the (family, data) pair.
    ctx : Context
        Seeds and the size setting of the check run.

    Returns
    -------
    dict
        `CheckResult` fields: verdict, measured, expected, summary (details, counterexample).
    """
    rng = ctx.rng("family-eq76")
    worst, rows = 0.0, []
    for lam in (0.3, 2.0):
        for theta in (op.theta_star(), near(op, rng, _scale(op))):
            jfd = op.jacobian_fd(lam, theta)
            err = float(
                np.abs(jfd - op.jacobian_implicit(lam, theta)).max() / max(1.0, np.abs(jfd).max())
            )
            worst = max(worst, err)
            rows.append(dict(lam=lam, theta=theta, rel_diff=err))
    return dict(
        verdict="holds" if worst < 1e-6 else "fails",
        measured=worst,
        expected=0.0,
        summary=f"implicit differentiation (eq 76) = finite differences of G to {worst:.1e}",
        details=dict(rows=rows),
    )


def eq77(op: Operator, ctx: Context) -> dict:
    """Eq (77): E_theta*[Hessian] + E_theta*[score score^T] = 0 (the information identity).

    Measured: the largest relative entry of the sum (holds below 1e-8).

    Parameters
    ----------
    op : Operator
        G_lambda^inf of the (family, data) pair.
    ctx : Context
        Seeds and the size setting of the check run.

    Returns
    -------
    dict
        `CheckResult` fields: verdict, measured, expected, summary (details, counterexample).
    """
    h22, mixed = op.H22(), op.H2_mixed()
    err = float(np.abs(h22 + mixed).max() / np.abs(mixed).max())
    return dict(
        verdict="holds" if err < 1e-8 else "fails",
        measured=err,
        expected=0.0,
        summary=f"E_theta*[Hessian] + E_theta*[score score^T] = 0 to {err:.1e} (relative)",
    )


def eq78(op: Operator, ctx: Context) -> dict:
    """Eq (78): the Jacobian J G_lambda(theta*) in closed form, with B as printed (mixed
    derivative) and with B~ (Hessian in theta'), against finite differences of G_lambda^inf.

    Measured: the relative error of the printed form; it fails above 1e-3.

    Parameters
    ----------
    op : Operator
        G_lambda^inf of the (family, data) pair.
    ctx : Context
        Seeds and the size setting of the check run.

    Returns
    -------
    dict
        `CheckResult` fields: verdict, measured, expected, summary (details, counterexample).
    """
    rows, worst_printed, worst_fixed = [], 0.0, 0.0
    for lam in (0.3, 2.0):
        jfd = op.jacobian_fd(lam)
        scale = max(1.0, np.abs(jfd).max())
        printed = float(np.abs(op.jacobian_formula(lam, "mixed") - jfd).max() / scale)
        fixed = float(np.abs(op.jacobian_formula(lam, "hessian") - jfd).max() / scale)
        worst_printed, worst_fixed = max(worst_printed, printed), max(worst_fixed, fixed)
        rows.append(dict(lam=lam, err_B_as_printed=printed, err_B_tilde=fixed))
    fails = worst_printed > 1e-3
    return dict(
        verdict="fails" if fails else "holds",
        measured=worst_printed,
        expected=0.0,
        summary=f"eq (78) with B as printed (mixed derivative) is off by {worst_printed:.2g}; "
        f"with B~ = E_theta*[Hessian] it matches finite differences to {worst_fixed:.1e}",
        details=dict(rows=rows, corrected_form_ok=bool(worst_fixed < 1e-6)),
    )


def eq79_80(op: Operator, ctx: Context) -> dict:
    """Eqs (79)-(80): ||B~ - A|| <= L eps and ||A^-1 B~|| <= 1 + L eps / alpha.

    Measured: ||B~ - A|| against L eps; inconclusive when eps = W1(p_theta*, p_data) is not
    computed for the data.

    Parameters
    ----------
    op : Operator
        G_lambda^inf of the (family, data) pair.
    ctx : Context
        Seeds and the size setting of the check run.

    Returns
    -------
    dict
        `CheckResult` fields: verdict, measured, expected, summary (details, counterexample).
    """
    eps = op.eps_or_none()
    if eps is None:
        return dict(
            verdict="inconclusive",
            measured=math.nan,
            expected=math.nan,
            summary="eps = W1(p_theta*, p_data) is not computed for these data",
        )
    a, b = op.A(), op.B_tilde()
    lhs80 = float(np.linalg.norm(b - a, 2))
    rhs80 = eps * op.lipschitz()
    lhs79 = float(np.linalg.norm(np.linalg.solve(a, b), 2))
    rhs79 = 1.0 + rhs80 / op.alpha()
    ok = lhs80 <= rhs80 + 1e-9 and lhs79 <= rhs79 + 1e-9
    return dict(
        verdict="holds" if ok else "fails",
        measured=lhs80,
        expected=rhs80,
        summary=f"||B~ - A|| = {lhs80:.4g} vs L eps = {rhs80:.4g}; ||A^-1 B~|| = {lhs79:.4g} vs "
        f"1 + L eps/alpha = {rhs79:.4g}",
        counterexample=None if ok else dict(norm_B_minus_A=lhs80, L_eps=rhs80, norm_Ainv_B=lhs79),
    )


def theorem1_bound(op: Operator, ctx: Context) -> dict:
    """Theorem 1, eq (11), on a grid of lambda (J by finite differences).

    ||J G_lambda(theta*)|| <= lambda (alpha + eps L) / (alpha - lambda (alpha + eps L))
    wherever lambda (1 + L eps / alpha) < 1/2, with J by finite differences on a grid of lambda.

    Parameters
    ----------
    op : Operator
        G_lambda^inf of the (family, data) pair.
    ctx : Context
        Seeds and the size setting of the check run.

    Returns
    -------
    dict
        `CheckResult` fields: verdict, measured, expected, summary (details, counterexample).
    """
    if op.eps_or_none() is None:
        return dict(
            verdict="inconclusive",
            measured=math.nan,
            expected=math.nan,
            summary="eps is not computed for these data: Theorem 1 cannot be evaluated",
        )
    lam_t = op.theorem1_lambda_max()
    grid = sorted({*LAMBDAS, 0.5 * lam_t, 0.99 * lam_t} - {0.0})
    rows, bad = [], []
    for lam in grid:
        j = op.jacobian_fd(lam)
        norm = float(np.linalg.norm(j, 2))
        cond = lam < lam_t
        row = dict(
            lam=lam,
            condition=cond,
            norm_J=norm,
            bound11=op.theorem1_bound(lam),
            spectral_radius=float(np.max(np.abs(np.linalg.eigvals(j)))),
        )
        rows.append(row)
        if cond and norm > row["bound11"] + 1e-7:
            bad.append(row)
    head = min(
        (r for r in rows if r["condition"]),
        key=lambda r: abs(r["lam"] - 0.5 * lam_t),
        default=rows[0],
    )
    crit = op.spectral_lambda_max()
    return dict(
        verdict="fails" if bad else "holds",
        measured=head["norm_J"],
        expected=head["bound11"],
        summary=f"eq (11) holds wherever its condition does (lambda < {lam_t:.4g}); the spectral "
        "radius stays < 1 "
        + ("for every finite lambda" if math.isinf(crit) else f"up to lambda = {crit:.4g}"),
        details=dict(rows=rows, lambda_theorem1=lam_t, lambda_critical=crit),
        counterexample=bad[0] if bad else None,
    )


def theorem1_convergence(op: Operator, ctx: Context) -> dict:
    """Theorem 1: theta <- G_lambda^inf(theta) converges to theta* within rate bound (11).

    From near theta*, at 0.5 and 0.95 of Theorem 1's largest lambda. Measured: the largest
    observed geometric rate, against the largest bound.

    Parameters
    ----------
    op : Operator
        G_lambda^inf of the (family, data) pair.
    ctx : Context
        Seeds and the size setting of the check run.

    Returns
    -------
    dict
        `CheckResult` fields: verdict, measured, expected, summary (details, counterexample).
    """
    if op.eps_or_none() is None or op.theorem1_lambda_max() <= 0:
        return dict(
            verdict="inconclusive",
            measured=math.nan,
            expected=math.nan,
            summary="Theorem 1's condition holds for no lambda > 0 here",
        )
    rng = ctx.rng("family-theorem1-convergence")
    steps = ctx.size(8, 15, 30)
    rows, bad = [], []
    for frac in (0.5, 0.95):
        lam = frac * op.theorem1_lambda_max()
        theta = near(op, rng, _scale(op))
        ts = op.theta_star()
        dists = [float(np.linalg.norm(theta - ts))]
        for _ in range(steps):
            theta = op.g_inf(theta, lam)
            dists.append(float(np.linalg.norm(theta - ts)))
        usable = [k for k in range(1, steps + 1) if dists[k] > 1e-8]
        rate = (
            (dists[usable[-1]] / dists[usable[0]]) ** (1 / (usable[-1] - usable[0]))
            if len(usable) > 1
            else 0.0
        )
        row = dict(
            lam=lam, initial=dists[0], final=dists[-1], rate=rate, bound11=op.theorem1_bound(lam)
        )
        rows.append(row)
        if dists[-1] > dists[0] or rate > row["bound11"] + 1e-3:
            bad.append(row)
    return dict(
        verdict="fails" if bad else "holds",
        measured=max(r["rate"] for r in rows),
        expected=max(r["bound11"] for r in rows),
        summary="iterating G_lambda^inf converges to theta* at rates "
        + ", ".join(f"{r['rate']:.3f}" for r in rows)
        + " (bound (11): "
        + ", ".join(f"{r['bound11']:.3f}" for r in rows)
        + ")",
        details=dict(rows=rows, steps=steps),
        counterexample=bad[0] if bad else None,
    )


def prop3_unique(op: Operator, ctx: Context) -> dict:
    """Proposition 3: H(theta, .) has a unique maximiser near theta*, found from many starts.

    Measured: the spread of the maxima reached; a spread above 1e-7 is a failure only when
    the hypothesis eps L < alpha holds, inconclusive otherwise.

    Parameters
    ----------
    op : Operator
        G_lambda^inf of the (family, data) pair.
    ctx : Context
        Seeds and the size setting of the check run.

    Returns
    -------
    dict
        `CheckResult` fields: verdict, measured, expected, summary (details, counterexample).
    """
    rng = ctx.rng("family-prop3")
    starts = ctx.size(6, 16, 48)
    spreads = []
    for lam in (0.5, 2.0):
        theta = near(op, rng, 0.2 * _scale(op))
        target = op.g_inf(theta, lam)
        xd, wd = op.data.nodes()
        xm, wm = op.family.nodes(theta)
        x, w = np.concatenate([xd, xm]), np.concatenate([wd, lam * wm])
        ends = [
            maximise(op.family, near(op, rng, rng.uniform(0.2, 2) * _scale(op)), x, w, tol=1e-12)
            for _ in range(starts)
        ]
        spreads.append(float(np.max(np.linalg.norm(np.array(ends) - target, axis=1))))
    hyp = op.eps_or_none() is not None and op.eps() * op.lipschitz() < op.alpha()
    spread = max(spreads)
    unique = spread < 1e-7
    verdict = "holds" if unique else ("fails" if hyp else "inconclusive")
    return dict(
        verdict=verdict,
        measured=spread,
        expected=0.0,
        summary=f"{starts} starts reach one maximiser of H(theta, .) (spread {spread:.1e}); "
        f"hypothesis eps L < alpha {'holds' if hyp else 'does not hold'}",
    )


def theorem2(op: Operator, ctx: Context, lam: float = 1.0, n: int = 200) -> dict:
    """Monte-Carlo of Algorithm 1 with the family's refit against bound (14)."""
    consts = estimate_assumption3(
        op, lam, ctx.rng("family-theorem2-a3"), draws=ctx.size(20, 40, 100)
    )
    runs, steps = ctx.size(40, 150, 600), ctx.size(6, 12, 30)
    rng = ctx.rng("family-theorem2-mc")
    ts = op.theta_star()
    dists = np.empty((runs, steps + 1))
    for r in range(runs):
        model = FamilyModel(op.family, ts)
        real = PointSet(op.data.sample(rng, n)[None])

        def record(t, m, _data, r=r):
            dists[r, t] = np.linalg.norm(m.theta - ts)

        retrain(model, real, Policy("mix", lam), steps, rng, on_iteration=record)
    bound = theorem2_bound(consts, n, dists[:, 0], steps)
    inside = np.all(dists[:, 1:] <= bound, axis=1)
    ci = binomial_interval(int(inside.sum()), runs, 0.99)
    return dict(
        verdict="fails" if ci.hi < 1 - DELTA else "holds",
        measured=ci.estimate,
        expected=1 - DELTA,
        interval=ci.as_list(),
        summary=f"{int(inside.sum())}/{runs} runs of Algorithm 1 (n = {n}, lambda = {lam:g}) stay "
        f"within bound (14) for t <= {steps}; a = {consts['a']:.3g}, b = {consts['b']:g}, "
        f"rho = {consts['rho']:.3f} estimated from one-step deviations",
        details=dict(n=n, lam=lam, runs=runs, steps=steps, **consts),
    )


CHECKS: list[tuple[str, str, str, Callable]] = [
    (
        "prop4-fixed-point",
        "theta* is a fixed point of G_lambda^inf for every lambda > 0",
        "Proposition 4, eq (10)",
        fixed_point,
    ),
    (
        "prop3-unique-maximiser",
        "If eps L < alpha, H(theta, .) has a unique local maximiser near "
        "theta*: optimisation from many starts reaches one point",
        "Proposition 3",
        prop3_unique,
    ),
    (
        "lemma-e1-eq76",
        "Jacobian of G_lambda^inf by implicit differentiation equals finite differences of the map",
        "Lemma E.1 (i), eq (76)",
        eq76,
    ),
    (
        "lemma-e1-eq77",
        "At theta*, d^2 H2/dtheta'^2 = -d^2 H2/dtheta' dtheta",
        "Lemma E.1 (ii), eq (77)",
        eq77,
    ),
    (
        "lemma-e1-eq78",
        "J G(theta*) = (I + lam A^-1 B)^-1 lam A^-1 B with B as Lemma E.1 defines "
        "it (the mixed derivative)",
        "Lemma E.1 (ii), eq (78)",
        eq78,
    ),
    (
        "lemma-e1-eq79-80",
        "||B~ - A|| <= L eps and ||A^-1 B~|| <= 1 + L eps/alpha",
        "Lemma E.1 (iii), eqs (79)-(80)",
        eq79_80,
    ),
    (
        "theorem1-bound",
        "If lam (1 + L eps/alpha) < 1/2 then ||J G_lambda(theta*)||_2 <= "
        "lam (alpha + eps L)/(alpha - lam (alpha + eps L))",
        "Theorem 1, eq (11)",
        theorem1_bound,
    ),
    (
        "theorem1-convergence",
        "Under Theorem 1's condition the iterates of G_lambda^inf converge "
        "to theta* at a rate no worse than eq (11)",
        "Theorem 1, eq (12)",
        theorem1_convergence,
    ),
    (
        "theorem2-bound",
        "With probability >= 1 - delta, ||theta_t^n - theta*|| stays within "
        "eq (14) with (a, b) of Assumption 3 estimated by simulation",
        "Theorem 2, eq (14)",
        theorem2,
    ),
]


def run_family_checks(
    op: Operator, mode: str = "default", seed: int = 0, names=None
) -> tuple[list[CheckResult], bool]:
    """Run the checks above on `op`; returns (results, all_ran) like `stability.checks`."""
    ctx = Context(mode=mode, seed=int(seed))
    results, all_ran = [], True
    label = f"[{op.family.name} on {op.data_name}] "
    for name, claim, reference, func in CHECKS:
        if names and name not in names:
            continue
        start = time.perf_counter()
        try:
            fields = func(op, ctx)
        except Exception as exc:  # a check that cannot run is reported, not raised
            fields = dict(
                verdict="inconclusive",
                measured=math.nan,
                expected=math.nan,
                summary=f"could not run: {type(exc).__name__}: {exc}",
            )
            all_ran = False
        results.append(
            CheckResult(
                name=f"family-{name}",
                claim=label + claim,
                reference=reference,
                seconds=time.perf_counter() - start,
                **fields,
            )
        )
    return results, all_ran
