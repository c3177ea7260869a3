"""Training and sampling throughput of the paper's EDM configurations, one table (issue 19).

For the CIFAR-10 and FFHQ-64 configurations of the paper's EDM runs (DDPM++ networks of 56M and
62M parameters, batch 256 and 128, the official augmentation at 0.12 and 0.15), in fp32, tf32
(CUDA only) and bf16 autocast, without and with torch.compile:

- train img/s: `deep.train.Trainer` steps as `deep retrain` runs them (minibatch gather,
  augmentation, EDM loss, backward, Adam, EMA), after warm-up (and compilation);
- sample img/s: `Trainer.generate` as `deep retrain` runs it (per-seed float32 latents,
  18-step Heun = 35 network evaluations per image, uint8 conversion).

For comparison it prints the official code's published speed: the NVlabs/edm README trains
CIFAR-10 (200 Mimg) in about 2 days and FFHQ-64 in about 4 days on 8 V100s in fp32, i.e.
about 145 and 72 training images/s per V100; the `vs V100` column is train img/s over that.

Run (GPU):  python benchmarks/deep_throughput.py --device cuda
     (CPU): python benchmarks/deep_throughput.py --quick     tiny networks of the same layout
            at both resolutions, batch 4, fp32 and bf16, about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from deep.edm import SamplerConfig
from deep.methods import EDMMethod
from deep.train import Trainer, TrainOptions
from deep.unet import UNetConfig, count_parameters

# Official training speed per V100 (fp32): 200 Mimg / (days * 86400 s) / 8 GPUs.
OFFICIAL_PER_V100 = {"cifar10": 200e6 / (2 * 86400) / 8, "ffhq64": 200e6 / (4 * 86400) / 8}


@dataclass(frozen=True)
class Setup:
    name: str  # cifar10 | ffhq64 (| their -tiny stand-ins for --quick)
    net: UNetConfig
    batch: int
    augment: float


def setups(quick: bool, batch: int | None) -> list[Setup]:
    """The paper's two EDM configurations, or tiny networks of the same shapes for --quick."""
    if quick:
        b = batch or 4
        return [
            Setup("cifar10-tiny", UNetConfig.tiny(32, 3), b, 0.12),
            Setup("ffhq64-tiny", UNetConfig.tiny(64, 3), b, 0.15),
        ]
    return [
        Setup("cifar10", UNetConfig.cifar10(), batch or 256, 0.12),
        Setup("ffhq64", UNetConfig.ffhq64(), batch or 128, 0.15),
    ]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(setup: Setup, device: str, dtype: str, compile_: bool, steps: int, n_gen: int):
    """(train img/s, sample img/s) of one configuration; None if `dtype` needs CUDA."""
    if dtype == "tf32" and not device.startswith("cuda"):
        return None
    if device.startswith("cuda"):  # tf32 only where asked: Trainer sets it, the others unset it
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
        torch.backends.cudnn.allow_tf32 = dtype == "tf32"
    net = setup.net
    if setup.augment and net.augment_dim == 0:  # the tiny stand-ins take the labels too
        net = replace(net, augment_dim=9)
    opts = TrainOptions(
        batch=setup.batch, lr=1e-4, lr_rampup_kimg=0.0, device=device, dtype=dtype,
        compile=compile_,
    )  # fmt: skip
    sampler = SamplerConfig()
    trainer = Trainer(net, opts, seed=0, method=EDMMethod(sampler, augment=setup.augment))
    res = setup.net.resolution
    images = np.random.default_rng(0).integers(0, 256, (4 * setup.batch, 3, res, res), np.uint8)
    kimg = setup.batch / 1000
    trainer.train(images, 2 * kimg)  # warm-up (and compilation)
    _sync(device)
    t0 = time.perf_counter()
    trainer.train(images, steps * kimg)
    _sync(device)
    train = steps * setup.batch / (time.perf_counter() - t0)
    gen_batch = min(n_gen, setup.batch)
    trainer.generate(list(range(gen_batch)), sampler, batch=gen_batch)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    trainer.generate(list(range(1000, 1000 + n_gen)), sampler, batch=gen_batch)
    _sync(device)
    return train, n_gen / (time.perf_counter() - t0), count_parameters(trainer.net)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny networks, small batch (a CPU)")
    p.add_argument("--batch", type=int, default=None, help="default: 256 / 128 (quick: 4)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps")
    p.add_argument("--n-gen", type=int, default=None, help="images timed in sampling")
    p.add_argument("--dtypes", default=None, help="comma list of fp32,tf32,bf16")
    p.add_argument("--compile", default=None, help="off | on | both (GPU default both)")
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    steps = args.steps or (20 if gpu else 3)
    n_gen = args.n_gen or (512 if gpu else 4)
    dtypes = (args.dtypes or ("fp32,tf32,bf16" if gpu else "fp32,bf16")).split(",")
    modes = {"off": [False], "on": [True], "both": [False, True]}[
        args.compile or ("both" if gpu else "off")
    ]
    print(
        f"device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if gpu else f", {torch.get_num_threads()} threads")
        + f", torch {torch.__version__}, {steps} timed steps, {n_gen} images sampled"
    )
    head = (
        "config",
        "params",
        "batch",
        "dtype",
        "compile",
        "train img/s",
        "sample img/s",
        "vs V100",
    )
    print("{:>13} {:>7} {:>5} {:>5} {:>7} {:>11} {:>12} {:>7}".format(*head))
    for setup in setups(args.quick, args.batch):
        for dtype in dtypes:
            for compile_ in modes:
                res = measure(setup, args.device, dtype, compile_, steps, n_gen)
                if res is None:
                    continue
                train, sample, params = res
                ref = OFFICIAL_PER_V100.get(setup.name)
                print(
                    f"{setup.name:>13} {params / 1e6:>6.1f}M {setup.batch:>5} {dtype:>5} "
                    f"{'yes' if compile_ else 'no':>7} {train:>11.1f} {sample:>12.2f} "
                    + (f"{train / ref:>6.2f}x" if ref else f"{'-':>7}")
                )
    print(
        "official NVlabs/edm (README: 200 Mimg in ~2 days for CIFAR-10, ~4 days for FFHQ-64, "
        "8 V100, fp32): train "
        + ", ".join(f"{k} {v:.0f} img/s per V100" for k, v in OFFICIAL_PER_V100.items())
    )


if __name__ == "__main__":
    main()
