"""Command line of the simulators: `stability simulate gaussian|flow|diffusion ...`."""

from __future__ import annotations

import argparse
import json
import sys

from stability.app.formatting import fmt, text_table
from stability.app.parser import ArgParser


def _lams(values: list[str]) -> tuple:
    from stability.errors import parse_lam

    return tuple(parse_lam(v) for v in values)


def gaussian_parser() -> argparse.ArgumentParser:
    """The options of ``stability simulate gaussian`` (those of ``GaussianSimConfig``).

    Returns
    -------
    argparse.ArgumentParser
        Every option defaults to None (the configuration's default), except the flags.
    """
    p = ArgParser(
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
        "--workers",
        type=int,
        default=None,
        help="processes (default: every available core; results do not depend on it)",
    )
    p.add_argument("--keep-blocks", action="store_true", help="keep per-run metrics in DIR/blocks/")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--json", action="store_true", help="print the result description as JSON")
    return p


def main_gaussian(argv: list[str]) -> int:
    """``stability simulate gaussian``: run or resume a Gaussian simulation, print its summary.

    Parameters
    ----------
    argv : list of str
        The options (``gaussian_parser``).

    Returns
    -------
    int
        0 (errors are raised: UsageError before anything is written, RunError during the run).
    """
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
        [lam] + [f"{fmt(m[k]['mean'])} +- {fmt(m[k]['se'])}" for k in METRICS]
        for lam, m in result["final"].items()
    ]
    print(f"t = {result['iterations']}, mean +- se over runs:")
    print(text_table(rows, ["lambda", *METRICS]))
    print(
        f"\nwrote {result['summary']} and {len(result['figures'])} figures in {result['out']}/figures"
    )
    return 0


def twod_parser(kind: str) -> argparse.ArgumentParser:
    """The options of ``stability simulate flow|diffusion`` (those of ``TwoDConfig``).

    Parameters
    ----------
    kind : {"flow", "diffusion"}
        The model; flow adds the flow matcher and ODE options, diffusion the number of steps.

    Returns
    -------
    argparse.ArgumentParser
        Every option defaults to None (``TwoDConfig``'s default), except the flags.
    """
    p = ArgParser(
        prog=f"stability simulate {kind}",
        description=f"Algorithm 1 with 2D {'flow-matching' if kind == 'flow' else 'DDPM'} models, "
        "R runs trained as one batched ensemble.",
    )
    _twod_loop_options(p)
    _twod_training_options(p, kind)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--sequential",
        action="store_true",
        help="train the lambdas one after another instead of as one ensemble (same numbers)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and numba threads (default the libraries'; 1 is fastest for a few runs: "
        "the step is dispatch-bound)",
    )
    p.add_argument(
        "--quick", action="store_true", help="a small setting that runs in under 2 minutes"
    )
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--json", action="store_true", help="print the result description as JSON")
    return p


def _twod_loop_options(p: argparse.ArgumentParser) -> None:
    """Data, lambdas, policy, iterations, runs and evaluation sizes of a 2D simulation."""
    p.add_argument(
        "--data", default=None, help="moons | moons-ffjord | 8gaussians | 8gaussians-ffjord"
    )
    p.add_argument("--n", type=int, default=None, help="real data set size (default 1000)")
    p.add_argument("--lam", nargs="+", default=None, help="lambda values (inf = fully synthetic)")
    p.add_argument("--policy", default=None, help="mix | accumulate | accumulate-subsample | fresh")
    p.add_argument(
        "--iterations", type=int, default=None, help="retraining iterations T (default 20)"
    )
    p.add_argument("--runs", type=int, default=None, help="independent runs R (default 50)")
    p.add_argument(
        "--n-eval",
        type=int,
        default=None,
        help="generated and held-out points for the metrics (default n)",
    )
    p.add_argument(
        "--n-fresh", type=int, default=None, help="fresh real points per iteration (policy fresh)"
    )
    p.add_argument(
        "--subsample-size", type=int, default=None, help="training set size (accumulate-subsample)"
    )


def _twod_training_options(p: argparse.ArgumentParser, kind: str) -> None:
    """Optimisation, network and model options of a 2D simulation."""
    p.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="samples seen per iteration, in passes over the n real points (default 150)",
    )
    p.add_argument(
        "--init-epochs",
        type=float,
        default=None,
        help="epochs of the fit at t = 0 (default 4 x epochs)",
    )
    p.add_argument("--batch", type=int, default=None, help="minibatch size (default 256)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-3)")
    p.add_argument("--width", type=int, default=None, help="MLP width (default 64)")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="re-initialise at every iteration instead of fine-tuning",
    )
    if kind == "flow":
        p.add_argument("--fm", default=None, help="otcfm (default) | cfm | sbcfm")
        p.add_argument(
            "--sigma", type=float, default=None, help="sigma of the conditional paths (default 0.1)"
        )
        p.add_argument("--solver", default=None, help="euler (default) | dopri5")
        p.add_argument("--ode-steps", type=int, default=None, help="Euler steps (default 100)")
    else:
        p.add_argument(
            "--diffusion-steps", type=int, default=None, help="diffusion steps T (default 100)"
        )


def main_twod(kind: str, argv: list[str]) -> int:
    """``stability simulate flow|diffusion``: run or resume a 2D simulation, print its summary.

    Parameters
    ----------
    kind : {"flow", "diffusion"}
    argv : list of str
        The options (``twod_parser``).

    Returns
    -------
    int
        0 (errors are raised: UsageError before anything is written, RunError during the run).
    """
    from simulations.twod_sim import TwoDConfig, TwoDSimulation, quick_config
    from stability.errors import UsageError

    args = twod_parser(kind).parse_args(argv)
    flags = ("quick", "out", "json", "from_scratch", "lam", "sequential", "threads")
    given = {k: v for k, v in vars(args).items() if v is not None and k not in flags}
    if args.lam is not None:
        given["lams"] = _lams(args.lam)
    if args.from_scratch:
        given["from_scratch"] = True
    if args.sequential:
        given["joint"] = False
    if kind == "diffusion" and "data" not in given:
        given["data"] = "8gaussians"  # Figure 3 of the paper
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        from stability.app.threads import set_threads

        set_threads(args.threads)  # numba too: its first kernel would reset torch's count
    config = quick_config(kind, **given) if args.quick else TwoDConfig(model=kind, **given)
    sim = TwoDSimulation(config, args.out, progress=sys.stderr.isatty() and not args.json)
    result = sim.run()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    metrics = ("w1", "w2", "w2_sliced", "param_distance")
    first = next(iter(result["final"].values()))
    metrics += tuple(m for m in ("mode_weight_tv", "mode_spread_ratio") if m in first)
    rows = [
        [lam] + [f"{fmt(m[k]['mean'])} +- {fmt(m[k]['se'])}" for k in metrics]
        for lam, m in result["final"].items()
    ]
    print(f"t = {result['iterations']}, mean +- se over runs:")
    print(text_table(rows, ["lambda", *metrics]))
    floor = next(iter(result["final"].values()))
    print(
        f"floor (two real samples): W1 {fmt(floor['w1_floor']['mean'])}, W2 {fmt(floor['w2_floor']['mean'])}"
    )
    print(
        f"\nwrote {result['summary']} and {len(result['figures'])} figures in {result['out']}/figures"
    )
    return 0


def _registered(kind: str) -> str:
    from stability.plugins import names

    return ", ".join(names(kind)) or "none"


def _add_plugin(p, flag: str, what: str, default=None, params_help: str = "") -> None:
    """--FLAG naming a plugin (registered name, FILE.py:NAME, MODULE:NAME) and --FLAG-param."""
    names = what if default is None else f"{what} (default {default})"
    p.add_argument(f"--{flag}", required=default is None, default=default, help=names)
    param = "--param" if flag == "model" else f"--{flag}-param"
    p.add_argument(
        param, nargs="+", action="extend", default=[], metavar="KEY=VALUE", help=params_help
    )


def model_parser() -> argparse.ArgumentParser:
    """The parser of `stability simulate model` (its epilog lists the registered plugins)."""
    from stability.app.cli import seed_option

    p = ArgParser(
        prog="stability simulate model",
        description="Algorithm 1 with any model plugin (fit / sample / state) on point data: "
        "R runs x lambdas x iterations, W1/W2 to held-out data, the parameter distance and the "
        "model's own metrics, checkpointed every iteration.",
        epilog=(
            f"registered models: {_registered('model')}. "
            f"policies: {_registered('policy')}. "
            f"data plugins: {_registered('data')}. "
            f"rewards: {_registered('reward')}; verifiers: {_registered('verifier')}; "
            f"corrections: {_registered('correction')}. "
            "Any of them can also be FILE.py:NAME or package.module:NAME; other packages add "
            "names with entry points (groups stability.models, stability.policies, "
            "stability.data, stability.rewards, stability.verifiers, stability.corrections)."
        ),
    )
    model_help = "a registered model, FILE.py:NAME or MODULE:NAME"
    _add_plugin(p, "model", model_help, None, "keyword arguments of the model's factory")
    data_help = "gaussian | moons[-ffjord] | 8gaussians[-ffjord] | FILE.npy | a data plugin"
    _add_plugin(p, "data", data_help, "gaussian", "keyword arguments of a data plugin")
    policy_help = "a registered policy, FILE.py:NAME or MODULE:NAME"
    example = "keyword arguments of the policy, e.g. fraction=0.5 reward=first-coordinate"
    _add_plugin(p, "policy", policy_help, "mix", example)
    for flag, default, text in (
        ("--dim", None, "dimension of the gaussian data (default 2)"),
        ("--n", 100, "real data set size (default 100)"),
        ("--n-fresh", None, "fresh real points per iteration (policy fresh)"),
        ("--subsample-size", None, "training set size (accumulate-subsample)"),
        ("--iterations", 20, "retraining iterations T (default 20)"),
        ("--runs", 20, "independent runs R (default 20)"),
        ("--block-size", 10, "runs simulated together (default 10; the numbers depend on it)"),
        ("--n-eval", None, "points of the W1/W2 metrics (default n)"),
        ("--seed", 0, "seed of every random stream (default 0)"),
        ("--workers", 1, "processes (results do not depend on it)"),
    ):
        # numpy refuses a negative seed only once the run has started (exit 1 after writing)
        kind = seed_option if flag == "--seed" else int
        p.add_argument(flag, type=kind, default=default, help=text)
    p.add_argument(
        "--lam",
        nargs="+",
        default=["0", "0.5", "1", "inf"],
        help="lambda values (inf = fully synthetic)",
    )
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--json", action="store_true", help="print the result description as JSON")
    return p


def main_model(argv: list[str]) -> int:
    """`stability simulate model ...`: run or resume a plugin-model simulation."""
    from simulations.plugin_sim import PluginSimConfig, run_plugin_simulation

    args = model_parser().parse_args(argv)
    policy_params = list(args.policy_param)
    if args.n_fresh is not None:
        policy_params.append(f"n_fresh={args.n_fresh}")
    if args.subsample_size is not None:
        policy_params.append(f"subsample_size={args.subsample_size}")
    config = PluginSimConfig(
        model=args.model,
        params=tuple(args.param),
        data=args.data,
        data_params=tuple(args.data_param),
        dim=args.dim,
        n=args.n,
        lams=_lams(args.lam),
        policy=args.policy,
        policy_params=tuple(policy_params),
        iterations=args.iterations,
        runs=args.runs,
        block_size=args.block_size,
        n_eval=args.n_eval,
        seed=args.seed,
    )
    result = run_plugin_simulation(
        config, args.out, workers=args.workers, progress=sys.stderr.isatty() and not args.json
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    metrics = list(next(iter(result["final"].values())))
    rows = [
        [lam] + [f"{fmt(m[k]['mean'])} +- {fmt(m[k]['se'])}" for k in metrics]
        for lam, m in result["final"].items()
    ]
    print(f"{args.model}, policy {args.policy}, t = {result['iterations']}, mean +- se over runs:")
    print(text_table(rows, ["lambda", *metrics]))
    print(
        f"\nwrote {result['summary']} and {len(result['figures'])} figures in {result['out']}/figures"
    )
    return 0


def main_simulate(what: str, argv: list[str]) -> int:
    """Dispatch `stability simulate WHAT ...` to gaussian, flow, diffusion or model."""
    from stability.errors import UsageError

    if what == "gaussian":
        return main_gaussian(argv)
    if what == "model":
        return main_model(argv)
    if what in ("flow", "diffusion"):
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise UsageError("the 2D simulators need the torch extra (pip install '.[torch]')")
        return main_twod(what, argv)
    raise UsageError(f"unknown simulation {what!r}; choose gaussian, flow, diffusion or model")
