"""The Slurm executor: the cells as a job array through submitit, requeued when preempted.

Each cell is one job (`SlurmCell`) that runs the cell's command in a subprocess, exactly as the
local executor does; a deep retrain cell on several GPUs runs under torchrun inside its
allocation. Slurm's warning signal before a preemption or the time limit makes submitit requeue
the job, which resumes the cell. A rerun of the sweep follows the jobs an earlier invocation
left queued or running instead of submitting them again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stability.app.sweep.cells import Cell, log_path
from stability.app.sweep.processes import (
    Outcome,
    available_cores,
    first_line,
    last_line,
    run_command,
    stability_command,
    thread_env,
)
from stability.app.sweep.registry import DISTRIBUTED
from stability.app.sweep.spec import SweepSpec
from stability.app.sweep.status import SweepStatus
from stability.errors import UsageError

SLURM_GENERIC = {
    "timeout_min": int,
    "gpus_per_node": int,
    "cpus_per_task": int,
    "nodes": int,
    "tasks_per_node": int,
    "mem_gb": (int, float),
}
SLURM_OWN = ("cluster", "max_num_timeout")
CLUSTERS = ("slurm", "local")
DEFAULT_TIMEOUT_MIN = 60
# The module torchrun starts in each process of a multi-GPU cell (see `launch`).
LAUNCH_MODULE = "stability.app.sweep.launch"
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "CONFIGURING",
        "COMPLETING",
        "RESIZING",
        "SUSPENDED",
        "STAGE_OUT",
    }
)


def _require_submitit():
    try:
        import submitit
    except ImportError:
        raise UsageError(
            "--executor slurm needs submitit: pip install 'retrain-stability[slurm]' "
            "(or pip install submitit)"
        ) from None
    return submitit


def _job_parameters(table: dict) -> dict:
    """The [slurm] parameters passed to submitit (generic ones type-checked, slurm_* known)."""
    from submitit.slurm.slurm import SlurmExecutor

    slurm_own = SlurmExecutor._valid_parameters()
    params = {"timeout_min": DEFAULT_TIMEOUT_MIN}
    for key, value in table.items():
        if key in SLURM_GENERIC:
            kind = SLURM_GENERIC[key]
            if isinstance(value, bool) or not isinstance(value, kind):
                raise UsageError(f"[slurm] {key} must be a number, got {value!r}")
            if value < (0 if key == "gpus_per_node" else 1):
                raise UsageError(f"[slurm] {key} must be positive, got {value!r}")
        elif not (key.startswith("slurm_") and key[len("slurm_") :] in slurm_own):
            accepted = sorted(SLURM_GENERIC) + sorted(SLURM_OWN) + ["slurm_<sbatch option>"]
            raise UsageError(f"unknown [slurm] parameter {key!r}; accepted: {', '.join(accepted)}")
        params[key] = value
    return params


def slurm_parameters(spec: SweepSpec, check_sbatch: bool = True) -> dict:
    """Validate the [slurm] table (submitit installed, known names, types); returns it filled.

    Parameters
    ----------
    spec : SweepSpec
    check_sbatch : bool
        For cluster = "slurm", require sbatch and srun on PATH (not for a dry run).

    Returns
    -------
    dict
        cluster, max_num_timeout, params (for AutoExecutor.update_parameters), launcher
        ("python" or "torchrun"), nproc (processes per node of one cell), nodes.

    Raises
    ------
    UsageError
        One line: submitit missing, an unknown or mistyped parameter, no sbatch.
    """
    _require_submitit()
    table = dict(spec.slurm)
    cluster = table.pop("cluster", "slurm")
    if cluster not in CLUSTERS:
        raise UsageError(
            f"[slurm] cluster must be 'slurm' or 'local' (submitit's local executor), got {cluster!r}"
        )
    max_num_timeout = table.pop("max_num_timeout", 3)
    if isinstance(max_num_timeout, bool) or not isinstance(max_num_timeout, int):
        raise UsageError("[slurm] max_num_timeout must be an integer")
    params = _job_parameters(table)
    gpus = params.get("gpus_per_node", 0)
    nodes = params.get("nodes", 1)
    if params.get("tasks_per_node", 1) != 1:
        raise UsageError(
            "[slurm] tasks_per_node must be 1: a cell is one process (a deep retrain cell on "
            "several GPUs is launched with torchrun inside its allocation: set gpus_per_node)"
        )
    distributed = spec.command in DISTRIBUTED
    if nodes > 1 and not distributed:
        raise UsageError(f"[slurm] nodes = {nodes}: {spec.command!r} runs on one node")
    launcher = "torchrun" if distributed and (gpus > 1 or nodes > 1) else "python"
    missing = [t for t in ("sbatch", "srun") if shutil.which(t) is None]
    if check_sbatch and cluster == "slurm" and missing:
        raise UsageError(
            f"--executor slurm: {missing[0]} not found (run the sweep on the cluster's login "
            'node; cluster = "local" in [slurm] tries the same path on this machine)'
        )
    return dict(
        cluster=cluster,
        max_num_timeout=max_num_timeout,
        params=params,
        launcher=launcher,
        nproc=max(1, gpus) if launcher == "torchrun" else 1,
        nodes=nodes,
    )


@dataclass
class SlurmCell:
    """One cell as a submitit job: runs the command in a subprocess, resubmitted when preempted.

    submitit calls `checkpoint` when Slurm warns of a preemption or of the time limit; it returns
    the same call, which submitit requeues. The commands resume inside their folder, so the
    requeued job simply runs the same argv again.

    Parameters
    ----------
    name : str
        The cell's name.
    argv : list of str
        Its command line after ``stability``.
    log : str
        Its log file.
    launcher : str
        "python" or "torchrun".
    nproc : int
        Processes per node (torchrun).
    attempt : int
        The attempt's number, written in the log.
    """

    name: str
    argv: list[str]
    log: str
    launcher: str = "python"
    nproc: int = 1
    attempt: int = 1

    def command(self, nnodes: int = 1, node: int = 0, master: str = "", job_id: str = "0"):
        """The process to start on this node: python -m stability, or torchrun around it."""
        if self.launcher == "python":
            return stability_command(self.argv)
        run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(self.nproc)]
        if nnodes > 1:
            # A port from the job id: two multi-node cells sharing a node do not collide.
            port = 20000 + int(re.sub(r"\D", "", job_id) or 0) % 20000
            run += ["--nnodes", str(nnodes), "--node_rank", str(node)]
            run += ["--master_addr", master, "--master_port", str(port)]
        else:
            run += ["--standalone"]
        # The argv travels as one JSON argument: torchrun's own parser reads every later
        # option too and rejects `--n` as an ambiguous prefix of its --nnodes/--node-rank.
        return [*run, "-m", LAUNCH_MODULE, json.dumps(self.argv)]

    def __call__(self) -> dict:
        """Run the cell in the job (on every node of a multi-node job); returns an Outcome dict."""
        import socket

        import submitit

        env = submitit.JobEnvironment()
        nnodes, node = env.num_nodes, env.node
        master = env.hostnames[0] if nnodes > 1 else ""
        cmd = self.command(nnodes, node, master, str(env.job_id))
        log = Path(self.log)
        if nnodes > 1:
            log = log.with_name(f"{log.stem}.node{node}{log.suffix}")
        header = (
            f"attempt {self.attempt} (job {env.job_id}, host {socket.gethostname()}, "
            f"pid={os.getpid()})"
        )
        threads = max(1, available_cores() // self.nproc)
        outcome = run_command(cmd, thread_env(threads), log, header, ignore_usr2=True)
        return dataclasses.asdict(outcome)

    def checkpoint(self, *args, **kwargs):
        """submitit's hook before a requeue: the same call again."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _job_outcome(job) -> Outcome:
    try:
        result = job.result()
    except Exception as exc:  # the job itself failed (timeouts exhausted, node failure, ...)
        return Outcome(1, f"job {job.job_id}: {last_line(str(exc)) or type(exc).__name__}", 0.0)
    if isinstance(result, list):  # several tasks: the first speaks for the cell
        result = result[0]
    return Outcome(**result)


def _reattach(status: SweepStatus, todo: list[Cell], folder: Path) -> dict:
    """Jobs of an earlier invocation that are still queued or running: follow, not resubmit."""
    import submitit

    out = {}
    for cell in todo:
        if cell.name not in status.jobs:
            continue
        try:
            job = submitit.SlurmJob(folder=folder, job_id=status.jobs[cell.name])
            state = str(job.state).upper()
        except Exception:  # sacct unavailable or the job is unknown: submit it again
            continue
        if state.split()[0] in ACTIVE_STATES:
            out[cell.name] = job
    return out


class _Jobs:
    """The jobs of one invocation: submission, following, resubmission of failures."""

    def __init__(self, status: SweepStatus, todo: list[Cell], retries: int, slurm: dict):
        import submitit

        self.status = status
        self.slurm = slurm
        self.retries = retries
        self.cells = {c.name: c for c in todo}
        self.tries = {c.name: 0 for c in todo}
        self.active: dict[str, Any] = {}
        self.failed = 0
        cluster = slurm["cluster"]
        self.folder = status.out / "slurm" / "%j"
        try:
            self.executor = submitit.AutoExecutor(
                folder=self.folder,
                cluster=cluster,
                **{f"{cluster}_max_num_timeout": slurm["max_num_timeout"]},
            )
            name = f"sweep-{status.out.name}"[:64]
            self.executor.update_parameters(name=name, **slurm["params"])
        except Exception as exc:  # no srun, a parameter submitit refuses, ...
            raise UsageError(f"submitit: {first_line(str(exc)) or type(exc).__name__}") from None

    def submit(self, cells: list[Cell]) -> None:
        """Submit cells as one job array; UsageError with sbatch's message if it refuses."""
        status, jobs = self.status, []
        try:
            with self.executor.batch():
                for cell in cells:
                    self.tries[cell.name] += 1
                    log = str(log_path(status.out, cell.name))
                    number = status.records[cell.name]["attempts"] + 1
                    task = SlurmCell(
                        cell.name,
                        cell.argv,
                        log,
                        self.slurm["launcher"],
                        self.slurm["nproc"],
                        number,
                    )
                    jobs.append(self.executor.submit(task))
        except Exception as exc:  # sbatch refused the jobs (partition, account, limits ...)
            status.save(force=True)
            msg = last_line(str(exc)) or type(exc).__name__
            raise UsageError(f"submitting to {self.slurm['cluster']} failed: {msg}") from None
        for cell, job in zip(cells, jobs):
            self.active[cell.name] = job
            status.start(cell.name, save=False, job_id=str(job.job_id))
        status.save(force=True)

    def poll(self, bar) -> None:
        """Record the jobs that ended; resubmit the failed ones that have retries left."""
        again = []
        for name, job in list(self.active.items()):
            if not job.done():
                continue
            del self.active[name]
            verdict = self.status.finish(self.cells[name], _job_outcome(job))
            if verdict == "retry" and self.tries[name] <= self.retries:
                again.append(self.cells[name])
                continue
            self.failed += verdict in ("retry", "failed")
            bar.update()
            bar.set_postfix(failed=self.failed, refresh=False)
        if again:
            self.submit(again)
        self.status.flush()

    def interrupt(self) -> None:
        """On Ctrl-C: cancel local jobs (this machine's processes); Slurm jobs keep running."""
        if self.slurm["cluster"] == "local":
            for name, job in self.active.items():
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
                self.status.records[name]["status"] = "pending"
        elif self.active:
            print(
                f"stability sweep: {len(self.active)} Slurm job(s) keep running; rerun the sweep "
                "to follow them (finished cells are kept)",
                file=sys.stderr,
            )
        self.status.save(force=True)


def run_slurm(
    status: SweepStatus,
    todo: list[Cell],
    retries: int,
    slurm: dict,
    progress: bool = False,
    poll_s: float | None = None,
) -> None:
    """Submit the unfinished cells as a job array, follow them, resubmit failures.

    Parameters
    ----------
    status : SweepStatus
    todo : list of Cell
        The unfinished cells.
    retries : int
        Resubmissions after a failure, per cell.
    slurm : dict
        `slurm_parameters` of the spec.
    progress : bool
        Show a progress bar on stderr.
    poll_s : float, optional
        Seconds between looks at the jobs (default 30; 0.5 for cluster = "local").
    """
    from tqdm import tqdm

    if poll_s is None:
        poll_s = 0.5 if slurm["cluster"] == "local" else 30.0
    jobs = _Jobs(status, todo, retries, slurm)
    if slurm["cluster"] == "slurm":
        for name, job in _reattach(status, todo, jobs.folder).items():
            jobs.active[name] = job
            status.update(name, save=False, status="running")  # the same attempt, followed
    bar = tqdm(total=len(todo), desc="sweep", unit="cell", disable=not progress, file=sys.stderr)
    try:
        fresh = [c for c in todo if c.name not in jobs.active]
        if fresh:
            jobs.submit(fresh)
        while jobs.active:
            time.sleep(poll_s)
            jobs.poll(bar)
    except BaseException:
        jobs.interrupt()
        raise
    finally:
        bar.close()


__all__ = ["ACTIVE_STATES", "LAUNCH_MODULE", "SlurmCell", "run_slurm", "slurm_parameters"]
