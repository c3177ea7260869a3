"""`stability map`: the stability of G_lambda against lambda along a path of misspecification.

For data distributions p_data(v) of increasing misspecification (``--eps-family``) it computes,
at each theta*(v), the spectral radius of J G_lambda(theta*) (eigenvalues lam mu/(1 + lam mu),
mu those of A^-1 B~), the Euclidean norm ||J||_2 that Theorem 1 bounds, and Theorem 1's
sufficient region lambda (1 + L eps/alpha) < 1/2, over a grid of lambda (``--lam-range``). The
path is either the contamination p_data(w) = (1 - w) p_theta0 + w D from the model fitted to D
(w = 0: well specified, eps = 0) to D itself, or a template such as ``'t:df={}'`` with
``--eps-values``. Writes DIR/map.csv (tidy, one row per (level, lambda)), DIR/figures/map.png
and DIR/config.json, each atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np

from stability.app.formatting import fmt, text_table
from stability.errors import UsageError

# A map is levels x lambdas rows; each level is an operator solve (a fit of theta* by
# quadrature: about a second), each lambda an eigenvalue problem per level. Beyond these the
# figure is unreadable and a typo (1000000000) would take memory and days.
MIN_EPS_STEPS, DEFAULT_EPS_STEPS, MAX_EPS_STEPS = 2, 6, 1000
MAX_LAMBDAS = 10000

COLUMNS = (
    "level",
    "data",
    "path_value",
    "eps",
    "alpha",
    "L",
    "mu_min",
    "mu_max",
    "lambda_theorem1",
    "lambda_critical",
    "lam",
    "spectral_radius",
    "norm_J",
    "theorem1_condition",
    "theorem1_bound",
)


def add_map(sub) -> None:
    """Register the `map` command."""
    p = sub.add_parser(
        "map",
        help="spectral radius of J G_lambda against lambda and Theorem 1's region, along a path "
        "of increasingly misspecified data (PNG + CSV)",
    )
    p.add_argument("--family", required=True, help="the model family (as for jacobian)")
    p.add_argument("--data", help="the data D at the end of the contamination path")
    p.add_argument(
        "--lam-range",
        nargs="+",
        default=["0.01", "100", "61"],
        metavar="LO HI [N]",
        help="lambda grid, log-spaced (default 0.01 100 61)",
    )
    p.add_argument(
        "--eps-family",
        default="contamination",
        help="'contamination' (default: (1-w) p_theta0 + w D) or a data template with {} "
        "(e.g. 't:df={}') filled with --eps-values",
    )
    p.add_argument(
        "--eps-values", nargs="+", help="values (numbers or words) for a template --eps-family"
    )
    p.add_argument(
        "--eps-steps",
        help=f"contamination weights w, {MIN_EPS_STEPS}..{MAX_EPS_STEPS} "
        f"(default {DEFAULT_EPS_STEPS}; only with --eps-family contamination)",
    )
    p.add_argument("--out", required=True, help="folder for map.csv, figures/map.png, config.json")
    p.add_argument("--json", action="store_true", help="print the per-level summary as JSON")
    p.set_defaults(func=cmd_map)


def lambda_grid(values: list[str]) -> np.ndarray:
    """Log-spaced lambdas from ``LO HI [N]``.

    Parameters
    ----------
    values : list of str
        ``LO HI`` or ``LO HI N``: 0 < LO < HI finite, 2 <= N <= MAX_LAMBDAS (default 61).

    Returns
    -------
    numpy.ndarray, shape (N,)

    Raises
    ------
    UsageError
        Any other value, in one line naming --lam-range.
    """
    if len(values) not in (2, 3):
        raise UsageError("--lam-range takes LO HI [N]")
    try:
        lo, hi = float(values[0]), float(values[1])
        n = int(values[2]) if len(values) == 3 else 61
    except ValueError:
        raise UsageError(f"--lam-range: numbers expected, got {values}") from None
    if not (0 < lo < hi and math.isfinite(hi)) or not 2 <= n <= MAX_LAMBDAS:
        raise UsageError(
            f"--lam-range needs 0 < LO < HI finite and 2 <= N <= {MAX_LAMBDAS}, got {values}"
        )
    return np.geomspace(lo, hi, n)


def eps_steps(value: str | None, contamination: bool) -> int | None:
    """The number of contamination weights from ``--eps-steps``, checked whatever the mode.

    Parameters
    ----------
    value : str or None
        The option as typed (None: not given).
    contamination : bool
        Whether the path is the contamination one (the only one that has weights).

    Returns
    -------
    int or None
        The count (DEFAULT_EPS_STEPS when not given) on the contamination path; None on a
        template path.

    Raises
    ------
    UsageError
        A value that is not an integer in MIN_EPS_STEPS..MAX_EPS_STEPS, or any value given
        with a template --eps-family (which has no weights: it would be silently ignored).
    """
    if value is None:
        return DEFAULT_EPS_STEPS if contamination else None
    try:
        steps = int(value)
    except ValueError:
        raise UsageError(f"--eps-steps must be an integer, got {value!r}") from None
    if not MIN_EPS_STEPS <= steps <= MAX_EPS_STEPS:
        raise UsageError(
            f"--eps-steps must be between {MIN_EPS_STEPS} and {MAX_EPS_STEPS}, got {value!r}"
        )
    if not contamination:
        raise UsageError(
            "--eps-steps goes with --eps-family contamination; a template takes --eps-values"
        )
    return steps


def check_path_options(args) -> None:
    """Check the path options together, whatever the mode, before anything is computed.

    Sets ``args.eps_steps`` to its integer (None on a template path).

    Raises
    ------
    UsageError
        One line naming the option: an --eps-family that is neither 'contamination' nor a
        template with {}, --eps-values without a template or a template without them,
        contamination without --data, a bad --eps-steps (`eps_steps`).
    """
    contamination = args.eps_family == "contamination"
    if not contamination and "{}" not in args.eps_family:
        raise UsageError("--eps-family is 'contamination' or a data template containing {}")
    args.eps_steps = eps_steps(args.eps_steps, contamination)
    if contamination:
        if args.eps_values:
            raise UsageError("--eps-values goes with a template --eps-family ('t:df={}')")
        if args.data is None:
            raise UsageError("--eps-family contamination needs --data (the end of the path)")
    elif not args.eps_values:
        raise UsageError("a template --eps-family needs --eps-values")


def path_levels(args, family) -> list[tuple[str, float, object]]:
    """(label, path value, data source) for each level of misspecification (options checked
    by `check_path_options` first)."""
    from stability.datasources import FamilyData, MixtureData, make_data
    from stability.operator import Operator

    if args.eps_family == "contamination":
        end = make_data(args.data)
        theta0 = Operator(family, end, "end").theta_star()
        start = FamilyData(family, theta0, name=f"{family.name} fitted to {end.name}")
        levels = []
        for w in np.linspace(0.0, 1.0, args.eps_steps):
            if w == 0:
                data = start
            elif w == 1:
                data = end
            else:
                data = MixtureData([(1 - w, start), (w, end)])
            levels.append((f"w={w:.3g}", float(w), data))
        return levels
    levels = []
    for v in args.eps_values:
        try:
            value = float(v)
        except ValueError:
            value = math.nan  # a word (e.g. a file name), kept as the level's label
        spec = args.eps_family.replace("{}", v)
        levels.append((spec, value, make_data(spec)))
    if args.data is not None:
        levels.append((args.data, math.nan, make_data(args.data)))
    return levels


def level_rows(index: int, label: str, value: float, op, lams) -> list[dict]:
    """Tidy rows of one level: Theorem 1's constants and the Jacobian at each lambda."""
    from stability.operator_summary import lambda_row

    eps = op.eps_or_none()
    mu = np.real(op.mu())
    common = dict(
        level=index,
        data=label,
        path_value=value,
        eps=eps,
        alpha=op.alpha(),
        L=op.lipschitz(),
        mu_min=float(mu.min()),
        mu_max=float(mu.max()),
        lambda_theorem1=None if eps is None else op.theorem1_lambda_max(),
        lambda_critical=op.spectral_lambda_max(),
    )
    rows = []
    for lam in lams:
        r = lambda_row(op, lam)
        rows.append(
            dict(
                common,
                lam=float(lam),
                spectral_radius=r.spectral_radius,
                norm_J=r.norm_J,
                theorem1_condition=r.theorem1_condition,
                theorem1_bound=r.theorem1_bound,
            )
        )
    return rows


def cmd_map(args) -> int:
    """`stability map`: Theorem 1's region and rho(J G_lambda) along a path of data.

    Every level's theta* is found before anything is written (bad data: UsageError); then
    map.csv, figures/map.png and config.json are written atomically under ``args.out``.
    Returns the exit code, 0.
    """
    from stability.families import make_family
    from stability.operator import Operator
    from stability.runs.runfolder import RunFolder, atomic_write_text

    # Every option checked first, whatever the mode (a template path used to ignore a bad
    # --eps-steps silently).
    lams = lambda_grid(args.lam_range)
    check_path_options(args)
    family = make_family(args.family)
    folder = RunFolder(
        args.out,
        "map",
        dict(
            family=args.family,
            data=args.data,
            lam_range=[float(lams[0]), float(lams[-1]), int(lams.size)],
            eps_family=args.eps_family,
            eps_values=args.eps_values,
            eps_steps=args.eps_steps,
        ),
    )
    folder.check_writable()
    levels = path_levels(args, family)
    ops = []
    for label, _, data in levels:
        op = Operator(family, data, label)
        op.theta_star()  # bad data or no maximiser: UsageError before anything is written
        ops.append(op)
    rows = []
    for i, ((label, value, _), op) in enumerate(zip(levels, ops)):
        rows.extend(level_rows(i, label, value, op, lams))
    folder.write_config()
    atomic_write_text(folder.file("map.csv"), to_csv(rows))
    png = folder.file("figures", "map.png")
    from stability.runs.plots import save_figure

    save_figure(map_figure(rows, family.name, args.data or args.eps_family), png)
    summary = [{k: r[k] for k in COLUMNS[:10]} for r in rows if r["lam"] == float(lams[0])]
    if args.json:
        from stability.runs.jsonsafe import jsonable

        print(
            json.dumps(
                jsonable(dict(levels=summary, csv=str(folder.file("map.csv")), png=str(png))),
                indent=2,
            )
        )
        return 0
    print(text_table([_summary_row(s) for s in summary], SUMMARY_HEADERS))
    print(f"\nwrote {folder.file('map.csv')} and {png}")
    return 0


SUMMARY_HEADERS = ["data", "eps", "alpha", "L", "mu min..max", "Thm 1: lambda <", "critical lambda"]


def _summary_row(s: dict) -> list:
    crit = s["lambda_critical"]
    return [
        s["data"],
        fmt(s["eps"]),
        fmt(s["alpha"]),
        fmt(s["L"]),
        f"{fmt(s['mu_min'])}..{fmt(s['mu_max'])}",
        fmt(s["lambda_theorem1"]),
        "none (rho < 1 for all)" if math.isinf(crit) else fmt(crit),
    ]


def to_csv(rows: list[dict]) -> str:
    """The rows as CSV text (floats with 17 significant digits; None as empty)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(
            {
                k: ("" if r[k] is None else repr(r[k]) if isinstance(r[k], float) else r[k])
                for k in COLUMNS
            }
        )
    return buf.getvalue()


def map_figure(rows: list[dict], family: str, data: str):
    """Left: spectral radius over (lambda, level) with Theorem 1's and the measured regions;
    right: spectral radius and ||J||_2 against lambda per level, with bound (11)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    levels = sorted({r["level"] for r in rows})
    lams = np.array(sorted({r["lam"] for r in rows}))
    by = {(r["level"], r["lam"]): r for r in rows}
    rho = np.array([[by[(lv, lam)]["spectral_radius"] for lam in lams] for lv in levels])
    norm = np.array([[by[(lv, lam)]["norm_J"] for lam in lams] for lv in levels])
    first = [by[(lv, lams[0])] for lv in levels]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6))
    edges = np.sqrt(lams[1:] * lams[:-1])
    xe = np.concatenate([[lams[0] ** 2 / edges[0]], edges, [lams[-1] ** 2 / edges[-1]]])
    ye = np.arange(len(levels) + 1) - 0.5
    mesh = ax.pcolormesh(xe, ye, rho, cmap="viridis", vmin=0, vmax=1.2, shading="flat")
    fig.colorbar(mesh, ax=ax, label="spectral radius of J G_lambda(theta*)")
    rows_y = np.arange(len(levels))
    if len(levels) > 1:
        lines = ax.contour(
            lams, rows_y, rho, levels=[0.5, 0.9, 0.99], colors="white", linewidths=0.7
        )
        ax.clabel(lines, fontsize=7, fmt="%.2f")
    t1 = [r["lambda_theorem1"] or np.nan for r in first]
    ax.plot(t1, rows_y, "w--o", ms=4, label="Theorem 1: lambda (1 + L eps/alpha) = 1/2")
    if np.any(norm >= 1) and len(levels) > 1:
        ax.contour(lams, rows_y, norm, levels=[1.0], colors="orange", linewidths=2)
        ax.plot([], [], color="orange", lw=2, label="||J||_2 = 1 (Euclidean contraction ends)")
    if np.all(rho < 1):
        ax.plot([], [], " ", label="spectral radius < 1 on the whole map")
    ax.set_xscale("log")
    ax.set_yticks(rows_y)
    ax.set_yticklabels(
        [f"eps={r['eps']:.3g}" if r["eps"] is not None else r["data"] for r in first], fontsize=7
    )
    ax.set_xlabel("lambda")
    ax.set_title(f"{family} on {data}", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(levels)))
    for i, r in enumerate(first):
        label = f"eps={r['eps']:.3g}" if r["eps"] is not None else r["data"]
        bx.semilogx(lams, rho[i], color=colors[i], label=label)
        bx.semilogx(lams, norm[i], color=colors[i], ls=":", lw=1)
        bound = np.array([by[(levels[i], lam)]["theorem1_bound"] or np.nan for lam in lams])
        ok = np.isfinite(bound)
        bx.semilogx(lams[ok], np.minimum(bound[ok], 1.5), color=colors[i], ls="--", lw=1)
    bx.axhline(1, color="gray", lw=0.6)
    bx.set_ylim(0, 1.5)
    bx.set_xlabel("lambda")
    bx.set_ylabel("solid: spectral radius; dotted: ||J||_2; dashed: bound (11)")
    bx.legend(fontsize=7)
    fig.tight_layout()
    return fig
