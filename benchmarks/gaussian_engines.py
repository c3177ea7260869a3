"""Speed of the Gaussian retraining engines, side by side (issue: Gaussian simulator).

Times, for 1000 runs x 100 iterations of Algorithm 1 (policy mix, lambda = 1, metrics included):
- the exact engine (sufficient statistics, stability simulate gaussian --engine exact),
- the sample engine (draws the points, batched over runs),
- a plain per-run Python loop, the way peers' scripts do it
  (rng.multivariate_normal + mean/np.cov per run and iteration),
at n in {1e2, 1e4, 1e6} and d in {1, 2, 10}, and prints the ratios. Where a full run would take
longer than --budget seconds, the sample engine and the plain loop are timed on fewer runs and
iterations and scaled linearly (their cost is linear in both); such rows are marked "~".
Also: the headline 1e5 runs x 100 iterations at d = 2, peak memory of the exact engine at
n = 1e2 vs 1e6, and our batched Bures-Wasserstein W2 against POT's ot.gaussian.

Run:  python benchmarks/gaussian_engines.py            (about 5 minutes on 2 cores)
      python benchmarks/gaussian_engines.py --quick    (a smoke run, seconds)
"""

from __future__ import annotations

import argparse
import math
import os
import time
import tracemalloc

import numpy as np

os.environ.setdefault("POT_BACKEND_DISABLE_PYTORCH", "1")

from simulations.gaussian import Metrics  # noqa: E402
from simulations.gaussian_sim import GaussianSimConfig, simulate_block  # noqa: E402


def time_engine(engine: str, n: int, d: int, runs: int, iterations: int, lam: float = 1.0) -> float:
    cfg, _, _ = GaussianSimConfig(
        dim=d, n=n, lams=(lam,), runs=runs, iterations=iterations, engine=engine, block_size=runs
    ).resolve()
    t0 = time.perf_counter()
    simulate_block(cfg, lam, 0)
    return time.perf_counter() - t0


def time_plain_loop(n: int, d: int, runs: int, iterations: int, lam: float = 1.0) -> float:
    """Per-run Python loop: what a typical research script does."""
    rng = np.random.default_rng(0)
    metrics = Metrics(np.zeros(d), np.eye(d))
    t0 = time.perf_counter()
    for _ in range(runs):
        real = rng.standard_normal((n, d))
        mu, cov = real.mean(0), np.atleast_2d(np.cov(real.T))
        for _ in range(iterations):
            synth = rng.multivariate_normal(mu, cov, size=int(lam * n))
            data = np.concatenate([real, synth])
            mu, cov = data.mean(0), np.atleast_2d(np.cov(data.T))
            metrics(mu[None], cov[None])
    return time.perf_counter() - t0


def scaled(fn, n, d, runs, iterations, budget, **kw):
    """Time fn on a reduced (runs, iterations) when the full job would exceed `budget` s."""
    # The probe must be long enough that fixed overheads do not dominate the per-unit time.
    probe_runs, probe_it = (min(runs, 10), min(iterations, 5)) if n <= 10_000 else (1, 1)
    t = fn(n=n, d=d, runs=probe_runs, iterations=probe_it, **kw)
    per_unit = t / (probe_runs * probe_it)
    full = per_unit * runs * iterations
    if full <= budget:
        return fn(n=n, d=d, runs=runs, iterations=iterations, **kw), False
    # Reduce until a measurement of about budget/4 seconds.
    r = max(1, min(runs, int(budget / 4 / max(per_unit * iterations, 1e-12))))
    it = iterations if r > 1 else max(1, min(iterations, int(budget / 4 / max(per_unit, 1e-12))))
    t = fn(n=n, d=d, runs=r, iterations=it, **kw)
    return t * (runs / r) * (iterations / it), True


def peak_memory_exact(n: int, d: int, runs: int, iterations: int) -> int:
    cfg, _, _ = GaussianSimConfig(
        dim=d, n=n, lams=(1.0,), runs=runs, iterations=iterations, block_size=runs
    ).resolve()
    tracemalloc.start()
    simulate_block(cfg, 1.0, 0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def bures_vs_pot(runs: int, d: int) -> tuple[float, float, float]:
    import ot

    rng = np.random.default_rng(1)
    a = rng.standard_normal((runs, d, d))
    cov = a @ np.swapaxes(a, 1, 2) + 0.1 * np.eye(d)
    mu = rng.standard_normal((runs, d))
    m = Metrics(np.zeros(d), np.eye(d))
    t0 = time.perf_counter()
    ours = m(mu, cov)["w2"]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = ot.gaussian.bures_wasserstein_distance(
        mu, np.zeros((runs, d)), cov, np.broadcast_to(np.eye(d), (runs, d, d)), paired=True
    )
    t_pot = time.perf_counter() - t0
    return t_ours, t_pot, float(np.max(np.abs(ours - np.asarray(ref))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    p.add_argument(
        "--budget", type=float, default=20.0, help="seconds per measurement before scaling"
    )
    args = p.parse_args(argv)
    runs, iterations = (50, 10) if args.quick else (1000, 100)
    ns = (100, 10_000) if args.quick else (100, 10_000, 1_000_000)
    dims = (1, 2) if args.quick else (1, 2, 10)
    budget = 1.0 if args.quick else args.budget
    print(f"{runs} runs x {iterations} iterations, policy mix, lambda = 1, metrics included\n")
    print(
        f"{'n':>9} {'d':>3} {'exact s':>9} {'sample s':>11} {'plain s':>11} {'sample/exact':>13} {'plain/exact':>12}"
    )
    for n in ns:
        for d in dims:
            t_exact = time_engine("exact", n, d, runs, iterations)
            t_sample, s1 = scaled(
                lambda **k: time_engine("sample", **k), n, d, runs, iterations, budget
            )
            t_plain, s2 = scaled(time_plain_loop, n, d, runs, iterations, budget)
            mark1, mark2 = ("~" if s1 else " "), ("~" if s2 else " ")
            print(
                f"{n:>9} {d:>3} {t_exact:>9.3f} {mark1}{t_sample:>10.1f} {mark2}{t_plain:>10.1f} "
                f"{t_sample / t_exact:>13.0f} {t_plain / t_exact:>12.0f}"
            )
    big = 10_000 if args.quick else 100_000
    print(
        f"\nheadline: {big} runs x {iterations} iterations, d = 2, n = 10000 (exact engine, one block)"
    )
    for lam in (1.0, math.inf):
        t = time_engine("exact", 10_000, 2, big, iterations, lam)
        print(f"  lambda = {lam:g}: {t:.2f} s")
    print("\npeak memory of the exact engine (tracemalloc), 1000 runs, d = 2:")
    for n in (100, 1_000_000):
        print(
            f"  n = {n:>9}: {peak_memory_exact(n, 2, 1000 if not args.quick else 100, 20) / 1e6:.1f} MB"
        )
    print("\nBures-Wasserstein W2 of many Gaussians to N(0, I): ours (batched closed form) vs POT")
    for r, d in ((100_000 if not args.quick else 10_000, 2), (1000, 10)):
        t_o, t_p, err = bures_vs_pot(r, d)
        print(
            f"  {r} x d={d}: ours {t_o * 1e3:.1f} ms, POT {t_p * 1e3:.1f} ms, ratio {t_p / t_o:.1f}x, max |diff| {err:.1e}"
        )


if __name__ == "__main__":
    main()
