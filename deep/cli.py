"""`stability deep retrain|train|generate`: the image-scale loop from the command line.

Works the same under torchrun (multi-GPU DDP, or several CPU processes with gloo):
    torchrun --standalone --nproc_per_node 8 -m stability deep retrain --data cifar10=PATH ...
"""

from __future__ import annotations

import json
import sys

from stability.cli import _fmt, _Parser


def _common(p):
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:K | mps (default cpu)")
    p.add_argument("--dtype", default="fp32", help="fp32 | tf32 | bf16 (autocast)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--seed", type=int, default=None)


def retrain_parser():
    p = _Parser(prog="stability deep retrain", description="Algorithm 1 with EDM on images.")
    p.add_argument(
        "--data",
        default=None,
        help="digits[:R] | cifar10=PATH | ffhq=PATH | folder=PATH | zip=PATH",
    )
    p.add_argument(
        "--resolution", type=int, default=None, help="image resolution (digits: upsampled to it)"
    )
    p.add_argument("--n", type=int, default=None, help="real images used (default: all)")
    p.add_argument("--model", default="edm", help="edm")
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
    p.add_argument("--sampler-steps", type=int, default=None, help="Heun steps (default 18)")
    p.add_argument("--s-churn", type=float, default=None, help="EDM stochasticity (default 0)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--gen-batch", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--lr-rampup-kimg", type=float, default=None)
    p.add_argument("--ema-halflife-kimg", type=float, default=None)
    p.add_argument("--rampup", default=None, help="restart (the paper's) | continue | none")
    p.add_argument("--n-fresh", type=int, default=None)
    p.add_argument("--subsample-size", type=int, default=None)
    p.add_argument(
        "--quick", action="store_true", help="digits, tiny network, 3 iterations on a CPU"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    _common(p)
    return p


def main_retrain(argv) -> int:
    from deep.retrain import DeepConfig, quick_config, run_deep
    from stability.errors import parse_lam

    args = retrain_parser().parse_args(argv)
    given = {
        k: v
        for k, v in vars(args).items()
        if v is not None and k not in ("quick", "out", "json", "fixed_seeds", "compile")
    }
    if "lam" in given:
        given["lam"] = parse_lam(given["lam"])
    if args.fixed_seeds:
        given["fixed_seeds"] = True
    if args.compile:
        given["compile"] = True
    cfg = quick_config(**given) if args.quick else DeepConfig(**given)
    result = run_deep(cfg, args.out, progress=sys.stderr.isatty() and not args.json)
    from deep import dist

    if dist.is_main():
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            last = result["metrics"][str(result["iterations"])]
            print(
                f"t = {result['iterations']}: "
                + ", ".join(f"{k} = {_fmt(v)}" for k, v in last.items())
            )
            print(f"wrote {result['out']}/summary.csv, metrics.json and figures/")
    dist.shutdown()
    return 0


def train_parser():
    p = _Parser(prog="stability deep train", description="Train (or fine-tune) EDM on images once.")
    p.add_argument("--data", required=True)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--net", default="auto")
    p.add_argument("--init", default=None, help="checkpoint to start from")
    p.add_argument("--kimg", type=float, required=True)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-rampup-kimg", type=float, default=10000.0)
    p.add_argument("--ema-halflife-kimg", type=float, default=500.0)
    p.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    _common(p)
    return p


def main_train(argv) -> int:
    from deep import dist
    from deep.data import load_images
    from deep.retrain import DeepConfig, net_config
    from deep.train import Trainer, TrainOptions, load_weights
    from deep.unet import UNetConfig

    args = train_parser().parse_args(argv)
    if not args.kimg > 0:
        raise ValueError(f"kimg must be > 0, got {args.kimg}")
    data = load_images(args.data, resolution=args.resolution)
    images = data.images[: args.n] if args.n else data.images
    net = net_config(DeepConfig(net=args.net), data.channels, data.resolution)
    if args.init:
        state = load_weights(args.init)
        if state.get("format") == "retrain-stability/edm-v1":
            net = UNetConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in state["net_cfg"].items()}
            )
        if (net.resolution, net.channels) != (data.resolution, data.channels):
            raise ValueError(
                f"checkpoint is for {net.channels}x{net.resolution}x{net.resolution} images, "
                f"the data are {data.channels}x{data.resolution}x{data.resolution}"
            )
    opts = TrainOptions(
        batch=args.batch,
        lr=args.lr,
        lr_rampup_kimg=args.lr_rampup_kimg,
        ema_halflife_kimg=args.ema_halflife_kimg,
        device=args.device,
        dtype=args.dtype,
        compile=args.compile,
    )
    dist.init(args.device)
    trainer = Trainer(net, opts, args.seed or 0)
    if args.init:
        trainer.load(args.init, resume=False)
    loss = trainer.train(images, args.kimg, progress=sys.stderr.isatty())
    if dist.is_main():
        trainer.save(args.out)
        print(f"trained {args.kimg:g} kimg, final loss {loss:.4g}; wrote {args.out}")
    dist.shutdown()
    return 0


def generate_parser():
    p = _Parser(
        prog="stability deep generate", description="Generate images with EDM's Heun sampler."
    )
    p.add_argument("--ckpt", required=True, help="checkpoint (.pt from this toolkit)")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument(
        "--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + n - 1"
    )
    p.add_argument("--steps", type=int, default=18)
    p.add_argument("--s-churn", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--out", required=True, help="FILE.zip or an empty/new folder of PNGs")
    _common(p)
    return p


def main_generate(argv) -> int:
    from deep import dist
    from deep.data import save_png_folder, save_zip
    from deep.edm import SamplerConfig
    from deep.train import Trainer, TrainOptions, load_weights
    from deep.unet import UNetConfig

    args = generate_parser().parse_args(argv)
    if args.n < 1:
        raise ValueError(f"n must be >= 1, got {args.n}")
    state = load_weights(args.ckpt)
    if state.get("format") != "retrain-stability/edm-v1":
        raise ValueError(
            "generate needs a checkpoint written by this toolkit (it stores the network size)"
        )
    net = UNetConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in state["net_cfg"].items()}
    )
    dist.init(args.device)
    trainer = Trainer(net, TrainOptions(device=args.device, dtype=args.dtype), args.seed or 0)
    trainer.load(args.ckpt)
    seeds = list(range(args.first_seed, args.first_seed + args.n))
    images = trainer.generate(
        seeds,
        SamplerConfig(steps=args.steps, s_churn=args.s_churn),
        args.batch,
        progress=sys.stderr.isatty(),
    )
    if dist.is_main():
        (save_zip if args.out.endswith(".zip") else save_png_folder)(images, args.out)
        print(f"wrote {len(images)} images to {args.out}")
    dist.shutdown()
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("retrain", "train", "generate"):
        raise ValueError("usage: stability deep retrain|train|generate ... (see --help of each)")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ValueError("stability deep needs the torch extra: pip install '.[torch]'") from None
    return {"retrain": main_retrain, "train": main_train, "generate": main_generate}[argv[0]](
        argv[1:]
    )
