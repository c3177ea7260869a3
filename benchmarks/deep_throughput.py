"""Training and sampling throughput of the EDM networks (deep issue).

Measures, for the paper's CIFAR-10 network (DDPM++, 56M parameters):
- training images/s: forward + EDM loss + backward + Adam step, at a given batch;
- sampling images/s: network evaluations per second divided by the 35 evaluations of an
  18-step Heun sample;
for each precision in fp32, tf32 (CUDA only) and bf16 autocast, with channels_last and
torch.compile as options. On a GPU use the paper's batch 256; on a CPU (no GPU lent) the
defaults are small so that it finishes in minutes.

Run:  python benchmarks/deep_throughput.py --device cuda --batch 256 [--compile] [--channels-last]
      python benchmarks/deep_throughput.py                       (CPU, batch 4, tiny + CIFAR nets)
"""

from __future__ import annotations

import argparse
import time

import torch

from deep.edm import EDMLoss, EDMPrecond
from deep.unet import UNetConfig, count_parameters


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(
    cfg: UNetConfig,
    device: str,
    batch: int,
    dtype: str,
    steps: int,
    compile_: bool,
    channels_last: bool,
):
    if dtype == "tf32":
        if not device.startswith("cuda"):
            return None
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        if device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    net = EDMPrecond(cfg).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    run = torch.compile(net) if compile_ else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = EDMLoss()
    shape = (batch, cfg.channels, cfg.resolution, cfg.resolution)
    x = torch.randn(shape, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(
        device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=dtype == "bf16"
    )

    def train_step():
        with autocast:
            loss = loss_fn(
                run, x, torch.randn(batch, device=device), torch.randn(shape, device=device)
            ).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def eval_step():
        with torch.no_grad(), autocast:
            run(x, torch.full((batch,), 1.0, device=device))

    out = {}
    for name, fn in (("train", train_step), ("eval", eval_step)):
        for _ in range(2):  # warm-up (and compilation)
            fn()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        out[name] = batch * steps / (time.perf_counter() - t0)
    return out["train"], out["eval"] / 35.0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--nets", default="cifar10,tiny")
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    batch = args.batch or (256 if gpu else 4)
    steps = args.steps or (20 if gpu else 3)
    print(
        f"device {args.device}, batch {batch}, {steps} timed steps, compile={args.compile}, "
        f"channels_last={args.channels_last}, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    if gpu:
        print(torch.cuda.get_device_name())
    print(f"{'network':>8} {'params':>9} {'dtype':>6} {'train img/s':>12} {'sample img/s':>13}")
    for name in args.nets.split(","):
        cfg = UNetConfig.cifar10() if name == "cifar10" else UNetConfig.tiny(32, 3)
        params = count_parameters(EDMPrecond(cfg))
        for dtype in ("fp32", "tf32", "bf16"):
            res = bench(cfg, args.device, batch, dtype, steps, args.compile, args.channels_last)
            if res is None:
                continue
            print(f"{name:>8} {params / 1e6:>8.1f}M {dtype:>6} {res[0]:>12.1f} {res[1]:>13.2f}")


if __name__ == "__main__":
    main()
