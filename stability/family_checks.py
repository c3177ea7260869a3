"""The operator and Theorem 1-2 checks on a (family, data) pair of the researcher's choosing.

`stability check --family F --data D` runs these on `Operator(F, D)`. They are the paper's
checks of `stability.checks.props34`, `lemma_e1` and `theorem1`, called on that one operator
(with a neighbourhood of theta* scaled to its size, `props34.scaled_radius`), so every verdict
comes from the one rule of `stability.checks.verdict`; their claims and references are those of
the registry. Theorem 2 has no such check for a general family: `theorem2` here runs
Algorithm 1 (`stability.loop.retrain`) with the family's own maximum-likelihood refit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from stability.assumption3 import DELTA, estimate_assumption3, theorem2_bound
from stability.checks import REGISTRY, CheckResult, Context, lemma_e1, props34, theorem1
from stability.checks.verdict import coverage, result
from stability.family_model import FamilyModel
from stability.loop import PointSet, Policy, retrain
from stability.operator import Operator

FamilyCheck = Callable[[Operator, Context], dict]


def on_operator(check: Callable[..., dict], **options) -> FamilyCheck:
    """A check of the paper (`check(ctx, ops, **options)`) as a check of one operator.

    Parameters
    ----------
    check : callable
        A check function of `stability.checks` that takes the operators as its second argument.
    **options
        Keyword arguments of `check` (e.g. ``radius=props34.scaled_radius``).

    Returns
    -------
    callable
        (op, ctx) -> the fields of a `CheckResult`, from `check(ctx, [op], **options)`.
    """

    def run(op: Operator, ctx: Context) -> dict:
        return check(ctx, [op], **options)

    return run


def theorem2(op: Operator, ctx: Context, lam: float = 1.0, n: int = 200) -> dict:
    """Theorem 2, eq (14): Monte-Carlo runs of Algorithm 1 with the family's refit stay within
    the bound with probability >= 1 - delta.

    (a, b, rho) of Assumption 3 are estimated from one-step deviations
    (`stability.assumption3.estimate_assumption3`); each run starts at theta*, refits on n real
    points of the data and floor(lam n) samples, and is inside when ||theta_t - theta*|| stays
    below bound (14) for t = 1..T. The fraction inside is decided by the rule of every check
    (`stability.checks.verdict.coverage`: 5 standard errors of a fraction at 1 - delta), so a
    "holds" needs at least 475 runs, all inside: 1500 runs x 4 steps in --quick, 3000 x 8 in
    default, 6000 x 30 in --thorough (about 3 ms per refit for a two-parameter family).

    Parameters
    ----------
    op : Operator
        G_lambda of the (family, data) pair.
    ctx : Context
        Seed and mode (runs and steps grow with the mode).
    lam : float
        lambda of the runs.
    n : int
        Real points per run.

    Returns
    -------
    dict
        The fields of a `CheckResult`; details hold the distances' settings and (a, b, rho).
    """
    consts = estimate_assumption3(
        op, lam, ctx.rng("family-theorem2-a3"), draws=ctx.size(20, 40, 100)
    )
    runs, steps = ctx.size(1500, 3000, 6000), ctx.size(4, 8, 30)
    rng = ctx.rng("family-theorem2-mc")
    ts = op.theta_star()
    dists = np.empty((runs, steps + 1))  # ||theta_t - theta*||, t = 0..steps
    for r in range(runs):
        model = FamilyModel(op.family, ts)
        real = PointSet(op.data.sample(rng, n)[None])

        def record(t, m, _data, r=r):
            dists[r, t] = np.linalg.norm(m.theta - ts)

        retrain(model, real, Policy("mix", lam), steps, rng, on_iteration=record)
    bound = theorem2_bound(consts, n, dists[:, 0], steps)
    inside = np.all(dists[:, 1:] <= bound, axis=1)
    claim = coverage(inside, 1 - DELTA, what="eq (14) for all t", n=n, lam=lam, steps=steps)
    return result(
        [claim],
        summary=f"{int(inside.sum())}/{runs} runs of Algorithm 1 (n = {n}, lambda = {lam:g}) stay "
        f"within bound (14) for t <= {steps} (required >= {1 - DELTA:.2f}); a = {consts['a']:.3g}, "
        f"b = {consts['b']:g}, rho = {consts['rho']:.3f} estimated from one-step deviations",
        details=dict(n=n, lam=lam, runs=runs, steps=steps, **consts),
    )


THEOREM2_CLAIM = (
    "With probability >= 1 - delta, ||theta_t^n - theta*|| stays within eq (14) with (a, b) of "
    "Assumption 3 estimated by simulation"
)
SCALED = dict(radius=props34.scaled_radius)

# (name, the paper's check and its options): the paper's checks run on the one operator. The
# composite rule of the eps control covers the paper's data only (lemma_e1.check_eq79_80).
_SHARED = (
    ("prop4-fixed-point", props34.check_prop4, {}),
    ("prop3-unique-maximiser", props34.check_prop3, SCALED),
    ("lemma-e1-eq76", lemma_e1.check_eq76, SCALED),
    ("lemma-e1-eq77", lemma_e1.check_eq77, {}),
    ("lemma-e1-eq78", lemma_e1.check_eq78, {}),
    ("lemma-e1-eq79-80", lemma_e1.check_eq79_80, dict(eps_by_densities=False)),
    ("theorem1-bound", theorem1.check_theorem1, {}),
    ("theorem1-convergence", theorem1.check_theorem1_convergence, SCALED),
)

# (name, claim, reference, check(op, ctx)) of every family check, in the order of the paper.
CHECKS: list[tuple[str, str, str, FamilyCheck]] = [
    (name, REGISTRY[name].claim, REGISTRY[name].reference, on_operator(check, **options))
    for name, check, options in _SHARED
] + [("theorem2-bound", THEOREM2_CLAIM, "Theorem 2, eq (14)", theorem2)]


def run_family_checks(
    op: Operator, mode: str = "default", seed: int = 0, names=None
) -> tuple[list[CheckResult], bool]:
    """Run the family checks on `op`, like `stability.checks.run_checks` on the paper's.

    Parameters
    ----------
    op : Operator
        G_lambda of the (family, data) pair.
    mode : {"quick", "default", "thorough"}
        Sizes of the Monte-Carlo and optimisation designs.
    seed : int
        Seed of every check (each draws its own stream).
    names : collection of str, optional
        Names of `CHECKS` to run (without the "family-" prefix); all when None or empty.

    Returns
    -------
    results : list of CheckResult
        Named "family-<name>", claims prefixed with "[family on data]".
    all_ran : bool
        False when some check could not run (its verdict is then "inconclusive").
    """
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
