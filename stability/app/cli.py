"""The `stability` command line.

Subcommands: check, alpha, jacobian, simulate, deep, reproduce, sweep, collect. Bad usage
prints one line on stderr and exits 2; a failure during a run prints one line and exits 1 (the
traceback with --debug); a check that could not run makes `stability check` exit 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from stability.app.map import add_map
from stability.app.parser import ArgParser, int_at_least
from stability.app.theory import add_theory_commands, cmd_check
from stability.errors import RunError, UsageError


def _add_check(sub):
    p = sub.add_parser("check", help="run the theory checks (Propositions 1-4, Theorems 1-2)")
    p.add_argument("names", nargs="*", help="check names or groups (default: all)")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--seed", type=seed_option, default=0, help="seed of every Monte-Carlo check")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick")
    mode.add_argument("--thorough", action="store_const", dest="mode", const="thorough")
    p.set_defaults(mode="default", func=cmd_check)  # --jobs, --family, --data: app/theory.py


def _add_alpha(sub):
    p = sub.add_parser("alpha", help="alpha(n) of Proposition 1 (and alpha_D(n))")
    p.add_argument("n", type=str, help="number of samples per refit (>= 2)")
    p.add_argument("--dim", type=str, default="1", help="dimension D (default 1)")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--seed", type=seed_option, default=0, help="seed of the Monte-Carlo estimate (D > 3)"
    )
    p.set_defaults(func=cmd_alpha)


def _add_simulate(sub):
    p = sub.add_parser(
        "simulate", help="Monte-Carlo retraining loops (gaussian, flow, diffusion, model)"
    )
    p.add_argument("what", help="gaussian | flow | diffusion | model (any model plugin)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_simulate)


def _add_deep(sub):
    p = sub.add_parser(
        "deep",
        help="the retraining loop at image scale (EDM, OT-CFM, DDPM): retrain, train, generate, "
        "evaluate, compare",
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_deep)


def cmd_deep(args) -> int:
    """`stability deep ...`: hand the words after ``deep`` to `deep_commands.main`.

    Parameters
    ----------
    args : argparse.Namespace
        `rest`: the subcommand and its arguments.

    Returns
    -------
    int
        The subcommand's exit code.

    Raises
    ------
    UsageError
        When torch (the torch extra) is not installed, or the subcommand refuses its input.
    """
    try:
        from stability.app.deep_commands import main as deep_main
    except ImportError as exc:
        raise UsageError(
            f"stability deep needs the torch extra (pip install '.[torch]'): {exc}"
        ) from None
    return deep_main(args.rest)


def _add_reproduce(sub):
    p = sub.add_parser("reproduce", help="verify and reproduce the paper, and write a report")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_const", dest="size", const="quick", help="a few minutes (default)"
    )
    size.add_argument(
        "--full",
        action="store_const",
        dest="size",
        const="full",
        help="the paper's sizes where a CPU allows",
    )
    size.add_argument(
        "--tiny", action="store_const", dest="size", const="tiny", help=argparse.SUPPRESS
    )
    p.add_argument("--out", default="reproduction", help="report folder (default ./reproduction)")
    p.add_argument("--only", nargs="+", default=None, help="theory | gaussian | 2d | deep")
    p.add_argument("--seed", type=seed_option, default=0)
    p.set_defaults(size="quick", func=cmd_reproduce)


def cmd_reproduce(args) -> int:
    """`stability reproduce`: verify and reproduce the paper, write the report in `args.out`.

    Parameters
    ----------
    args : argparse.Namespace
        `size` (quick, full or tiny), `out`, `only` (parts, default all) and `seed`.

    Returns
    -------
    int
        0; prints one line per section of the report.

    Raises
    ------
    UsageError
        For an unknown part in --only, before anything runs.
    """
    from stability.app.reproduce import PARTS, reproduce

    for part in args.only or []:
        if part not in PARTS:
            raise UsageError(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
    res = reproduce(
        args.out, size=args.size, only=args.only, seed=args.seed, progress=sys.stderr.isatty()
    )
    for s in res["sections"]:
        print(f"[{s['verdict']}] {s['title']}: {s['summary'][:160]}")
    skipped = res["meta"]["skipped"]
    if skipped:
        print(f"skipped (extras not installed or not selected): {', '.join(skipped)}")
    print(
        f"wrote {args.out}/report.md, report.html and results.json ({res['meta']['seconds']:.0f} s)"
    )
    return 0


def _add_sweep(sub):
    p = sub.add_parser(
        "sweep", help="run a grid of runs (a TOML spec) locally or on a Slurm cluster"
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser(
        "collect", help="gather run folders and sweeps into one tidy table with figures"
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_collect)


def cmd_sweep(args) -> int:
    """`stability sweep ...`: hand the words after ``sweep`` to `sweep.cli.main_sweep`.

    Parameters
    ----------
    args : argparse.Namespace
        `rest`: the spec file and the options.

    Returns
    -------
    int
        `main_sweep`'s: 0 when every cell is done, 1 when some failed or are pending, 143
        when terminated.
    """
    from stability.app.sweep.cli import main_sweep

    return main_sweep(args.rest)


def cmd_collect(args) -> int:
    """`stability collect ...`: hand the words after ``collect`` to `sweep.cli.main_collect`.

    Parameters
    ----------
    args : argparse.Namespace
        `rest`: the run folders or sweeps, and the options.

    Returns
    -------
    int
        `main_collect`'s exit code.
    """
    from stability.app.sweep.cli import main_collect

    return main_collect(args.rest)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the `stability` command: every subcommand, each with its `func`.

    Returns
    -------
    argparse.ArgumentParser
        Parsing sets `command` (None when none is given) and `func`, the ``cmd_*`` function
        that runs the subcommand with the parsed namespace.
    """
    parser = ArgParser(prog="stability", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", parser_class=ArgParser)
    _add_check(sub)
    _add_alpha(sub)
    add_theory_commands(sub)  # jacobian, and --family/--data for check
    add_map(sub)
    _add_simulate(sub)
    _add_deep(sub)
    _add_reproduce(sub)
    _add_sweep(sub)
    return parser


# ----------------------------------------------------------------------------------------------


def _integer(text: str, name: str, minimum: int) -> int:
    """An integer option written as an integer or in float notation (1e6), >= minimum.

    Refuses what is not a finite integer (inf, nan, 2.5, words) and what float64 cannot hold,
    with one line naming the option.
    """
    words = f"{name} must be an integer >= {minimum}, got {text!r}"
    try:
        value = int(text.strip())
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            raise UsageError(words) from None
        if not math.isfinite(number) or number != math.floor(number):
            raise UsageError(words) from None
        value = int(number)
    if value < minimum:
        raise UsageError(words)
    if value > sys.float_info.max:
        raise UsageError(
            f"{name} is beyond float64 (at most about 1.8e308), got {len(text)} digits"
        )
    return value


# The argparse type of --seed: an integer >= 0 (numpy refuses negative seeds).
seed_option = int_at_least(0)


def alpha_monte_carlo_bytes(n: int, d: int, runs: int) -> float:
    """Peak memory of the Monte-Carlo alpha_D(n): `runs` draws of n points in R^d, centred
    (2 x runs x n x d numbers), their scatter matrices and square roots (about 5 x runs x d^2).
    """
    return 8.0 * runs * (2.0 * n * d + 5.0 * d * d)


def cmd_alpha(args) -> int:
    """`stability alpha N [--dim D]`: alpha(n) of eq (19) and, for D > 1, alpha_D(n) of eq (35).

    alpha_D(n) by quadrature (`rates.alpha_d_quadrature`) for D <= 3, n - 1 >= D and
    n <= 1e6; by its asymptotic 1 - (D+1)/(8(n-1)) above 1e6; otherwise by Monte-Carlo with
    its standard error (refused when its memory exceeds what is available).

    Parameters
    ----------
    args : argparse.Namespace
        `n` and `dim` (text: integers, float notation such as 1e6 accepted), `json`, `seed`.

    Returns
    -------
    int
        0; prints the values (as one JSON object with --json).

    Raises
    ------
    UsageError
        For n < 2, D < 1, or a value that is not an integer.
    """
    from stability import rates as A

    n = _integer(args.n, "n", 2)
    d = _integer(args.dim, "--dim", 1)
    out = dict(n=n, dim=d, alpha=float(A.alpha(n)), one_minus_alpha=float(A.one_minus_alpha(n)))
    if d > 1:
        if n - 1 >= d and d <= 3 and n <= A.QUADRATURE_MAX_N:
            out.update(alpha_d=float(A.alpha_d_quadrature(n, d)), alpha_d_method="quadrature")
        elif n > A.QUADRATURE_MAX_N:
            out.update(
                alpha_d=float(A.alpha_d_asymptotic(n, d)),
                alpha_d_method="asymptotic 1 - (d+1)/(8(n-1)), error O(n^-2)",
            )
        else:
            out.update(_alpha_d_monte_carlo(A, n, d, args.seed))
    if args.json:
        print(json.dumps(out))
    else:
        print(f"alpha({n}) = {out['alpha']:.16g}   (1 - alpha = {out['one_minus_alpha']:.6e})")
        if d > 1:
            se = f" +- {out['alpha_d_se']:.1e}" if "alpha_d_se" in out else ""
            print(f"alpha_{d}({n}) = {out['alpha_d']:.12g}{se}   [{out['alpha_d_method']}]")
    return 0


def _alpha_d_monte_carlo(A, n: int, d: int, seed: int) -> dict:
    """alpha_D(n) = E[tr S^(1/2)] / (D sqrt(n-1)), S ~ Wishart_D(n-1, I) (Lemma A.2, eq 35), by
    Monte-Carlo; refused before drawing when its memory exceeds what is available."""
    import numpy as np

    from stability.runs.resources import check_memory

    runs = 200000 if d <= 10 else 20000
    check_memory(
        alpha_monte_carlo_bytes(n, d, runs),
        f"alpha_{d}({n}) by Monte-Carlo ({runs} draws of {n} points in dimension {d})",
        "use a smaller --dim or n",
    )
    roots = A.sqrt_scatter_samples(d, n, runs, np.random.default_rng(seed))
    vals = np.trace(roots, axis1=1, axis2=2) / (d * math.sqrt(n - 1))
    return dict(
        alpha_d=float(vals.mean()),
        alpha_d_se=float(vals.std(ddof=1) / math.sqrt(runs)),
        alpha_d_method=f"monte-carlo ({runs} Wishart draws)",
    )


def cmd_simulate(args) -> int:
    """`stability simulate WHAT ...`: hand WHAT and the rest to `simulate.main_simulate`.

    Parameters
    ----------
    args : argparse.Namespace
        `what` (gaussian, flow, diffusion or model) and `rest`, its arguments.

    Returns
    -------
    int
        The simulation's exit code.

    Raises
    ------
    UsageError
        For an unknown WHAT, or the torch extra missing for flow and diffusion.
    """
    from stability.app.simulate import main_simulate

    return main_simulate(args.what, args.rest)


def _out_folder(argv: list[str]) -> str | None:
    """The run folder a command was given (--out DIR or --out=DIR), to name it on failure."""
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--out="):
            return arg.split("=", 1)[1]
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the `stability` command line; returns the exit code.

    Exit codes: 0 success; 2 bad usage or input (`UsageError`), found before anything is
    written; 1 a failure during a run (`RunError` or any other exception), printed as one line
    naming what failed and the folder with the partial output; 130 interrupted. ``--debug``
    anywhere on the line (or STABILITY_DEBUG=1) re-raises instead, with the traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("STABILITY_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return args.func(args)
    except UsageError as exc:
        if debug:
            raise
        msg = _one_line(exc)
        if not msg.startswith("stability"):
            msg = f"stability: error: {msg}"
        print(msg, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stability: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure during a run: one line, the traceback with --debug
        if debug:
            raise
        out = getattr(exc, "out", None) or _out_folder(argv)
        where = f" (partial output in {out})" if out else ""
        kind = "" if isinstance(exc, RunError) else f"{type(exc).__name__}: "
        print(
            f"stability: failed: {kind}{_one_line(exc)}{where}; --debug shows the traceback",
            file=sys.stderr,
        )
        return 1
