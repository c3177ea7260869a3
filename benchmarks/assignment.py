"""Exact OT between equal-size point clouds: our assignment solver vs POT and scipy (2D issue).

The two exact OT problems of the 2D simulators:
- training: the OT-CFM minibatch coupling, N(0, I) noise vs a two-moons minibatch, n = 256,
  one problem per run and step (R = 50 per step in Figure 7);
- metrics: W2 between generated and held-out samples, n = 1000 (two noisy two-moons samples).
Times, on the same cost matrices: POT's network simplex (ot.emd, what torchcfm's OTPlanSampler
and ot.emd2 use), scipy's linear_sum_assignment, and simulations.assignment on one core
(NUMBA_NUM_THREADS=1) and batched over all cores. Checks that every method finds the same
optimal cost and says which path certified our plans (the auction's warm start on these).
Prints milliseconds per problem and the ratios.

Then the share of our time spent on the certificate (timed per problem, fastest of 5, which a
busy machine disturbs less than whole batches), and the edges, where float64 duals cannot resolve the costs on the fast path (issue 17): one
big-M entry (1e20) among uniform costs, and three far outlier pairs (1e8) among points at 1e-3.
Ours (detected: augmenting paths from zero duals, certified) against scipy, one core.

Run:  python benchmarks/assignment.py [--runs 50] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _problems(kind: str, n: int, runs: int, rng) -> tuple[np.ndarray, np.ndarray]:
    from simulations.data import sample_moons

    y = np.stack([sample_moons(n, rng) for _ in range(runs)])
    if kind == "training":
        x = rng.standard_normal((runs, n, 2))
    else:
        x = np.stack(
            [sample_moons(n, rng) + 0.05 * rng.standard_normal((n, 2)) for _ in range(runs)]
        )
    return x, y


def _edges(n: int, runs: int, rng) -> dict[str, np.ndarray]:
    """Cost stacks (runs, n, n) of the two kinds of input the fast path cannot certify."""
    big = rng.random((runs, n, n))
    big[:, 0, 0] = 1e20
    outliers = []
    for _ in range(runs):
        x, y = rng.standard_normal((2, n, 2)) * 1e-3
        far = rng.standard_normal((3, 2)) * 1e8
        x[:3], y[-3:] = far, far + rng.standard_normal((3, 2))
        outliers.append(((x[:, None] - y[None]) ** 2).sum(-1))
    return {"big-M": big, "outliers": np.stack(outliers)}


def _time_edges(n: int, runs: int, rng, linear_sum_assignment) -> None:
    import math

    import numba

    from simulations.assignment import assign

    print(
        f"\n{'edge case':>9} {'n':>5} {'R':>3} {'scipy LSA':>10} {'ours 1 core':>12}  ratio, paths"
    )
    numba.set_num_threads(1)
    for name, costs in _edges(n, runs, rng).items():
        t0 = time.perf_counter()
        lsa = [c[linear_sum_assignment(c)].sum() for c in costs]
        t_lsa = (time.perf_counter() - t0) / runs
        t0 = time.perf_counter()
        a = assign(costs)
        t_ours = (time.perf_counter() - t0) / runs
        ours = [math.fsum(c[np.arange(n), p]) for c, p in zip(costs, a.perm)]
        if not np.allclose(ours, lsa, rtol=1e-12):
            raise SystemExit(f"ours disagrees with scipy's optimal cost on {name} problems")
        paths = ", ".join(f"{k}: {v}" for k, v in zip(*np.unique(a.solved_by, return_counts=True)))
        print(
            f"{name:>9} {n:>5} {runs:>3} {t_lsa * 1e3:>8.2f}ms {t_ours * 1e3:>10.2f}ms  "
            f"{t_lsa / t_ours:.1f}x scipy; {paths}"
        )


def _time_certificate(costs: np.ndarray, repeats: int = 5) -> str:
    """Per problem, on one core, fastest of `repeats`: the solve, its certificate, and the
    pass that finds the typical cost (which also gives the cost range the auction needs)."""
    from simulations import assignment_kernels as k

    t_solve = t_cert = t_scale = 0.0
    for c in costs:
        best = [np.inf, np.inf, np.inf]
        for _ in range(repeats):
            t0 = time.perf_counter()
            perm, u, v, _ = k.solve(c, True, 1.0 / 16, 4)
            t1 = time.perf_counter()
            scale = k.typical_scale(c)[2]
            t2 = time.perf_counter()
            k.certify(c, perm, u, v, scale)
            t3 = time.perf_counter()
            best = [min(best[0], t1 - t0), min(best[1], t3 - t2), min(best[2], t2 - t1)]
        t_solve, t_cert, t_scale = t_solve + best[0], t_cert + best[1], t_scale + best[2]
    r = len(costs)
    return (
        f"solve {t_solve / r * 1e3:.3f} ms, of which certificate {t_cert / r * 1e3:.3f} ms "
        f"({t_cert / t_solve:.1%}) and typical-cost pass {t_scale / r * 1e3:.3f} ms "
        f"({t_scale / t_solve:.1%})"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=50, help="problems per batch (default 50)")
    p.add_argument("--quick", action="store_true", help="fewer and smaller problems")
    args = p.parse_args(argv)
    import numba
    import ot
    from scipy.optimize import linear_sum_assignment

    from simulations.assignment import assign, match_points

    rng = np.random.default_rng(0)
    settings = [("training", 256, args.runs), ("metrics", 1000, max(2, args.runs // 10))]
    if args.quick:
        settings = [("training", 64, 4), ("metrics", 200, 2)]
    match_points(rng.random((2, 3, 2)), rng.random((2, 3, 2)))  # compile (or load the cache)
    cores = numba.get_num_threads()
    print(
        f"cores for the batched solver: {cores} (NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'unset')})\n"
    )
    head = f"{'problem':>9} {'n':>5} {'R':>3} {'POT emd':>9} {'scipy LSA':>10} {'ours 1 core':>12} {'ours batched':>13}  ratios vs POT"
    print(head)
    for kind, n, runs in settings:
        x, y = _problems(kind, n, runs, rng)
        costs = np.stack([ot.dist(a, b) for a, b in zip(x, y)])
        w = ot.unif(n)
        t0 = time.perf_counter()
        pot = np.array([np.sum(ot.emd(w, w, c, numItermax=10**7) * c) for c in costs])
        t_pot = (time.perf_counter() - t0) / runs
        t0 = time.perf_counter()
        lsa = np.array([c[linear_sum_assignment(c)].sum() / n for c in costs])
        t_lsa = (time.perf_counter() - t0) / runs
        numba.set_num_threads(1)
        t0 = time.perf_counter()
        _, one = match_points(x, y)
        t_one = (time.perf_counter() - t0) / runs
        numba.set_num_threads(cores)
        t0 = time.perf_counter()
        _, many = match_points(x, y)
        t_many = (time.perf_counter() - t0) / runs
        for name, val in (("scipy", lsa), ("ours", one / n), ("ours batched", many / n)):
            if not np.allclose(val, pot, rtol=1e-10):
                raise SystemExit(f"{name} disagrees with POT's optimal cost on {kind} problems")
        paths = dict(zip(*np.unique(assign(costs).solved_by, return_counts=True)))
        print(
            f"{kind:>9} {n:>5} {runs:>3} {t_pot * 1e3:>7.2f}ms {t_lsa * 1e3:>8.2f}ms "
            f"{t_one * 1e3:>10.2f}ms {t_many * 1e3:>11.2f}ms  "
            f"1 core {t_pot / t_one:.1f}x, batched {t_pot / t_many:.1f}x (ms per problem); "
            f"certified by {', '.join(f'{k}: {v}' for k, v in paths.items())}"
        )
    print("\nall methods found the same optimal costs")
    numba.set_num_threads(1)
    print("\nper problem, 1 core, fastest of 5 (the certificate's share of our time):")
    for kind, n, runs in settings:
        x, y = _problems(kind, n, min(runs, 10), rng)
        costs = np.stack([((a[:, None] - b[None]) ** 2).sum(-1) for a, b in zip(x, y)])
        print(f"{kind:>9} {n:>5}: {_time_certificate(costs)}")
    _time_edges(64 if args.quick else 256, 2 if args.quick else 10, rng, linear_sum_assignment)
    numba.set_num_threads(cores)


if __name__ == "__main__":
    main()
