"""`stability simulate gaussian` end to end against its engine alone (issue: every command as
fast as its engine).

Prints, in one run, for the headline setting (1e5 runs x 100 iterations, d = 2, n = 1e4,
lambda = 1, exact engine):

- engine alone: `simulate_block` over every block of the command's configuration, one after
  the other in this process (the numbers the command computes, without folders, summaries,
  figures or start-up), wall and CPU seconds;
- end to end: the command itself (`python -m stability simulate gaussian ... --out DIR` in a
  fresh process, fresh folder, default workers), wall and CPU seconds (the process and the
  workers it waited for);
- their ratios, and where the command's CPU time goes (the same work split into phases in
  this process: start-up, engine, saving blocks, summaries, figures).

On a shared machine the wall-clock ratio depends on the load; the CPU ratio does not (it counts
the work, not the waiting), so both are printed, with the load average.

With ``--compare CHECKOUT`` the command is also run from another checkout (e.g. the main one)
and the two summary.csv files are compared byte for byte.

Run:  python benchmarks/gaussian_end_to_end.py                  (about a minute on 2 cores)
      python benchmarks/gaussian_end_to_end.py --quick          (1e4 runs, seconds)
      python benchmarks/gaussian_end_to_end.py --compare /work/main
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command(runs: int, iterations: int, out: Path) -> list[str]:
    """The headline command line (without the interpreter)."""
    return [
        "simulate",
        "gaussian",
        "--dim",
        "2",
        "--n",
        "10000",
        "--lam",
        "1",
        "--iterations",
        str(iterations),
        "--runs",
        str(runs),
        "--engine",
        "exact",
        "--out",
        str(out),
    ]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def end_to_end(checkout: Path, runs: int, iterations: int, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of the command run from `checkout` in a new process."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    cpu0, t0 = children_cpu(), time.perf_counter()
    # cwd = the checkout: `python -m` puts the working folder first on sys.path, before
    # PYTHONPATH, so another folder's `stability` package would be the one measured.
    proc = subprocess.run(
        [sys.executable, "-m", "stability", *command(runs, iterations, out)],
        env=env,
        cwd=str(checkout),
        capture_output=True,
        text=True,
    )
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"the command failed:\n{proc.stderr}")
    return wall, cpu


def engine_alone(runs: int, iterations: int) -> tuple[float, float]:
    """Wall and CPU seconds of every block of the command's configuration, in this process."""
    from simulations.gaussian_sim import GaussianSimConfig, simulate_block

    cfg, _, _ = GaussianSimConfig(
        dim=2, n=10000, lams=(1.0,), iterations=iterations, runs=runs, engine="exact"
    ).resolve()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for b in range(cfg.blocks):
        simulate_block(cfg, 1.0, b)
    return time.perf_counter() - t0, time.process_time() - cpu0


def phases(runs: int, iterations: int, folder: Path) -> dict[str, float]:
    """CPU seconds of each phase of the command's work, one after the other in this process
    (the same operations as the command's tasks, through the public functions)."""
    code = (
        "import time; t = time.process_time(); "
        "import stability.app.cli, simulations.gaussian_sim, stability.runs.runfolder; "
        "print(time.process_time() - t)"
    )
    startup = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        check=True,
    )
    from simulations.gaussian import METRICS
    from simulations.gaussian_blocks import block_path, save_block
    from simulations.gaussian_figures import write_figures
    from simulations.gaussian_sim import GaussianSimConfig, simulate_block, summarise_saved_blocks
    from stability.runs.plots import warm_up
    from stability.runs.runfolder import read_summary, write_summary

    cfg, _, _ = GaussianSimConfig(
        dim=2, n=10000, lams=(1.0,), iterations=iterations, runs=runs, engine="exact"
    ).resolve()
    out = {"start-up (imports)": float(startup.stdout), "engine": 0.0, "saving blocks": 0.0}
    paths = []
    for b in range(cfg.blocks):
        t = time.process_time()
        values = simulate_block(cfg, 1.0, b)
        out["engine"] += time.process_time() - t
        paths.append(block_path(folder, 0, b))
        t = time.process_time()
        save_block(paths[-1], values)
        out["saving blocks"] += time.process_time() - t
    t = time.process_time()
    # What the command's workers do: each metric read back from the saved blocks, summarised.
    rows = [row for metric in METRICS for row in summarise_saved_blocks(cfg, 0, metric, paths)]
    write_summary(folder / "summary.csv", rows)
    out["summaries (6 metrics)"] = time.process_time() - t
    rows = read_summary(folder / "summary.csv")
    t = time.process_time()
    warm_up()
    out["matplotlib import"] = time.process_time() - t
    t = time.process_time()
    write_figures(cfg, rows, folder / "figures")
    out["figures (6)"] = time.process_time() - t
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1e4 runs instead of 1e5")
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--compare", type=Path, default=None, help="another checkout to run too")
    p.add_argument("--no-phases", action="store_true", help="skip the breakdown by phase")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    runs = args.runs or (10_000 if args.quick else 100_000)
    tmp = Path(tempfile.mkdtemp(prefix="gaussian_e2e_"))
    try:
        print(
            f"simulate gaussian: {runs} runs x {args.iterations} iterations, d = 2, n = 10000, "
            f"lambda = 1, exact engine; {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f} at start"
        )
        e_wall, e_cpu = engine_alone(runs, args.iterations)
        w, c = end_to_end(REPO, runs, args.iterations, tmp / "this")
        print(f"  engine alone (one process): {e_wall:7.2f} s wall {e_cpu:7.2f} s CPU")
        print(f"  end to end (this checkout): {w:7.2f} s wall {c:7.2f} s CPU")
        print(f"  ratio end to end / engine:  {w / e_wall:7.2f} wall  {c / e_cpu:6.2f} CPU")
        if args.compare is not None:
            w2, c2 = end_to_end(args.compare.resolve(), runs, args.iterations, tmp / "other")
            same = (tmp / "this" / "summary.csv").read_bytes() == (
                tmp / "other" / "summary.csv"
            ).read_bytes()
            print(f"  end to end ({args.compare}): {w2:7.2f} s wall {c2:7.2f} s CPU")
            print(f"  summary.csv byte-identical to {args.compare}'s: {'yes' if same else 'NO'}")
        if not args.no_phases:
            print("  CPU seconds by phase (one process):")
            for name, sec in phases(runs, args.iterations, tmp / "phases").items():
                print(f"    {name:<24} {sec:6.2f}")
        print(f"  load average at end {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
