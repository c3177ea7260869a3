"""Mutation testing of the core math: does a wrong formula change a verdict or fail a test?

Each mutation below is a small, plausible error in the math (an off-by-one in n, a wrong
constant, a sign flip, a transpose, a missing term) of stability/rates.py, gaussian.py,
families.py, operator.py, loop.py or of a reference formula of the checks. For each one the
harness copies the repository to a temporary folder, applies the mutation there (it must match
exactly one place), runs `stability check --quick --json` and compares every verdict with the
unmutated run; when no verdict changes it runs the tests of the mutated file. A mutation that
changes no verdict and fails no test survives: the harness prints the survivors and exits 1.

    python benchmarks/mutations.py -j 2                 # all mutations, 2 at a time
    python benchmarks/mutations.py --only G12 O8        # some of them
    python benchmarks/mutations.py --list               # the catalogue
    python benchmarks/mutations.py -j 2 --markdown docs/mutations.md   # and write the table

Why not mutmut: it generates every operator swap of a file (hundreds of mutants, most of them
irrelevant to the math or equivalent), and judges a mutant by one test command's exit status;
what we need is a curated list of errors a researcher could make, judged first by the verdicts
of `stability check` (a JSON comparison with the unmutated run) and then by the tests of the
mutated file only. The harness is small enough to read in one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("stability", "simulations", "tests", "pyproject.toml")

# The catalogue lives beside this script (mutation_catalogue.py).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation_catalogue import MUTATIONS, TESTS, Mutation  # noqa: E402


def _tests_for(path: str, root: Path) -> list[str]:
    key = "stability/checks" if path.startswith("stability/checks/") else path
    found = []
    for name in TESTS.get(key, ()):
        found += [str(p.relative_to(root)) for p in sorted((root / "tests").rglob(name))]
    return found


def _copy(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dest / name)


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=str(cwd),
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    try:
        return subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(cmd, 124, exc.stdout or "", "timeout")


def check_verdicts(root: Path, timeout: float) -> tuple[dict | None, str]:
    """{check name: verdict} of `stability check --quick --json` in `root` (None if it crashed)."""
    proc = _run([sys.executable, "-m", "stability", "check", "--quick", "--json"], root, timeout)
    try:
        return {r["name"]: r["verdict"] for r in json.loads(proc.stdout)}, ""
    except (json.JSONDecodeError, TypeError, KeyError):
        return None, (proc.stderr or proc.stdout)[-300:]


def run_tests(root: Path, tests: list[str], timeout: float) -> tuple[bool, str]:
    """Whether the tests pass in `root`, and the first failing test's name."""
    if not tests:
        return True, ""
    proc = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            *tests,
        ],
        root,
        timeout,
    )
    failed = [ln for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    return proc.returncode == 0, (failed[0] if failed else proc.stdout[-200:]).strip()


def evaluate(mut: Mutation, baseline: dict, timeout: float) -> dict:
    """Apply one mutation to a fresh copy and say what caught it (or that it survived)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mut-{mut.id}-") as tmp:
        root = Path(tmp)
        _copy(root)
        src = root / mut.path
        text = src.read_text()
        if text.count(mut.old) != 1:
            return dict(
                id=mut.id,
                caught_by=f"ERROR: the mutation matches {text.count(mut.old)} places in {mut.path}",
                seconds=0.0,
            )
        src.write_text(text.replace(mut.old, mut.new))
        verdicts, err = check_verdicts(root, timeout)
        if verdicts is None:
            caught = f"stability check crashed ({err.splitlines()[-1] if err else 'no output'})"
        else:
            changed = [
                f"{k}: {baseline.get(k)} -> {v}"
                for k, v in verdicts.items()
                if baseline.get(k) != v
            ]
            caught = "verdicts: " + "; ".join(changed) if changed else ""
        if not caught:
            ok, first = run_tests(root, _tests_for(mut.path, root), timeout)
            caught = "" if ok else f"tests: {first}"
    return dict(id=mut.id, caught_by=caught or "SURVIVED", seconds=time.perf_counter() - start)


def markdown(rows: list[dict], muts: dict, seconds: float) -> str:
    survivors = [r for r in rows if r["caught_by"] == "SURVIVED"]
    lines = [
        "# Mutation testing of the core math",
        "",
        "`python benchmarks/mutations.py -j 2 --markdown docs/mutations.md` (also run by "
        "`pytest -m slow tests/stability/test_mutations.py`). Each mutation is applied to a "
        "copy of the repository; it is caught when a verdict of `stability check --quick` "
        "changes (or the command crashes), otherwise by a failing test of the mutated file.",
        "",
        f"**{len(rows) - len(survivors)} of {len(rows)} mutations caught, "
        f"{len(survivors)} survivors** ({seconds / 60:.0f} min wall on 2 shared cores).",
        "",
        "| id | file | mutation | caught by |",
        "|---|---|---|---|",
    ]
    for r in rows:
        m = muts[r["id"]]
        caught = r["caught_by"].replace("|", "/")
        if len(caught) > 220:
            caught = caught[:220] + " ..."
        lines.append(f"| {m.id} | {m.path.removeprefix('stability/')} | {m.what} | {caught} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-j", "--jobs", type=int, default=1, help="mutations run at once (1-2)")
    p.add_argument("--only", nargs="*", help="mutation ids")
    p.add_argument("--list", action="store_true", help="print the catalogue and exit")
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds per command")
    p.add_argument("--markdown", help="write the result table to this file")
    args = p.parse_args(argv)
    muts = {m.id: m for m in MUTATIONS}
    if len(muts) != len(MUTATIONS):
        raise SystemExit("duplicate mutation ids")
    if args.list:
        for m in MUTATIONS:
            print(f"{m.id:4s} {m.path:32s} {m.what}")
        return 0
    chosen = [muts[i] for i in args.only] if args.only else MUTATIONS
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mut-base-") as tmp:
        _copy(Path(tmp))
        baseline, err = check_verdicts(Path(tmp), args.timeout)
    if baseline is None:
        raise SystemExit(f"the unmutated `stability check --quick` failed: {err}")
    print(f"baseline: {len(baseline)} checks ({time.perf_counter() - start:.0f} s)", flush=True)
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for r in pool.map(lambda m: evaluate(m, baseline, args.timeout), chosen):
            rows.append(r)
            print(f"{r['id']:4s} {r['seconds']:6.0f}s  {r['caught_by'][:160]}", flush=True)
    seconds = time.perf_counter() - start
    survivors = [r["id"] for r in rows if r["caught_by"] == "SURVIVED"]
    errors = [r["id"] for r in rows if r["caught_by"].startswith("ERROR")]
    print(
        f"\n{len(rows) - len(survivors)} of {len(rows)} caught; survivors: "
        f"{', '.join(survivors) or 'none'}; errors: {', '.join(errors) or 'none'}"
    )
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows, muts, seconds))
    return 1 if survivors or errors else 0


if __name__ == "__main__":
    sys.exit(main())
