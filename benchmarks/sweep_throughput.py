"""Throughput of the local sweep executor against the same cells run one after another.

Two small grids, each cell a complete command with its run folder:
- Gaussian: `simulate gaussian` (exact engine), one lambda per cell x seeds;
- 2D flow: `simulate flow --quick` shrunk further (2 runs, 2 iterations, n = 200), a few cells.
For each grid, times
- sequential: every cell's command one after another (`python -m stability ...`, what a shell
  loop does), in the default environment (numpy/torch use every core);
- sequential, 1 thread: the same with OMP_NUM_THREADS=1 and friends, which separates the gain
  of running cells side by side from the cost or gain of threads inside one small cell;
- sweep: `run_sweep` with the local executor (workers = the number of cores unless --workers),
  each cell limited to cores // workers threads.
Prints seconds, cells per minute and the ratios (target: close to the number of cores), and
checks that every cell's summary.csv is byte-identical between the sequential and sweep runs.

Run:  python benchmarks/sweep_throughput.py [--gaussian 8] [--flow 2] [--workers N] [--quick]
(about 3 minutes on 2 cores; --quick: about a minute, Gaussian cells only).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path

from stability.app.sweep.cells import Cell, expand
from stability.app.sweep.processes import (
    THREAD_VARS,
    available_cores,
    stability_command,
    thread_env,
)
from stability.app.sweep.run import run_sweep
from stability.app.sweep.spec import SweepSpec, parse_spec


def gaussian_spec(cells: int, runs: int, iterations: int) -> SweepSpec:
    lams = [0.0, 0.5, 1.0, math.inf]
    seeds = max(1, math.ceil(cells / len(lams)))
    return parse_spec(
        {
            "command": "simulate gaussian",
            "options": {"runs": runs, "iterations": iterations, "n": 50},
            "axes": {"seeds": seeds, "lam": lams[: min(cells, len(lams))]},
        }
    )


def flow_spec(cells: int) -> SweepSpec:
    return parse_spec(
        {
            "command": "simulate flow",
            "options": {
                "quick": True,
                "runs": 2,
                "iterations": 2,
                "n": 200,
                "n_eval": 200,
                "epochs": 10,
                "init_epochs": 40,
                "lam": 0.5,
            },
            "axes": {"seeds": cells},
        }
    )


def sequential(cells: list[Cell], threads: int | None) -> float:
    """Seconds to run the cells' commands one after another."""
    env = thread_env(threads) if threads else dict(os.environ)
    if not threads:
        for var in THREAD_VARS:
            env.pop(var, None)
    t0 = time.perf_counter()
    for cell in cells:
        subprocess.run(
            stability_command(cell.argv),
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return time.perf_counter() - t0


def bench(label: str, spec: SweepSpec, root: Path, workers: int) -> dict:
    seq_cells = expand(spec, root / f"{label}-seq")
    one_cells = expand(spec, root / f"{label}-seq1")
    t_seq = sequential(seq_cells, None)
    t_one = sequential(one_cells, 1)
    t0 = time.perf_counter()
    report = run_sweep(spec, root / f"{label}-sweep", workers=workers, progress=False)
    t_sweep = time.perf_counter() - t0
    assert report.ok, report.lines()
    identical = all(
        (c.folder / "summary.csv").read_bytes()
        == (root / f"{label}-sweep" / c.name / "summary.csv").read_bytes()
        for c in seq_cells
    )
    n = len(seq_cells)
    print(
        f"{label:<9} {n:>3} cells  sequential {t_seq:7.1f} s  sequential 1 thread {t_one:7.1f} s  "
        f"sweep ({report.workers} workers x {report.threads} thr) {t_sweep:7.1f} s  "
        f"-> {t_seq / t_sweep:4.2f}x ({t_one / t_sweep:4.2f}x vs 1 thread), "
        f"{60 * n / t_sweep:5.1f} cells/min; results identical: {identical}"
    )
    return dict(n=n, seq=t_seq, one=t_one, sweep=t_sweep, identical=identical)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gaussian", type=int, default=8, help="Gaussian cells (default 8)")
    ap.add_argument("--flow", type=int, default=2, help="2D flow cells (default 2; 0: none)")
    ap.add_argument("--runs", type=int, default=2000, help="runs per Gaussian cell")
    ap.add_argument("--iterations", type=int, default=400, help="iterations per Gaussian cell")
    ap.add_argument("--workers", type=int, default=None, help="sweep workers (default: cores)")
    ap.add_argument("--quick", action="store_true", help="4 small Gaussian cells, no flow cells")
    args = ap.parse_args()
    if args.quick:
        args.gaussian, args.flow, args.iterations = 4, 0, 200
    cores = available_cores()
    workers = args.workers or cores
    print(f"{cores} cores, sweep workers {workers}; load average {os.getloadavg()[0]:.1f}")
    results = []
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        root = Path(tmp)
        if args.gaussian:
            spec = gaussian_spec(args.gaussian, args.runs, args.iterations)
            results.append(bench("gaussian", spec, root, workers))
        if args.flow:
            results.append(bench("flow", flow_spec(args.flow), root, workers))
    if len(results) > 1:
        seq = sum(r["seq"] for r in results)
        one = sum(r["one"] for r in results)
        swp = sum(r["sweep"] for r in results)
        print(
            f"all       {sum(r['n'] for r in results):>3} cells  sequential {seq:7.1f} s  "
            f"sequential 1 thread {one:7.1f} s  sweep {swp:7.1f} s  -> {seq / swp:4.2f}x "
            f"({one / swp:4.2f}x vs 1 thread); target about {workers}x"
        )


if __name__ == "__main__":
    main()
