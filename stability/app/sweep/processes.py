"""Running one cell as its own process: its thread limits, its log, how it ended.

Each cell runs exactly the single command, ``python -m stability <command> <options> --out
OUT/<cell>``, in its own process, so a cell that crashes, is killed for memory or calls
os._exit never takes the other cells down, its thread limits (OMP_NUM_THREADS ...) are set
before numpy/torch start, and the local executor runs what a Slurm job runs.
"""

from __future__ import annotations

import datetime
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# Thread pools of numpy's BLAS, MKL, OpenMP (torch's intra-op pool reads OMP_NUM_THREADS).
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",  # the exact OT solver of the 2D simulators (simulations.assignment)
)
ERROR_CHARS = 300  # an error line is cut there: it goes into sweep.json and the report


@dataclass
class Outcome:
    """How one attempt of a cell ended.

    Parameters
    ----------
    returncode : int
        The process's exit code (0: success; -N: killed by signal N).
    error : str or None
        One line: the last line of its output, or the signal that killed it.
    seconds : float
        Wall-clock duration.
    interrupted : bool
        Stopped by the sweep itself (Ctrl-C, SIGTERM): not a failure of the cell.
    """

    returncode: int
    error: str | None
    seconds: float
    interrupted: bool = False


def now() -> str:
    """The current UTC time, ISO 8601 to the second (for logs and sweep.json)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def first_line(text: str) -> str:
    """The first non-blank line of `text`, stripped and cut to ERROR_CHARS."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0][:ERROR_CHARS] if lines else ""


def last_line(text: str) -> str:
    """The last non-blank line of `text`, stripped and cut to ERROR_CHARS."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1][:ERROR_CHARS] if lines else ""


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask: respects Slurm's and taskset's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def thread_env(threads: int, base: dict | None = None) -> dict[str, str]:
    """The environment of a cell process, with every thread pool limited to `threads`.

    Parameters
    ----------
    threads : int
        Threads per pool (THREAD_VARS).
    base : dict, optional
        The environment to start from (default: this process's).

    Returns
    -------
    dict of str to str
    """
    env = dict(os.environ if base is None else base)
    for var in THREAD_VARS:
        env[var] = str(int(threads))
    return env


def stability_command(argv: list[str]) -> list[str]:
    """The process that runs a cell: the same as typing ``stability ARGV``."""
    return [sys.executable, "-m", "stability", *argv]


_LIVE: set[subprocess.Popen] = set()  # processes of run_command now running
_LIVE_LOCK = threading.Lock()


def _error_line(log: Path, offset: int, returncode: int) -> str:
    """The error of a failed attempt: its last output line (read from `offset` in its log)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(offset, os.path.getsize(log) - 65536))
            tail = f.read().decode(errors="replace")
    except OSError:
        tail = ""
    last = last_line(tail)
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        hint = " (out of memory?)" if sig == "SIGKILL" else ""
        return f"killed by {sig}{hint}" + (f"; last output: {last}" if last else "")
    return last or f"exit code {returncode} and no output"


def _ignore_usr2():  # pragma: no cover - runs in the child between fork and exec
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def terminate(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a process: SIGTERM, then SIGKILL if it is still running after `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def terminate_running() -> None:
    """Stop every process that `run_command` started and that is still running."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        terminate(proc)


def _wait_tracked(proc: subprocess.Popen) -> int:
    """Wait for `proc`, listed for `terminate_running` meanwhile; its return code.

    Interrupted (KeyboardInterrupt, an exception raised by a signal handler), it terminates the
    child first and re-raises: never an orphan left writing into the cell folder.
    """
    with _LIVE_LOCK:
        _LIVE.add(proc)
    try:
        return proc.wait()
    except BaseException:
        terminate(proc)
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)


def run_command(
    cmd: list[str],
    env: dict,
    log: Path,
    header: str,
    ignore_usr2: bool = False,
    pass_fds: tuple[int, ...] = (),
) -> Outcome:
    """Run `cmd` with its output appended to `log`; the last output line is the error.

    Parameters
    ----------
    cmd : list of str
        The process to run.
    env : dict
        Its environment (`thread_env`).
    log : Path
        The log file, appended to: a ``=== <time> <header>`` line, the command, its output.
    header : str
        Names the attempt in the log.
    ignore_usr2 : bool
        The child ignores SIGUSR2, Slurm's warning before a preemption or time limit, so that
        only submitit's handler in the parent reacts to it (it requeues the job); the child is
        then terminated and the requeued job resumes it.
    pass_fds : tuple of int
        Descriptors the child keeps (the sweep folder's lock: it stays held while the child
        runs, even if this process is killed).

    Returns
    -------
    Outcome
        If this call is interrupted (KeyboardInterrupt, an exception raised by a signal
        handler), the child is terminated first and the exception propagates.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "ab") as f:
        f.write(f"=== {now()} {header}\n$ {shlex.join(cmd)}\n".encode())
        f.flush()
        offset = f.tell()
        proc = subprocess.Popen(
            cmd,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_ignore_usr2 if ignore_usr2 else None,
            pass_fds=pass_fds,
        )
        rc = _wait_tracked(proc)
    seconds = time.monotonic() - start
    if rc == 0:
        return Outcome(0, None, seconds)
    return Outcome(rc, _error_line(log, offset, rc), seconds)


__all__ = [
    "ERROR_CHARS",
    "THREAD_VARS",
    "Outcome",
    "available_cores",
    "first_line",
    "last_line",
    "now",
    "run_command",
    "stability_command",
    "terminate",
    "terminate_running",
    "thread_env",
]
