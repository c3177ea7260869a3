"""End-to-end times of the commands a user types, as the README lists them (issue: every
command as fast as its engine).

Each command runs in a fresh process (`python -m stability ...`, this checkout first on the
path), in a fresh temporary folder that receives its outputs; it is timed in wall-clock
seconds and in CPU seconds (its own and those of the worker processes it waited for). The
script prints the machine (cores, load average before and after) and a Markdown table ready
for the README.

Run:  python benchmarks/end_to_end.py                    (about 3 minutes on 2 cores)
      python benchmarks/end_to_end.py --with-reproduce   (adds `stability reproduce --quick`)
      python benchmarks/end_to_end.py --only help alpha  (seconds)
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

GAUSSIAN = (
    "simulate gaussian --dim 2 --n 10000 --lam 1 --iterations 100 --runs 100000 "
    "--engine exact --out DIR"
)
# name -> the command line after `stability`, as typed (DIR: the output folder)
COMMANDS = {
    "help": "--help",
    "alpha": "alpha 10",
    "check-quick": "check --quick",
    "check": "check",
    "gaussian": GAUSSIAN,
    "flow": "simulate flow --quick --out DIR",
    "diffusion": "simulate diffusion --quick --out DIR",
    "reproduce": "reproduce --quick --out DIR",
}
OPTIONAL = {"reproduce"}  # only with --with-reproduce (several minutes)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(line: str, folder: Path, timeout: float | None = None) -> dict:
    """Run `stability LINE` in a fresh process in `folder`; wall and CPU seconds, exit code.

    DIR in the line is replaced by `folder`/out. The child's CPU time includes the workers it
    waited for (the rusage of waited-for children).
    """
    argv = line.replace("DIR", str(folder / "out")).split()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cpu0, t0 = children_cpu(), time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "stability", *argv],
            cwd=str(folder),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, error = proc.returncode, proc.stderr.strip().splitlines()[-1:] or [""]
    except subprocess.TimeoutExpired:
        code, error = None, [f"timed out after {timeout} s"]
    return {
        "command": f"stability {line}",
        "wall": time.perf_counter() - t0,
        "cpu": children_cpu() - cpu0,
        "exit": code,
        "error": error[0] if code != 0 else "",
    }


def machine() -> str:
    """One line about the machine: cores, CPU model, Python."""
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{usable} of {cores} cores ({model}), Python {platform.python_version()}"


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def table(results: list[dict]) -> str:
    """The Markdown table: command, wall and CPU seconds, and the exit code where not 0."""
    lines = ["| command | wall s | CPU s | |", "|---|---:|---:|---|"]
    for r in results:
        note = "" if r["exit"] == 0 else f"exit {r['exit']}: {r['error']}"
        lines.append(f"| `{r['command']}` | {r['wall']:.2f} | {r['cpu']:.2f} | {note} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(COMMANDS), help="these commands only")
    p.add_argument("--with-reproduce", action="store_true", help="add reproduce --quick")
    p.add_argument("--timeout", type=float, default=None, help="seconds per command")
    args = p.parse_args(argv)
    names = args.only or [
        n for n in COMMANDS if n not in OPTIONAL or (n == "reproduce" and args.with_reproduce)
    ]
    before = load()
    results = []
    for name in names:
        folder = Path(tempfile.mkdtemp(prefix=f"e2e_{name}_"))
        try:
            results.append(time_command(COMMANDS[name], folder, args.timeout))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        r = results[-1]
        # each row as it comes, so that an interrupted run keeps what it measured
        print(
            f"  {name}: {r['wall']:.2f} s wall {r['cpu']:.2f} s CPU exit {r['exit']}",
            file=sys.stderr,
            flush=True,
        )
    print(f"Measured on {machine()}; load average {before} before, {load()} after.")
    print(f"Command: python benchmarks/end_to_end.py {' '.join(argv or sys.argv[1:])}".rstrip())
    print()
    print(table(results))
    return 0 if all(r["exit"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
