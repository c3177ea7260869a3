"""Command line of sweeps: `stability sweep SPEC.toml ...` and `stability collect DIR...`.

Bad usage raises ValueError with one line (the top-level CLI prints it and exits 2).
"""

from __future__ import annotations

import sys

from stability.app.parser import ArgParser
from stability.errors import UsageError


def sweep_parser() -> ArgParser:
    """The parser of `stability sweep SPEC.toml [--executor] [--workers] [--dry-run] ...`."""
    p = ArgParser(
        prog="stability sweep",
        description="Run a grid of runs of one command (a TOML spec), locally or on Slurm.",
    )
    p.add_argument("spec", help="the sweep spec (TOML): command, [options], [axes], [slurm]")
    p.add_argument("--executor", default="local", help="local (a process pool) | slurm (submitit)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="cells run at a time by the local executor (default: the number of cores)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the cells, their status and commands; write nothing",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="attempts after a failure, per cell and per invocation (default 2)",
    )
    p.add_argument("--out", default=None, help="the sweep's folder (default: out in the spec)")
    return p


def collect_parser() -> ArgParser:
    """The parser of `stability collect DIR... [--out FILE.csv]`."""
    p = ArgParser(
        prog="stability collect",
        description="Gather run folders (or sweeps) into one tidy table with comparison figures.",
    )
    p.add_argument("dirs", nargs="+", help="sweep folders, run folders, or folders holding them")
    p.add_argument(
        "--out",
        default=None,
        help="the table, FILE.csv (default DIR/results.csv for one DIR); figures beside it",
    )
    return p


def _parse(parser: ArgParser, argv: list[str]):
    # One exception type for every bad usage: the top-level CLI prints it on one line, exit 2.
    try:
        return parser.parse_args(argv)
    except UsageError as exc:
        raise UsageError(str(exc)) from None


def main_sweep(argv: list[str]) -> int:
    """`stability sweep`: run (or resume) a sweep and print its report.

    Parameters
    ----------
    argv : list of str
        The arguments after ``stability sweep``.

    Returns
    -------
    int
        0 when every cell is done (or a dry run), 1 when some failed or are pending, 143 when
        the sweep was terminated (SIGTERM). Bad usage raises `UsageError` (exit 2).
    """
    from stability.app.sweep.local import SweepTerminated
    from stability.app.sweep.run import run_sweep
    from stability.app.sweep.spec import load_spec

    args = _parse(sweep_parser(), argv)
    spec = load_spec(args.spec)
    try:
        report = run_sweep(
            spec,
            out=args.out,
            executor=args.executor,
            workers=args.workers,
            retries=args.retries,
            dry_run=args.dry_run,
        )
    except SweepTerminated:
        print("stability sweep: terminated; rerun the same command to resume", file=sys.stderr)
        return 143
    for line in report.lines():
        print(line)
    if not report.dry_run and not report.ok:
        print(
            "rerun the same `stability sweep` command to retry the failed cells "
            "(finished cells are skipped)",
            file=sys.stderr,
        )
        return 1
    return 0


def main_collect(argv: list[str]) -> int:
    """`stability collect`: write the table (CSV, Parquet with pyarrow) and one PNG per metric.

    Parameters
    ----------
    argv : list of str
        The arguments after ``stability collect``.

    Returns
    -------
    int
        0; bad usage (no finished run, a wrong --out) raises `UsageError` (exit 2).
    """
    from stability.runs.collect import collect

    args = _parse(collect_parser(), argv)
    result = collect(args.dirs, args.out)
    for note in result.skipped:
        print(f"stability collect: skipped unfinished {note}", file=sys.stderr)
    for note in result.notes:
        print(f"stability collect: {note}", file=sys.stderr)
    print(
        f"wrote {result.table}: {result.rows} rows from {result.runs} runs "
        f"(columns: {', '.join(result.columns)})"
    )
    if result.parquet:
        print(f"wrote {result.parquet}")
    if result.figures:
        print(f"wrote {len(result.figures)} figures beside it ({result.figures[0].name}, ...)")
    return 0
