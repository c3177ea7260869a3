"""Command line of the simulators: `stability simulate gaussian|flow|diffusion ...`."""

from __future__ import annotations

import argparse
import json
import sys

from stability.cli import UsageError, _fmt, _Parser, _table


def _lams(values: list[str]) -> tuple:
    from stability.errors import parse_lam

    return tuple(parse_lam(v) for v in values)


def gaussian_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="stability simulate gaussian",
        description="Algorithm 1 with a Gaussian model: exact (sufficient statistics) or sampled.",
    )
    p.add_argument("--dim", type=int, default=None, help="dimension d (default: 2, or the data's)")
    p.add_argument(
        "--n", type=int, default=None, help="real data set size (default 100, or the file's rows)"
    )
    p.add_argument(
        "--lam",
        nargs="+",
        default=["0", "0.5", "1", "inf"],
        help="lambda values (inf = fully synthetic)",
    )
    p.add_argument(
        "--policy", default="mix", help="mix | accumulate | accumulate-subsample | fresh"
    )
    p.add_argument("--iterations", type=int, default=100, help="retraining iterations T")
    p.add_argument("--runs", type=int, default=1000, help="independent runs R")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", default="exact", help="exact | sample")
    p.add_argument(
        "--data",
        default="gaussian",
        help="gaussian | moons | moons-ffjord | 8gaussians | 8gaussians-ffjord | FILE.npy",
    )
    p.add_argument(
        "--data-cond",
        type=float,
        default=1.0,
        help="condition number of Sigma_data (gaussian data)",
    )
    p.add_argument("--estimator", default="unbiased", help="unbiased (eq 5) | mle (eq 2)")
    p.add_argument(
        "--n-fresh",
        type=int,
        default=None,
        help="fresh real points per iteration (policy fresh; default n)",
    )
    p.add_argument(
        "--subsample-size",
        type=int,
        default=None,
        help="training set size (accumulate-subsample; default n)",
    )
    p.add_argument(
        "--block-size", type=int, default=1000, help="runs per block (fixes the random streams)"
    )
    p.add_argument("--workers", type=int, default=1, help="processes (results do not depend on it)")
    p.add_argument("--keep-blocks", action="store_true", help="keep per-run metrics in DIR/blocks/")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--json", action="store_true", help="print the result description as JSON")
    return p


def main_gaussian(argv: list[str]) -> int:
    from simulations.gaussian import METRICS
    from simulations.gaussian_sim import GaussianSimConfig, run_gaussian_simulation

    args = gaussian_parser().parse_args(argv)
    cfg = GaussianSimConfig(
        dim=args.dim,
        n=args.n,
        lams=_lams(args.lam),
        policy=args.policy,
        iterations=args.iterations,
        runs=args.runs,
        seed=args.seed,
        engine=args.engine,
        data=args.data,
        estimator=args.estimator,
        n_fresh=args.n_fresh,
        subsample_size=args.subsample_size,
        data_cond=args.data_cond,
        block_size=args.block_size,
    )
    result = run_gaussian_simulation(
        cfg,
        args.out,
        workers=args.workers,
        progress=sys.stderr.isatty() and not args.json,
        keep_blocks=args.keep_blocks,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = [
        [lam] + [f"{_fmt(m[k]['mean'])} +- {_fmt(m[k]['se'])}" for k in METRICS]
        for lam, m in result["final"].items()
    ]
    print(f"t = {result['iterations']}, mean +- se over runs:")
    print(_table(rows, ["lambda", *METRICS]))
    print(
        f"\nwrote {result['summary']} and {len(result['figures'])} figures in {result['out']}/figures"
    )
    return 0


def main_twod(kind: str, argv: list[str]) -> int:
    raise UsageError(f"stability simulate {kind}: not available yet (see the 2D simulator issue)")
