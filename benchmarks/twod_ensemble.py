"""Batched ensemble vs the plain sequential torchcfm loop, same steps and sizes (2D issue).

For R runs of a 2D flow-matching (OT-CFM or CFM) or DDPM model, times:
- sequential: R separate torchcfm MLPs, each trained with torchcfm's own matcher
  (sample_location_and_conditional_flow, which for OT-CFM computes the exact minibatch OT plan
  with POT) and its own Adam, the way a research script loops over seeds;
- ensemble: the same R networks as one batched model (simulations.models2d), one forward and
  backward pass per step for all runs, the R exact OT plans in one call of our compiled solver
  (simulations.assignment, one problem per core);
and the same for sampling n points per run with torchdiffeq (Euler, 100 steps).
Prints seconds per training step (all runs) and the ratio, as wall-clock time and as this
process' CPU time. Each timing is repeated (--repeats, sequential and ensemble alternating) and
the fastest repeat is kept: on a shared machine single timings of the same code vary by up to
30%, and the minimum is the least disturbed one. On a machine loaded by other jobs, wall times
of multi-threaded torch are meaningless (threads wait for each other's time slices: 0.9 s per
sequential CFM step measured instead of 0.05 s); ``--threads 1`` and the CPU columns then still
compare the two codes (measured CPU times varied by 10-15% between runs at a load of 8-17).

``--compile`` adds the network's training step alone (forward, backward, Adam at R runs and
the batch size), eager vs torch.compile. Measured on this machine (--threads 1, 2026-12,
torch 2.13): torch.compile 11.5-15.2 ms vs eager 15.1-18.7 ms CPU per step, 20-24% faster,
after a first compilation of 30 s wall from an empty TORCHINDUCTOR_CACHE_DIR (6-9 s with a warm
cache) in every process and for every new input shape; on ``stability simulate diffusion
--quick`` that made the whole run 35 s warm and 98 s cold instead of 29 s eager. It also needs
a C++ compiler at run time, which pip does not install (without one the first call raises
InductorError). The ensemble is therefore eager (simulations/ensemble.py).

Run:  python benchmarks/twod_ensemble.py [--runs 50] [--steps 60] [--repeats 3] [--quick]
      python benchmarks/twod_ensemble.py --runs 50 --steps 30 --threads 1   (a shared machine)
      python benchmarks/twod_ensemble.py --models ddpm --no-sampling --compile --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


class _Clock:
    """Wall-clock and CPU (process) time since construction."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def sequential_train(kind: str, runs: int, steps: int, batch: int, data: np.ndarray):
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )
    from torchcfm.models import MLP

    x_all = torch.from_numpy(data.astype(np.float32))
    clock = _Clock()
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
    return clock.stop()


def ensemble_train(kind: str, runs: int, steps: int, batch: int, data: np.ndarray):
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
    clock = _Clock()
    model.fit(PointSet(data))
    return clock.stop()


def sampling(runs: int, n: int):
    from torchcfm.models import MLP
    from torchdiffeq import odeint

    from simulations.ensemble import RunStreams
    from simulations.models2d import FlowModel, TrainConfig

    nets = [MLP(dim=2, time_varying=True, w=64) for _ in range(runs)]
    span = torch.tensor([0.0, 1.0])
    clock = _Clock()
    with torch.no_grad():
        for net in nets:

            def v(t, x, net=net):
                return net(torch.cat([x, torch.full((x.shape[0], 1), float(t))], 1))

            odeint(v, torch.randn(n, 2), span, method="euler", options={"step_size": 0.01})
    seq = clock.stop()
    model = FlowModel(list(range(runs)), 0, TrainConfig(1, 1), "cfm", 0.1, "euler", 100)
    clock = _Clock()
    model.sample(n, RunStreams(0, (1,), range(runs)))
    return seq, clock.stop()


def network_steps(runs: int, batch: int, steps: int, compiled: bool):
    """First call and per-step time of the ensemble network's training step alone.

    One step: forward of a (R, batch, 3) input, squared error, backward, fused Adam (the
    network's share of a DDPM step, without data or noise). With ``compiled``, the forward is
    torch.compile'd (inductor generates the fused bias + SELU loops and their backward).
    Returns ((wall, cpu) of the first two steps, i.e. compilation, (wall, cpu) of ``steps``
    more).
    """
    from simulations.ensemble import EnsembleMLP, RunStreams

    net = EnsembleMLP(runs, 3, 2, 64)
    net.reset_parameters(RunStreams(0, (1,), range(runs)))
    forward = torch.compile(net, dynamic=False) if compiled else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(runs, batch, 3, generator=g), torch.randn(runs, batch, 2, generator=g)

    def step():
        loss = ((forward(x) - y) ** 2).mean(dim=(1, 2))
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()

    clock = _Clock()
    step(), step()
    first = clock.stop()
    clock = _Clock()
    for _ in range(steps):
        step()
    return first, clock.stop()


def _fastest(pairs):
    """The fastest wall time and the fastest CPU time among (wall, cpu) pairs."""
    return min(w for w, _ in pairs), min(c for _, c in pairs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--steps", type=int, default=60, help="training steps per run")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="timings per method, fastest kept")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and numba threads (default: theirs); 1 makes CPU times comparable",
    )
    p.add_argument("--models", nargs="+", default=["cfm", "ddpm", "otcfm"])
    p.add_argument("--no-sampling", action="store_true", help="skip the sampling timing")
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time the network's step alone, eager vs torch.compile (set "
        "TORCHINDUCTOR_CACHE_DIR to an empty folder to include a cold compilation)",
    )
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.steps, args.n, args.repeats = 4, 5, 200, 1
    if args.threads:
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    from simulations.data import sample_moons

    rng = np.random.default_rng(0)
    data = np.stack([sample_moons(args.n, rng) for _ in range(args.runs)])
    print(
        f"R = {args.runs} runs, {args.steps} steps each, batch {args.batch}, n = {args.n}, "
        f"torch threads = {torch.get_num_threads()}, fastest of {args.repeats} timings\n"
        "(wall: elapsed seconds; cpu: this process' CPU seconds, all threads, which a shared "
        "machine disturbs less)\n"
    )
    print(
        f"{'model':>7} {'sequential s/step':>22} {'ensemble s/step':>22} {'speed-up':>16}\n"
        f"{'':>7} {'wall':>11}{'cpu':>11} {'wall':>11}{'cpu':>11} {'wall':>8}{'cpu':>8}"
    )
    for kind in args.models:
        seq, ens = [], []
        for _ in range(args.repeats):
            seq.append(sequential_train(kind, args.runs, args.steps, args.batch, data))
            ens.append(ensemble_train(kind, args.runs, args.steps, args.batch, data))
        (sw, sc), (ew, ec) = _fastest(seq), _fastest(ens)
        k = args.steps
        print(
            f"{kind:>7} {sw / k:>11.4f}{sc / k:>11.4f} {ew / k:>11.4f}{ec / k:>11.4f} "
            f"{sw / ew:>7.1f}x{sc / ec:>7.1f}x"
        )
    if not args.no_sampling:
        times = [sampling(args.runs, args.n) for _ in range(args.repeats)]
        (sw, sc), (ew, ec) = _fastest([t[0] for t in times]), _fastest([t[1] for t in times])
        print(
            f"\nsampling {args.n} points per run (Euler, 100 steps): sequential {sw:.2f} s "
            f"(cpu {sc:.2f} s), ensemble {ew:.2f} s (cpu {ec:.2f} s), speed-up {sw / ew:.1f}x "
            f"(cpu {sc / ec:.1f}x)"
        )
    if args.compile:
        steps = max(args.steps, 20)
        print(f"\nnetwork step alone (R = {args.runs}, batch {args.batch}), {steps} steps:")
        for compiled in (False, True):
            runs = [network_steps(args.runs, args.batch, steps, compiled) for _ in range(2)]
            (fw, fc), (w, c) = runs[0][0], _fastest([r[1] for r in runs])
            name = "torch.compile" if compiled else "eager"
            print(
                f"{name:>14}: first two steps {fw:6.2f} s (cpu {fc:6.2f} s), then "
                f"{w / steps * 1e3:6.2f} ms/step (cpu {c / steps * 1e3:6.2f} ms/step)"
            )


if __name__ == "__main__":
    main()
