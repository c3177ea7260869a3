"""`stability deep generate|evaluate|compare`: images from a checkpoint, their FID, precision
and recall against real images, and Figure 2's curves of several retrain runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stability.app.deep_options import (
    check_device,
    check_positive,
    checkpoint_network,
    common_options,
)
from stability.app.formatting import fmt
from stability.app.parser import ArgParser
from stability.errors import UsageError


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
    common_options(p)
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
    model, net, _ = checkpoint_network(args.ckpt, None)
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
    from deep.figures import compare_runs

    args = compare_parser().parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} exists and is not a folder")
    res = compare_runs(args.runs, out)
    print(f"wrote {res['figure']} and {res['csv']}")
    return 0
