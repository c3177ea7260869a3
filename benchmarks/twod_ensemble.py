"""Batched ensemble vs the plain sequential torchcfm loop, same steps and sizes (2D issue).

For R runs of a 2D flow-matching (OT-CFM or CFM) or DDPM model, times:
- sequential: R separate torchcfm MLPs, each trained with torchcfm's own matcher
  (sample_location_and_conditional_flow, which for OT-CFM computes the exact minibatch OT plan
  with POT) and its own Adam, the way a research script loops over seeds;
- ensemble: the same R networks as one batched model (simulations.models2d), one forward and
  backward pass per step for all runs, the R exact OT plans in one call of our compiled solver
  (simulations.assignment, one problem per core);
and the same for sampling n points per run with torchdiffeq (Euler, 100 steps).
Prints seconds per training step (all runs) and the ratio. Each timing is repeated (--repeats,
sequential and ensemble alternating) and the fastest repeat is kept: on a shared machine single
timings of the same code vary by up to 30%, and the minimum is the least disturbed one.

Run:  python benchmarks/twod_ensemble.py [--runs 50] [--steps 60] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def sequential_train(kind: str, runs: int, steps: int, batch: int, data: np.ndarray) -> float:
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )
    from torchcfm.models import MLP

    x_all = torch.from_numpy(data.astype(np.float32))
    t0 = time.perf_counter()
    for r in range(runs):
        torch.manual_seed(r)
        model = MLP(dim=2, time_varying=True, w=64)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        if kind == "ddpm":
            betas = torch.linspace(1e-4 * 10, 0.02 * 10, 100)
            ab = torch.cumprod(1 - betas, 0)
        else:
            fm = (
                ExactOptimalTransportConditionalFlowMatcher(0.1)
                if kind == "otcfm"
                else ConditionalFlowMatcher(0.1)
            )
        for _ in range(steps):
            x1 = x_all[r, torch.randint(0, x_all.shape[1], (batch,))]
            opt.zero_grad()
            if kind == "ddpm":
                t = torch.randint(0, 100, (batch,))
                eps = torch.randn_like(x1)
                a = ab[t][:, None]
                xt = a.sqrt() * x1 + (1 - a).sqrt() * eps
                loss = ((model(torch.cat([xt, t[:, None] / 100.0], 1)) - eps) ** 2).mean()
            else:
                x0 = torch.randn_like(x1)
                t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
                loss = ((model(torch.cat([xt, t[:, None]], 1)) - ut) ** 2).mean()
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def ensemble_train(kind: str, runs: int, steps: int, batch: int, data: np.ndarray) -> float:
    from simulations.models2d import DiffusionModel, FlowModel, TrainConfig
    from stability.loop import PointSet

    cfg = TrainConfig(init_steps=steps, steps=steps, batch=batch, lr=3e-3)
    if kind == "ddpm":
        model = DiffusionModel(list(range(runs)), 0, cfg, 100)
    else:
        model = FlowModel(list(range(runs)), 0, cfg, kind, 0.1)
    if kind == "otcfm":
        # load the compiled OT solver outside the timing (numba compiles it once per install,
        # about 10 s, then loads it from its cache in about a second per process)
        from simulations.assignment import match_points

        match_points(np.zeros((1, 2, 2)), np.ones((1, 2, 2)))
    t0 = time.perf_counter()
    model.fit(PointSet(data))
    return time.perf_counter() - t0


def sampling(runs: int, n: int) -> tuple[float, float]:
    from torchcfm.models import MLP
    from torchdiffeq import odeint

    from simulations.ensemble import RunStreams
    from simulations.models2d import FlowModel, TrainConfig

    nets = [MLP(dim=2, time_varying=True, w=64) for _ in range(runs)]
    span = torch.tensor([0.0, 1.0])
    t0 = time.perf_counter()
    with torch.no_grad():
        for net in nets:

            def v(t, x, net=net):
                return net(torch.cat([x, torch.full((x.shape[0], 1), float(t))], 1))

            odeint(v, torch.randn(n, 2), span, method="euler", options={"step_size": 0.01})
    seq = time.perf_counter() - t0
    model = FlowModel(list(range(runs)), 0, TrainConfig(1, 1), "cfm", 0.1, "euler", 100)
    t0 = time.perf_counter()
    model.sample(n, RunStreams(0, (1,), range(runs)))
    return seq, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--steps", type=int, default=60, help="training steps per run")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="timings per method, fastest kept")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.steps, args.n, args.repeats = 4, 5, 200, 1
    from simulations.data import sample_moons

    rng = np.random.default_rng(0)
    data = np.stack([sample_moons(args.n, rng) for _ in range(args.runs)])
    print(
        f"R = {args.runs} runs, {args.steps} steps each, batch {args.batch}, n = {args.n}, "
        f"torch threads = {torch.get_num_threads()}, fastest of {args.repeats} timings\n"
    )
    print(f"{'model':>7} {'sequential s/step':>18} {'ensemble s/step':>16} {'speed-up':>9}")
    for kind in ("cfm", "ddpm", "otcfm"):
        seq = ens = float("inf")
        for _ in range(args.repeats):
            seq = min(seq, sequential_train(kind, args.runs, args.steps, args.batch, data))
            ens = min(ens, ensemble_train(kind, args.runs, args.steps, args.batch, data))
        print(f"{kind:>7} {seq / args.steps:>18.4f} {ens / args.steps:>16.4f} {seq / ens:>8.1f}x")
    seq = ens = float("inf")
    for _ in range(args.repeats):
        s, e = sampling(args.runs, args.n)
        seq, ens = min(seq, s), min(ens, e)
    print(
        f"\nsampling {args.n} points per run (Euler, 100 steps): sequential {seq:.2f} s, "
        f"ensemble {ens:.2f} s, speed-up {seq / ens:.1f}x"
    )


if __name__ == "__main__":
    main()
