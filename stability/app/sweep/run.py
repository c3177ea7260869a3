"""Running a sweep: validate everything, lock the folder, run the unfinished cells, report.

`run_sweep` validates the spec against the command's parser, every cell's argv, the executor
and the folder before it writes anything; then it takes the sweep folder's lock (one sweep at a
time per folder), writes OUT/sweep.json and runs the cells that are not finished with the local
executor (`local.run_local`) or on Slurm (`slurm.run_slurm`). Rerunning the same sweep skips
finished cells, resumes interrupted ones and retries failed ones (`status`).
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from stability.app.sweep.cells import Cell, expand, log_path
from stability.app.sweep.local import Runner, run_local
from stability.app.sweep.processes import available_cores
from stability.app.sweep.slurm import run_slurm, slurm_parameters
from stability.app.sweep.spec import SweepSpec
from stability.app.sweep.status import SweepStatus, check_compatible
from stability.errors import UsageError
from stability.runs.collect import read_sweep_index
from stability.runs.lock import lock_run_folder

EXECUTORS = ("local", "slurm")


def _plural(k: int, word: str) -> str:
    return f"{k} {word}{'' if k == 1 else 's'}"


@dataclass
class SweepReport:
    """What a sweep did: counts, the failed cells with their error and the plan (dry run).

    Parameters
    ----------
    out : Path
        The sweep's folder.
    executor : str
        "local" or "slurm".
    cells : int
        Cells of the grid.
    skipped : int
        Cells finished before this invocation.
    done : int
        Cells finished by this invocation.
    failed : list of dict
        Records (as in sweep.json) of the cells that failed.
    pending : list of str
        Cells left pending (interrupted or not run).
    workers, threads : int
        Cells at a time and threads per cell (local executor).
    dry_run : bool
        Nothing was run; `plan` lists the cells.
    plan : list of dict
        name, status, error and argv of every cell (dry run).
    seconds : float
        Wall-clock duration.
    slurm : dict or None
        The validated [slurm] parameters (executor slurm).
    """

    out: Path
    executor: str
    cells: int
    skipped: int
    done: int
    failed: list[dict]
    pending: list[str]
    workers: int = 1
    threads: int = 1
    dry_run: bool = False
    plan: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    slurm: dict | None = None

    @property
    def ok(self) -> bool:
        """Every cell is done."""
        return not self.failed and not self.pending

    def _plan_lines(self) -> list[str]:
        out = [
            f"{self.cells} cells in {self.out} ({self.skipped} done, "
            f"{self.cells - self.skipped} to run) with the {self.executor} executor"
            + (
                f" ({_plural(self.workers, 'worker')} x {_plural(self.threads, 'thread')})"
                if self.executor == "local"
                else ""
            )
        ]
        if self.slurm:
            params = ", ".join(f"{k}={v}" for k, v in self.slurm["params"].items())
            out.append(
                f"  {self.slurm['cluster']} jobs ({params}); each cell runs with "
                f"{self.slurm['launcher']}"
                + (f" x {self.slurm['nproc']} processes" if self.slurm["nproc"] > 1 else "")
            )
        for p in self.plan:
            err = f"  [{p['error']}]" if p.get("error") else ""
            out.append(f"  {p['status']:<8} {p['name']}{err}")
            out.append(f"           stability {shlex.join(p['argv'])}")
        return out

    def lines(self) -> list[str]:
        """A human-readable report (what the CLI prints)."""
        if self.dry_run:
            return self._plan_lines()
        out = [
            f"sweep {self.out}: {self.cells} cells, {self.skipped + self.done} done "
            f"({self.done} now, {self.skipped} before), {len(self.failed)} failed, "
            f"{len(self.pending)} pending ({self.seconds:.1f} s, {self.executor})"
        ]
        for rec in self.failed:
            out.append(
                f"  failed {rec['name']} after {rec['attempts']} attempt(s): {rec['error']}"
                f"  (log: {log_path(self.out, rec['name'])})"
            )
        return out


def sweep_folder(spec: SweepSpec, out: str | Path | None) -> Path:
    """The sweep's folder (absolute): `out`, else the spec's; UsageError if neither is given."""
    chosen = out if out is not None else spec.out
    if not chosen:
        raise UsageError('give --out DIR (or out = "DIR" in the spec): the sweep\'s folder')
    return Path(chosen).absolute()


def _check_arguments(executor: str, workers, retries) -> int:
    """Validate the executor, workers and retries; returns the workers (default: the cores)."""
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}; choose local or slurm")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UsageError(f"retries must be an integer >= 0, got {retries!r}")
    if workers is None:
        workers = available_cores()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be an integer >= 1, got {workers!r}")
    return workers


def _load_status(out: Path, spec: SweepSpec, cells: list[Cell]):
    """The sweep's status (from its sweep.json, if any) and the cells not yet done."""
    old = read_sweep_index(out)
    check_compatible(out, spec, old)
    status = SweepStatus(out, spec, cells, old)
    return status, [c for c in cells if status.records[c.name]["status"] != "done"]


def _report(out, executor, cells, todo, workers: int, slurm) -> SweepReport:
    """The report before running: counts, and the cores shared among the cells run at once."""
    eff_workers = max(1, min(workers, len(todo) or 1))
    return SweepReport(
        out=out,
        executor=executor,
        cells=len(cells),
        skipped=len(cells) - len(todo),
        done=0,
        failed=[],
        pending=[],
        workers=eff_workers,
        threads=max(1, available_cores() // eff_workers),
        slurm=slurm,
    )


def _plan(cells: list[Cell], status: SweepStatus) -> list[dict]:
    plan = []
    for c in cells:
        rec = status.records[c.name]
        error = rec.get("error") if rec["status"] == "failed" else None
        plan.append({"name": c.name, "status": rec["status"], "error": error, "argv": c.argv})
    return plan


def _warn_nested_workers(spec: SweepSpec, executor: str, workers: int, cores: int) -> None:
    inner = spec.fixed.get("workers")
    if executor == "local" and isinstance(inner, int) and inner * workers > cores:
        print(
            f"stability sweep: warning: {workers} cells at a time, each with --workers {inner}, "
            f"on {cores} cores: set workers = 1 in [options] or run fewer cells at a time",
            file=sys.stderr,
        )


def run_sweep(
    spec: SweepSpec,
    out: str | Path | None = None,
    executor: str = "local",
    workers: int | None = None,
    retries: int = 2,
    dry_run: bool = False,
    progress: bool | None = None,
    runner: Runner | None = None,
    poll_s: float | None = None,
) -> SweepReport:
    """Run (or resume) every unfinished cell of a sweep; returns a report.

    Everything is validated before anything is written: the spec against the command's
    parser, every cell's argv, the executor (submitit installed for slurm), the folder (not
    another sweep, not a run folder, not locked by a running sweep).

    Parameters
    ----------
    spec : SweepSpec
    out : str or Path, optional
        The sweep's folder (default: the spec's out).
    executor : str
        "local" (a process pool) or "slurm" (submitit).
    workers : int, optional
        Cells at a time (local executor; default: the cores this process may use).
    retries : int
        Attempts after a failure, per cell and per invocation.
    dry_run : bool
        Validate and plan only; write nothing.
    progress : bool, optional
        Show a progress bar (default: when stderr is a terminal).
    runner : Runner, optional
        How the local executor runs one attempt of a cell (default `local.run_cell`).
    poll_s : float, optional
        Seconds between checks of the Slurm jobs (default 30; 0.5 for cluster = "local").

    Returns
    -------
    SweepReport

    Raises
    ------
    UsageError
        Bad arguments, spec, folder, or another sweep running in the folder.
    KeyboardInterrupt, local.SweepTerminated
        Interrupted; sweep.json is saved and a rerun resumes.
    """
    t0 = time.monotonic()
    workers = _check_arguments(executor, workers, retries)
    slurm = slurm_parameters(spec, check_sbatch=not dry_run) if executor == "slurm" else None
    out = sweep_folder(spec, out)
    cells = expand(spec, out)
    status, todo = _load_status(out, spec, cells)
    if dry_run:
        report = _report(out, executor, cells, todo, workers, slurm)
        report.dry_run, report.plan = True, _plan(cells, status)
        return report
    report = _run_locked(
        spec, out, cells, executor, workers, retries, slurm, runner, progress, poll_s
    )
    report.seconds = time.monotonic() - t0
    return report


def _run_locked(
    spec, out, cells, executor, workers, retries, slurm, runner, progress, poll_s
) -> SweepReport:
    """Under the folder's lock, run the cells not done (arguments as `run_sweep`'s); the report
    with done, failed and pending filled in (not the duration)."""
    if progress is None:
        progress = sys.stderr.isatty()
    with lock_run_folder(out, command="sweep") as lock:
        # Read again under the lock: a sweep that held it may have finished cells meanwhile.
        status, todo = _load_status(out, spec, cells)
        report = _report(out, executor, cells, todo, workers, slurm)
        _warn_nested_workers(spec, executor, report.workers, available_cores())
        status.save(force=True)
        if todo and executor == "local":
            keep = () if lock.fd is None else (lock.fd,)
            run_local(status, todo, report.workers, report.threads, retries, runner, progress, keep)
        elif todo:
            run_slurm(status, todo, retries, slurm, progress, poll_s)
        status.save(force=True)
    after = status.records
    report.done = sum(after[c.name]["status"] == "done" for c in todo)
    report.failed = [dict(after[c.name]) for c in todo if after[c.name]["status"] == "failed"]
    report.pending = [c.name for c in todo if after[c.name]["status"] in ("pending", "running")]
    return report


__all__ = ["EXECUTORS", "SweepReport", "run_sweep", "sweep_folder"]
