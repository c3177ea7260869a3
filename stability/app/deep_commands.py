"""`stability deep retrain|train` and the dispatch of `stability deep ...`: the image-scale loop
from the command line (generate, evaluate and compare are in deep_images.py).

Works the same under torchrun (multi-GPU DDP, or several CPU processes with gloo):
    torchrun --standalone --nproc_per_node 8 -m stability deep retrain --data cifar10=PATH ...
"""

from __future__ import annotations

import json
import sys

from stability.app.deep_images import main_compare, main_evaluate, main_generate
from stability.app.deep_options import (
    check_device,
    check_positive,
    check_resolution,
    checkpoint_network,
    common_options,
)
from stability.app.formatting import fmt
from stability.app.parser import ArgParser
from stability.errors import UsageError


def _schedule_options(p):
    """Learning-rate ramp-up and EMA options, shared by `deep retrain` and `deep train`."""
    p.add_argument("--lr-rampup-kimg", type=float, default=None)
    p.add_argument(
        "--ema-halflife-kimg",
        type=float,
        default=None,
        help="EMA half-life in kimg (default: EDM/DDPM 500; OT-CFM decays 0.9999 per step)",
    )
    p.add_argument("--ema-decay", type=float, default=None, help="EMA decay per step (overrides)")


def _augment_option(p):
    """EDM's non-leaking augmentation (deep.augment), shared by `deep retrain` and `deep train`."""
    p.add_argument(
        "--augment",
        type=float,
        default=None,
        metavar="P",
        help="EDM augmentation probability (default: the paper's runs, 0.12 on cifar10=, "
        "0.15 on ffhq=, 0 on other data; other models: 0)",
    )


def _latents_option(p):
    p.add_argument(
        "--latents",
        default=None,
        help="dtype of the per-seed latents: float32 (default; the official generator's) "
        "| float64 (this toolkit's earlier draws)",
    )


def _fit_reporting_options(p):
    """Snapshots and status lines of long fits, shared by `deep retrain` and `deep train`."""
    p.add_argument(
        "--snap-kimg",
        type=float,
        default=None,
        help="snapshot the training state every this many kimg inside a fit; a rerun resumes it",
    )
    p.add_argument(
        "--status-kimg",
        type=float,
        default=None,
        help="status line every this many kimg when stderr is not a terminal (default 50)",
    )
    p.add_argument(
        "--status-sec",
        type=float,
        default=None,
        help="... or every this many seconds, whichever comes first (default 60)",
    )


def _loop_options(p):
    """Data, model and Algorithm 1's lambda, policy and schedule (`deep retrain`)."""
    p.add_argument(
        "--data",
        default=None,
        help="digits[:R] | cifar10=PATH | ffhq=PATH | folder=PATH | zip=PATH",
    )
    p.add_argument(
        "--resolution", type=int, default=None, help="image resolution (digits: upsampled to it)"
    )
    p.add_argument("--n", type=int, default=None, help="real images used (default: all)")
    p.add_argument("--model", default=None, help="edm (default) | otcfm | ddpm")
    p.add_argument("--net", default=None, help="auto | tiny | cifar10 | ffhq64")
    p.add_argument("--lam", default=None, help="lambda (a number >= 0 or inf)")
    p.add_argument("--policy", default=None, help="mix | accumulate | accumulate-subsample | fresh")
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument(
        "--kimg", type=float, default=None, help="thousands of images seen per retraining"
    )
    p.add_argument(
        "--init", default=None, help="checkpoint of the model fitted on real data (t = 0)"
    )
    p.add_argument(
        "--init-kimg",
        type=float,
        default=None,
        help="train from scratch this long at t = 0 (no --init)",
    )
    p.add_argument(
        "--n-gen", type=int, default=None, help="images generated per iteration (default n)"
    )
    p.add_argument(
        "--fixed-seeds",
        action="store_true",
        help="the paper's generation seeds 0..N-1 at every iteration",
    )


def _sampler_options(p):
    """How each method samples: EDM's Heun, OT-CFM's ODE solver, DDPM's DDIM (`deep retrain`)."""
    p.add_argument("--sampler-steps", type=int, default=None, help="Heun steps (default 18)")
    p.add_argument("--s-churn", type=float, default=None, help="EDM stochasticity (default 0)")
    p.add_argument("--ode-solver", default=None, help="OT-CFM sampling: dopri5 (default) | euler")
    p.add_argument(
        "--ode-tol", type=float, default=None, help="OT-CFM dopri5 rtol = atol (default 1e-5)"
    )
    p.add_argument("--ode-steps", type=int, default=None, help="OT-CFM Euler steps (default 100)")
    p.add_argument(
        "--ddim-steps", type=int, default=None, help="DDPM: DDIM sampling steps (default 100)"
    )
    p.add_argument(
        "--no-ddim-clip",
        action="store_true",
        help="DDPM: do not clamp the denoised estimate x0 to [-1, 1] at each DDIM step",
    )
    p.add_argument(
        "--ddim-spacing",
        default=None,
        help="DDPM: DDIM timesteps, diffusers' conventions: leading (default; the DDIM paper's "
        "and ddpm-torch's) | trailing | linspace",
    )


def retrain_parser():
    """The parser of `stability deep retrain`; options left out are None, so that
    `deep.retrain.DeepConfig` (or `quick_config` under --quick) supplies each default."""
    p = ArgParser(
        prog="stability deep retrain",
        description="Algorithm 1 with EDM, OT-CFM or DDPM on images.",
    )
    _loop_options(p)
    _sampler_options(p)
    _augment_option(p)
    _latents_option(p)
    p.add_argument(
        "--features",
        default=None,
        help="feature space of FID/precision/recall: auto | digits | pixels | inception=FILE | none",
    )
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--gen-batch", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    _schedule_options(p)
    p.add_argument("--rampup", default=None, help="restart (the paper's) | continue | none")
    p.add_argument("--n-fresh", type=int, default=None)
    p.add_argument("--subsample-size", type=int, default=None)
    _fit_reporting_options(p)
    p.add_argument(
        "--quick", action="store_true", help="digits, tiny network, 3 iterations on a CPU"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    common_options(p)
    return p


def main_retrain(argv) -> int:
    """`stability deep retrain` with `argv` (list of str, the words after ``retrain``): run or
    resume Algorithm 1 on images in --out and print the last metrics (all, as JSON, with --json;
    the main process only under torchrun). Returns 0; bad options raise UsageError first."""
    from deep.retrain import DeepConfig, quick_config, run_deep
    from stability.errors import parse_lam

    args = retrain_parser().parse_args(argv)
    check_positive(args, "n", "n_gen", "iterations", "batch", "gen_batch", "sampler_steps")
    check_positive(args, "ode_steps", "ddim_steps", "n_fresh", "subsample_size")
    check_resolution(args.resolution, args.model)
    check_device(args.device)
    given = {
        k: v
        for k, v in vars(args).items()
        if v is not None
        and k not in ("quick", "out", "json", "fixed_seeds", "compile", "no_ddim_clip")
    }
    if args.no_ddim_clip:
        given["ddim_clip"] = False
    if "lam" in given:
        given["lam"] = parse_lam(given["lam"])
    if args.fixed_seeds:
        given["fixed_seeds"] = True
    if args.compile:
        given["compile"] = True
    cfg = quick_config(**given) if args.quick else DeepConfig(**given)
    tty = sys.stderr.isatty()
    result = run_deep(cfg, args.out, progress=tty and not args.json, status=not tty)
    from deep import dist

    if dist.is_main():
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            last = result["metrics"][str(result["iterations"])]
            print(
                f"t = {result['iterations']}: "
                + ", ".join(f"{k} = {fmt(v)}" for k, v in last.items())
            )
            print(f"wrote {result['out']}/summary.csv, metrics.json and figures/")
    dist.shutdown()
    return 0


def train_parser():
    """The parser of `stability deep train`: one fit (or fine-tune) of a model on images."""
    p = ArgParser(
        prog="stability deep train", description="Train (or fine-tune) a model on images once."
    )
    p.add_argument("--data", required=True)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--model", default="edm", help="edm | otcfm | ddpm")
    p.add_argument("--net", default="auto")
    p.add_argument("--init", default=None, help="checkpoint to start from")
    p.add_argument("--kimg", type=float, required=True)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument(
        "--lr", type=float, default=None, help="default: the model's (EDM 1e-3, others 2e-4)"
    )
    _schedule_options(p)
    _augment_option(p)
    _fit_reporting_options(p)
    p.add_argument(
        "--out",
        required=True,
        help="checkpoint file to write (.pt); OUT.snap holds the snapshots, OUT.log the status",
    )
    common_options(p)
    return p


def _train_config(args):
    """The DeepConfig of `deep train`'s options (defaults where an option is not given)."""
    from deep.config import DeepConfig, check_run_options

    reporting = {
        k: getattr(args, k)
        for k in ("snap_kimg", "status_kimg", "status_sec")
        if getattr(args, k) is not None
    }
    cfg = DeepConfig(
        data=args.data,
        model=args.model,
        net=args.net,
        augment=args.augment,
        batch=args.batch,
        lr=args.lr,
        lr_rampup_kimg=args.lr_rampup_kimg,
        ema_halflife_kimg=args.ema_halflife_kimg,
        ema_decay=args.ema_decay,
        device=args.device,
        dtype=args.dtype,
        compile=args.compile,
        **reporting,
    )
    check_run_options(cfg)
    return cfg


def main_train(argv) -> int:
    """`stability deep train` with `argv` (list of str): fit a model for --kimg thousand images
    (from --init if given) and write the checkpoint --out. Returns 0; bad options, data or a
    checkpoint of another image size raise UsageError before training."""
    from deep import dist
    from deep.config import net_config
    from deep.data import load_images
    from deep.train import Trainer, held_by_main
    from stability.runs.lock import lock_output

    args = train_parser().parse_args(argv)
    if not args.kimg > 0:
        raise UsageError(f"kimg must be > 0, got {args.kimg}")
    check_positive(args, "n", "batch")
    check_resolution(args.resolution, args.model)
    check_device(args.device)
    cfg = _train_config(args)
    data = load_images(args.data, resolution=args.resolution)
    check_resolution(data.resolution, args.model, what=f"{args.data}: images of side")
    images = data.images if args.n is None else data.images[: args.n]
    net = net_config(cfg, data.channels, data.resolution)
    if args.init:
        from deep.train import FORMAT, load_weights

        if load_weights(args.init).get("format") == FORMAT:
            _, net, _ = checkpoint_network(args.init, args.model)
        if (net.resolution, net.channels) != (data.resolution, data.channels):
            raise UsageError(
                f"checkpoint is for {net.channels}x{net.resolution}x{net.resolution} images, "
                f"the data are {data.channels}x{data.resolution}x{data.resolution}"
            )
    dist.init(args.device)
    trainer = Trainer(net, cfg.train_options(), args.seed or 0, cfg.method())
    if args.init:
        trainer.load(args.init, resume=False)
    with held_by_main(lambda: lock_output(args.out, "deep train")):  # OUT, OUT.snap, OUT.log
        _train_locked(args, cfg, trainer, images)
    dist.shutdown()
    return 0


def _train_locked(args, cfg, trainer, images) -> None:
    """The fit of `deep train` and its checkpoint, once the output is locked."""
    from deep import dist
    from deep.status import StatusLog

    tty = sys.stderr.isatty()
    snapshot = f"{args.out}.snap" if cfg.snap_kimg else None
    status = None
    if not tty and dist.is_main():
        status = StatusLog(
            sys.stderr, f"{args.out}.log", cfg.status_kimg, cfg.status_sec, trainer.device
        )
    loss = trainer.train(
        images, args.kimg, progress=tty, snapshot=snapshot, snap_kimg=cfg.snap_kimg, status=status
    )
    if dist.is_main():
        trainer.save(args.out)
        trainer.drop_snapshot(snapshot)
        print(f"trained {args.kimg:g} kimg, final loss {loss:.4g}; wrote {args.out}")


COMMANDS = {
    "retrain": main_retrain,
    "train": main_train,
    "generate": main_generate,
    "evaluate": main_evaluate,
    "compare": main_compare,
}


def main(argv: list[str]) -> int:
    """`stability deep SUBCOMMAND ...`: dispatch `argv` (list of str) to a subcommand of COMMANDS.

    Returns its exit code; an unknown subcommand, or torch not installed, raises UsageError.
    """
    if not argv or argv[0] not in COMMANDS:
        raise UsageError(
            "usage: stability deep retrain|train|generate|evaluate|compare ... (see --help of each)"
        )
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("stability deep needs the torch extra: pip install '.[torch]'") from None
    return COMMANDS[argv[0]](argv[1:])
