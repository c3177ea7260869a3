"""`stability deep retrain|train|generate|evaluate|compare`: the image-scale loop from the command line.

Works the same under torchrun (multi-GPU DDP, or several CPU processes with gloo):
    torchrun --standalone --nproc_per_node 8 -m stability deep retrain --data cifar10=PATH ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stability.app.formatting import fmt
from stability.app.parser import ArgParser
from stability.errors import UsageError


def _common(p):
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:K | mps (default cpu)")
    p.add_argument("--dtype", default="fp32", help="fp32 | tf32 | bf16 (autocast)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--seed", type=int, default=None)


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


def check_positive(args, *names) -> None:
    """UsageError naming the option when one of `names` is given and not >= 1.

    0 must never mean "all" or "forever": `--n 0` used to mean every image and `--n-gen 0` ran
    until killed. An option left out (None) keeps its default.
    """
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def check_device(device: str) -> None:
    """UsageError unless `device` (cpu | cuda | cuda:K | mps) exists in this torch build, so
    that a run on a missing accelerator stops before its folder is written."""
    import torch

    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {device}: this torch has no usable CUDA device (torch "
                f"{torch.__version__}, CUDA {torch.version.cuda or 'not compiled in'})"
            )
        count = torch.cuda.device_count()
        if index and (not index.isdigit() or int(index) >= count):
            raise UsageError(f"--device {device}: CUDA devices are cuda:0..cuda:{count - 1}")
        return
    if kind == "mps" and not index:
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {device}: MPS is not available in this torch build")
        return
    raise UsageError(f"--device must be cpu, cuda, cuda:K or mps, got {device!r}")


def downsampling_factor(model: str) -> int:
    """How many times the small (CPU) network of `model` halves the image, 2^(levels - 1).

    The paper's networks (--net cifar10 | ffhq64) take exactly 32 or 64 pixels, multiples of
    it; the U-Net's skip connections need every level's side to be an integer.
    """
    from deep.methods import OTCFMNet
    from deep.unet import UNetConfig

    tiny = OTCFMNet.tiny() if model == "otcfm" else UNetConfig.tiny()
    return 2 ** (len(tiny.channel_mult) - 1)


def check_resolution(resolution, model: str | None, what: str = "--resolution") -> None:
    """UsageError unless `resolution` is a positive multiple of the network's downsampling
    factor, so that every level's side is a whole number of pixels (`what` names the option or
    the data)."""
    if resolution is None:
        return
    factor = downsampling_factor(model or "edm")
    if resolution < factor or resolution % factor:
        raise UsageError(
            f"{what} {resolution}: the {model or 'edm'} U-Net halves the image "
            f"{factor.bit_length() - 1} times, so it needs a multiple of {factor} (>= {factor})"
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
    _common(p)
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
    _common(p)
    return p


def _checkpoint_network(path, model: str):
    """(model, network config) stored in one of this toolkit's checkpoints."""
    from deep.methods import net_from_dict
    from deep.train import FORMAT, load_weights

    state = load_weights(path)
    if state.get("format") != FORMAT:
        raise UsageError(
            f"{path} is not a checkpoint written by this toolkit (it stores the network size)"
        )
    stored = state.get("method", "edm")
    if model is not None and stored != model:
        raise UsageError(f"{path} holds a {stored} model, not {model}")
    return stored, net_from_dict(stored, state["net_cfg"]), state


def _train_config(args):
    """The DeepConfig of `deep train`'s options (defaults where an option is not given)."""
    from deep.retrain import DeepConfig, check_run_options

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
    from deep.data import load_images
    from deep.retrain import net_config
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
            _, net, _ = _checkpoint_network(args.init, args.model)
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


def generate_parser():
    """The parser of `stability deep generate`: images from a checkpoint, one seed per image."""
    p = ArgParser(prog="stability deep generate", description="Generate images from a checkpoint.")
    p.add_argument("--ckpt", required=True, help="checkpoint (.pt from this toolkit)")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument(
        "--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + n - 1"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="sampler steps (EDM Heun 18, OT-CFM Euler 100 when --ode-solver euler, DDIM 100)",
    )
    p.add_argument("--s-churn", type=float, default=0.0, help="EDM stochasticity")
    p.add_argument("--ode-solver", default="dopri5", help="OT-CFM: dopri5 | euler")
    p.add_argument("--ode-tol", type=float, default=1e-5)
    p.add_argument(
        "--ddim-spacing", default="leading", help="DDPM: leading (default) | trailing | linspace"
    )
    p.add_argument(
        "--latents",
        default="float32",
        help="dtype of the per-seed latents: float32 (the official generator's) | float64",
    )
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--out", required=True, help="FILE.zip or an empty/new folder of PNGs")
    _common(p)
    return p


def main_generate(argv) -> int:
    """`stability deep generate` with `argv` (list of str): generate --n images (seeds
    first-seed..first-seed + n - 1) with the checkpoint's method and write them to a zip or a
    folder of PNGs. Returns 0; bad options or a foreign checkpoint raise UsageError."""
    from deep import dist
    from deep.data import check_image_target, save_png_folder, save_zip
    from deep.methods import make_method
    from deep.train import Trainer, TrainOptions, held_by_main
    from stability.runs.lock import lock_output

    args = generate_parser().parse_args(argv)
    check_positive(args, "n", "batch", "steps")
    check_device(args.device)
    check_image_target(args.out)  # before loading and sampling, not after
    model, net, _ = _checkpoint_network(args.ckpt, None)
    if model == "edm":
        method = make_method(
            "edm", steps=args.steps or 18, s_churn=args.s_churn, latents=args.latents
        )
    elif model == "otcfm":
        method = make_method(
            "otcfm",
            solver=args.ode_solver,
            tol=args.ode_tol,
            euler_steps=args.steps or 100,
            latents=args.latents,
        )
    else:
        method = make_method(
            "ddpm", ddim_steps=args.steps or 100, spacing=args.ddim_spacing, latents=args.latents
        )
    dist.init(args.device)
    trainer = Trainer(
        net, TrainOptions(device=args.device, dtype=args.dtype), args.seed or 0, method
    )
    trainer.load(args.ckpt)
    seeds = list(range(args.first_seed, args.first_seed + args.n))
    with held_by_main(lambda: lock_output(args.out, "deep generate")):
        images = trainer.generate(seeds, None, args.batch, progress=sys.stderr.isatty())
        if dist.is_main():
            (save_zip if args.out.endswith(".zip") else save_png_folder)(images, args.out)
            print(f"wrote {len(images)} images to {args.out}")
    dist.shutdown()
    return 0


def evaluate_parser():
    """The parser of `stability deep evaluate`: FID, precision and recall of two image sets."""
    p = ArgParser(
        prog="stability deep evaluate",
        description="FID, precision and recall of generated images against real ones.",
    )
    p.add_argument(
        "--real", required=True, help="real images: a data spec (digits, cifar10=PATH, folder=...)"
    )
    p.add_argument(
        "--generated", required=True, help="generated images: a data spec or a .zip/folder path"
    )
    p.add_argument("--features", default="auto", help="auto | digits | pixels | inception=FILE")
    p.add_argument(
        "--k",
        type=int,
        default=None,
        help="neighbours of the precision/recall radii (default 3; 4 with --include-self)",
    )
    p.add_argument(
        "--include-self",
        action="store_true",
        help="k counts the point itself, strict inequality, k = 4 unless --k is given (the "
        "convention of the prdc and fls packages)",
    )
    p.add_argument("--n-real", type=int, default=None, help="use the first N real images")
    p.add_argument("--cache", default=None, help="folder for cached features (default: none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    return p


def main_evaluate(argv) -> int:
    """`stability deep evaluate` with `argv` (list of str): FID and improved precision/recall
    (Kynkaanniemi et al. 2019, Eqs. 1-3) of --generated against --real in the --features space,
    printed (as JSON with --json). Returns 0; bad options or data raise UsageError."""
    from deep.data import load_images
    from deep.features import make_extractor
    from deep.metrics import evaluate

    args = evaluate_parser().parse_args(argv)
    check_positive(args, "n_real", "k")
    real = load_images(args.real, limit=args.n_real)
    gen = load_images(args.generated, resolution=real.resolution, channels=real.channels)
    spec = args.features
    if spec == "auto":
        spec = "digits" if args.real.startswith("digits") else "pixels"
    # Without --cache the digits network is retrained (a few seconds) rather than left in /tmp.
    extractor = make_extractor(spec, real=real, cache_dir=args.cache, device=args.device)
    out = evaluate(real.images, gen.images, extractor, k=args.k, include_self=args.include_self)
    out["features"] = spec
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"FID {fmt(out['fid'])}  precision {fmt(out['precision'])}  recall {fmt(out['recall'])}"
            f"  ({out['n_generated']} generated vs {out['n_real']} real, features {spec})"
        )
    return 0


def compare_parser():
    """The parser of `stability deep compare`: Figure 2's curves of several retrain runs."""
    p = ArgParser(
        prog="stability deep compare",
        description="Overlay FID/precision/recall/parameter distance of several runs (Figure 2).",
    )
    p.add_argument("runs", nargs="+", help="run folders of stability deep retrain")
    p.add_argument("--out", required=True, help="folder for compare.png and compare.csv")
    return p


def main_compare(argv) -> int:
    """`stability deep compare` with `argv` (list of str): overlay the metrics of the given run
    folders in OUT/compare.png and OUT/compare.csv. Returns 0; an --out that is a file, or a
    folder that is not a retrain run, raises UsageError."""
    from deep.retrain import compare_runs

    args = compare_parser().parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} exists and is not a folder")
    res = compare_runs(args.runs, out)
    print(f"wrote {res['figure']} and {res['csv']}")
    return 0


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
