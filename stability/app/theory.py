"""`stability check` (the paper's checks, in parallel) and `stability jacobian` / `stability check
--family F --data D`: Theorem 1-2 for any family.

``check`` runs the registered checks of `stability.checks` over ``--jobs`` worker processes
(default: every core) and prints them in the order of the paper; the numbers do not depend on
the number of workers.

``jacobian`` takes a shipped setting (``--model NAME``) or any family and data (``--family
student-t:nu=4 --data laplace``; see `stability.families.spec` and `stability.datasources.spec`
for the syntax) and prints theta*, A, B~, the spectrum of J G_lambda(theta*) three ways (finite
differences of the map, implicit differentiation eq 76, eq 78 with B~ and as printed), the
critical lambda, Theorem 1's condition and bound, eps = W1(p_theta*, p_data) and Theorem 2's
(a, b) estimated by simulation. ``check --family F --data D`` runs the operator and Theorem 1-2
checks of `stability.family_checks` on that pair.
"""

from __future__ import annotations

import json
import math
import sys

from stability.app.formatting import fmt, print_check_results, text_table
from stability.app.parser import int_at_least
from stability.errors import UsageError


def add_theory_commands(sub) -> None:
    """Register `jacobian` and give `check` its --family/--data options (call after `check`)."""
    p = sub.add_parser(
        "jacobian",
        help="theta*, A, B~, the spectrum of J G_lambda, Theorem 1's bound and Theorem 2's (a, b) "
        "for a shipped setting or any family and data",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="a shipped setting: " + ", ".join(_model_names()))
    what.add_argument(
        "--family", help="student-t:nu=4, laplace, poisson, 'sympy:...', file.py:Name"
    )
    p.add_argument(
        "--data", help="laplace, t:df=3, poisson:mu=3, 0.3*A + 0.7*B, file.npy, grid:FILE"
    )
    p.add_argument("--lam", required=True, nargs="+", help="lambda value(s) >= 0 (finite)")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--theorem2-draws",
        type=int,
        default=20,
        help="draws per (theta, n) for Theorem 2's (a, b); 0 skips it (default 20)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=20,
        help="bootstrap replicates when --data is a sample (its Monte-Carlo error; default 20)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the simulations and bootstrap")
    p.set_defaults(func=cmd_jacobian)
    if "check" in sub.choices:
        extend_check(sub.choices["check"])


# The names of stability.families.default_settings(), written out so that building the parser
# (every `stability` command, --help included) does not import the families and scipy.stats;
# tests/app/test_theory_cli.py keeps the two lists equal.
SHIPPED_SETTINGS = ("gaussian-2d", "gaussian-1d", "student-t", "mixture", "mixture-near")


def _model_names() -> list[str]:
    return list(SHIPPED_SETTINGS)


def build_operator(model: str | None, family: str | None, data: str | None):
    """The Operator that --model or --family/--data name (UsageError before any work)."""
    from stability.datasources import make_data
    from stability.families import default_settings, make_family
    from stability.operator import Operator

    if model is not None:
        if data is not None:
            raise UsageError("--model names its own data: drop --data or use --family")
        settings = {name: (fam, dat) for name, fam, dat in default_settings()}
        if model not in settings:
            raise UsageError(f"unknown model {model!r}; choose one of {', '.join(settings)}")
        return Operator(*settings[model], model)
    if data is None:
        raise UsageError("--family needs --data (e.g. --data laplace)")
    op = Operator(make_family(family), make_data(data), f"{family} on {data}")
    op.theta_star()  # validates support, existence of the maximiser and Assumption 2
    return op


# ----------------------------------------------------------------------------------------------
# stability jacobian


def cmd_jacobian(args) -> int:
    """`stability jacobian`: J G_lambda(theta*) for each --lam, with eq (11) and Theorem 2.

    The Jacobian three ways, Theorem 1's bound (eq 11) and Theorem 2's
    constants, for each --lam, as a table or JSON.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options (model or family/data, lam list, seed, bootstrap, theorem2_draws, json).

    Returns
    -------
    int
        The exit code, 0.
    """
    import numpy as np

    from stability.errors import check_lam
    from stability.operator_summary import summarize

    lams = [check_lam(v, allow_inf=False) for v in args.lam]
    if args.theorem2_draws < 0 or args.bootstrap < 0:
        raise UsageError("--theorem2-draws and --bootstrap must be >= 0")
    op = build_operator(args.model, args.family, args.data)
    rng = np.random.default_rng(args.seed)
    summary = summarize(op, lams, bootstrap=args.bootstrap, rng=rng)
    rows = [_jacobian_row(op, row, args.theorem2_draws, rng) for row in summary.rows]
    out = _report(args, op, summary, rows)
    if args.json:
        from stability.runs.jsonsafe import jsonable

        print(json.dumps(jsonable(out), indent=2))
        return 0
    _print_report(out)
    return 0


def _jacobian_row(op, row, draws: int, rng) -> dict:
    """One lambda: the Jacobian three ways, Theorem 1, and Theorem 2's (a, b) by simulation."""
    import numpy as np

    from stability.assumption3 import estimate_assumption3

    lam = row.lam
    jfd = op.jacobian_fd(lam)
    jim = op.jacobian_implicit(lam)
    jh = op.jacobian_formula(lam, "hessian")
    jm = op.jacobian_formula(lam, "mixed")
    out = dict(
        lam=lam,
        norm_fd=float(np.linalg.norm(jfd, 2)),
        norm_implicit=float(np.linalg.norm(jim, 2)),
        norm_formula78_B_hessian=float(np.linalg.norm(jh, 2)),
        norm_formula78_B_as_defined=float(np.linalg.norm(jm, 2)),
        spectral_radius=float(np.max(np.abs(np.linalg.eigvals(jfd)))),
        eigenvalues=sorted(np.linalg.eigvals(jfd).real.tolist()),
        jacobian_eigenvalues_formula=np.real(row.eigenvalues).tolist(),
        max_diff_implicit_vs_fd=float(np.abs(jim - jfd).max()),
        max_diff_formula_vs_fd=float(np.abs(jh - jfd).max()),
        theorem1_condition=row.theorem1_condition,
        theorem1_bound=row.theorem1_bound,
        jacobian=jfd.tolist(),
    )
    if draws > 0 and lam > 0:
        out["theorem2"] = estimate_assumption3(op, lam, rng, draws=draws, points=2)
    return out


def _report(args, op, s, rows) -> dict:
    return dict(
        model=args.model or op.name,
        family=s.family,
        data=s.data,
        derivatives=s.derivatives,
        derivative_error=s.derivative_error,
        param_names=s.param_names,
        theta_star=s.theta_star.tolist(),
        A=s.A.tolist(),
        B_tilde=s.B_tilde.tolist(),
        mu=[complex(m) if abs(complex(m).imag) > 0 else float(complex(m).real) for m in s.mu],
        alpha=s.alpha,
        L=s.L,
        eps=s.eps,
        lambda_max_theorem1=s.lambda_theorem1,
        lambda_max_spectral=s.lambda_critical,
        lambda_critical=s.lambda_critical,
        stable_for_every_finite_lambda=s.stable_for_every_lambda,
        bootstrap=s.bootstrap,
        bootstrap_failures=s.bootstrap_failures,
        se=s.se,
        rows=rows,
    )


def _pm(value, se) -> str:
    if se is None or not math.isfinite(float(value)) or not math.isfinite(float(se)):
        return fmt(value)
    return f"{fmt(value)} +- {fmt(float(se))}"


def _se(out: dict, key: str, index=None):
    se = out.get("se")
    if not se or key not in se:
        return None
    value = se[key]
    return value if index is None else value[index]


def _matrix(rows) -> str:
    return "[" + "; ".join(" ".join(fmt(float(v)) for v in row) for row in rows) + "]"


def _print_report(out: dict) -> None:
    print(f"family  {out['family']}   [derivatives: {out['derivatives']}]")
    if out["derivatives"] == "numeric":
        print(
            f"        largest error estimate of score/Hessian at theta*: {fmt(out['derivative_error'])}"
        )
    print(f"data    {out['data']}")
    if out["bootstrap"]:
        print(f"        +- are bootstrap standard errors over {out['bootstrap']} replicates")
    theta = ", ".join(
        f"{n} = {_pm(v, _se(out, 'theta_star', i))}"
        for i, (n, v) in enumerate(zip(out["param_names"], out["theta_star"]))
    )
    print(f"theta*  {theta}")
    print(f"A  = E_data[Hessian log p_theta*]      {_matrix(out['A'])}")
    print(f"B~ = E_theta*[Hessian log p_theta*]    {_matrix(out['B_tilde'])}")
    mus = ", ".join(_pm(m, _se(out, "mu", i)) for i, m in enumerate(out["mu"]))
    print(f"mu = eigenvalues of A^-1 B~:           {mus}")
    eps = (
        "not computed (multivariate misspecified data)"
        if out["eps"] is None
        else _pm(out["eps"], _se(out, "eps"))
    )
    print(
        f"alpha = {_pm(out['alpha'], _se(out, 'alpha'))}   L = {_pm(out['L'], _se(out, 'L'))}   "
        f"eps = W1(p_theta*, p_data) = {eps}"
    )
    if out["stable_for_every_finite_lambda"]:
        print(
            "critical lambda: none, stable for every finite lambda (every Re mu > 0, so "
            "|lambda mu / (1 + lambda mu)| < 1)"
        )
    else:
        print(f"critical lambda: {fmt(out['lambda_critical'])} (spectral radius >= 1 beyond)")
    if out["lambda_max_theorem1"] is not None:
        print(
            f"Theorem 1's condition lambda (1 + L eps / alpha) < 1/2 allows lambda < "
            f"{_pm(out['lambda_max_theorem1'], _se(out, 'lambda_theorem1'))}"
        )
    print()
    print(text_table([_table_row(out, i, r) for i, r in enumerate(out["rows"])], TABLE_HEADERS))


TABLE_HEADERS = [
    "lambda",
    "eig J = lam mu/(1+lam mu)",
    "rho(J)",
    "||J|| fd",
    "implicit(76)",
    "(78) B~",
    "(78) as printed",
    "condition",
    "bound (11)",
    "Thm 2 a, b, rho",
]


def _table_row(out: dict, i: int, r: dict) -> list:
    t2 = r.get("theorem2")
    cond = r["theorem1_condition"]
    return [
        fmt(r["lam"]),
        ", ".join(fmt(v) for v in r["jacobian_eigenvalues_formula"]),
        _pm(r["spectral_radius"], _se(out, "spectral_radius", i)),
        fmt(r["norm_fd"]),
        fmt(r["norm_implicit"]),
        fmt(r["norm_formula78_B_hessian"]),
        fmt(r["norm_formula78_B_as_defined"]),
        "-" if cond is None else "yes" if cond else "no",
        "-"
        if r["theorem1_bound"] is None
        else _pm(r["theorem1_bound"], _se(out, "theorem1_bound", i)),
        "-" if t2 is None else f"{fmt(t2['a'])}, {fmt(t2['b'])}, {fmt(t2['rho'])}",
    ]


# ----------------------------------------------------------------------------------------------
# stability check


# The argparse type of --jobs: an integer >= 1.
jobs_option = int_at_least(1)


def cmd_check(args) -> int:
    """`stability check`: run the selected checks (all by default) and print their verdicts.

    Parameters
    ----------
    args : argparse.Namespace
        names, list, json, seed, mode and jobs (worker processes; None: every core).

    Returns
    -------
    int
        The exit code: 0 when every check ran (whatever its verdict), 1 when one could not.
    """
    from stability.checks import all_checks, default_jobs, resolve, run_checks

    if args.list:
        _print_check_list(resolve(args.names) if args.names else all_checks(), args.json)
        return 0
    specs = resolve(args.names)  # validate names before any work (ValueError -> exit 2)
    bar = None
    if sys.stderr.isatty() and not args.json:
        from tqdm import tqdm

        # No monitor thread: the pool forks this process, and a lock that another thread holds
        # at the fork stays held in the child.
        tqdm.monitor_interval = 0
        bar = tqdm(total=len(specs), desc="checks", unit="check", leave=False)

    def on_done(result):
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(result.name)

    jobs = default_jobs() if getattr(args, "jobs", None) is None else args.jobs
    try:
        results, all_ran = run_checks(
            args.names, mode=args.mode, seed=args.seed, jobs=jobs, on_done=on_done
        )
    finally:
        if bar is not None:
            bar.close()
    print_check_results(results, as_json=args.json)
    if not args.json:
        counts = {
            v: sum(r.verdict == v for r in results) for v in ("holds", "fails", "inconclusive")
        }
        print(
            f"\n{len(results)} checks: {counts['holds']} hold, {counts['fails']} fail, "
            f"{counts['inconclusive']} inconclusive (mode {args.mode}, seed {args.seed})"
        )
    return 0 if all_ran else 1


def _print_check_list(specs, as_json: bool) -> None:
    if as_json:
        rows = [
            dict(name=s.name, group=s.group, claim=s.claim, reference=s.reference) for s in specs
        ]
        print(json.dumps(rows, indent=2))
    else:
        print(
            text_table(
                [[s.name, s.group, s.reference] for s in specs], ["name", "group", "reference"]
            )
        )


# ----------------------------------------------------------------------------------------------
# stability check --family F --data D


def extend_check(parser) -> None:
    """Give the `check` parser --jobs and --family/--data (the checks then run on that pair)."""
    parser.add_argument(
        "--jobs",
        type=jobs_option,
        default=None,
        help="worker processes (default: every core; 1 runs the checks in this process)",
    )
    parser.add_argument("--family", help="run the operator and Theorem 1-2 checks on this family")
    parser.add_argument("--data", help="... fitted to these data (with --family)")
    original = parser.get_default("func")

    def dispatch(args):
        if args.family is None and args.data is None:
            return original(args)
        return cmd_check_family(args)

    parser.set_defaults(func=dispatch)


def cmd_check_family(args) -> int:
    """`stability check --family F --data D`: the operator and Theorem 1-2 checks of
    `stability.family_checks` on that pair, as a table or JSON (``--list`` lists them).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options (family, data, names, list, mode, seed, json).

    Returns
    -------
    int
        The exit code: 0 when every requested check ran, 1 otherwise.
    """
    from stability.family_checks import CHECKS, run_family_checks

    if args.family is None or args.data is None:
        raise UsageError("--family and --data go together")
    names = {name for name, *_ in CHECKS}
    wanted = [n.removeprefix("family-") for n in args.names]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise UsageError(
            f"unknown check {unknown[0]!r} for --family; choose from {', '.join(sorted(names))}"
        )
    if args.list:
        print(text_table([[f"family-{n}", r] for n, _, r, _ in CHECKS], ["name", "reference"]))
        return 0
    op = build_operator(None, args.family, args.data)
    results, all_ran = run_family_checks(op, mode=args.mode, seed=args.seed, names=wanted or None)
    print_check_results(results, as_json=args.json)
    return 0 if all_ran else 1
