"""The local executor: a pool of cell processes on this machine, each with its share of cores.

The pool is made of threads that each wait on one cell process: the processes do the work, and
a cell that dies cannot break the pool. Ctrl-C or SIGTERM stops every cell process (they resume
on the next run); the sweep folder's lock is handed to every cell process, so that even a sweep
killed with SIGKILL keeps its folder locked until the cells it started have exited.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from stability.app.sweep.cells import Cell, log_path
from stability.app.sweep.processes import (
    Outcome,
    run_command,
    stability_command,
    terminate_running,
    thread_env,
)
from stability.app.sweep.status import SweepStatus

# How one attempt of a cell is run: (cell, environment, log file, attempt number) -> Outcome.
Runner = Callable[[Cell, dict, Path, int], Outcome]
POLL_S = 0.5  # seconds between looks at the pool (and saves of sweep.json)


def run_cell(cell: Cell, env: dict, log: Path, attempt: int, pass_fds: tuple = ()) -> Outcome:
    """Run one attempt of a cell as ``python -m stability ARGV`` (the default runner).

    Parameters
    ----------
    cell : Cell
    env : dict
        The process's environment (`processes.thread_env`).
    log : Path
        The cell's log, appended to.
    attempt : int
        The attempt's number, written in the log.
    pass_fds : tuple of int
        Descriptors the process keeps (the sweep folder's lock).

    Returns
    -------
    Outcome
    """
    cmd = stability_command(cell.argv)
    return run_command(cmd, env, log, f"attempt {attempt}", pass_fds=pass_fds)


class SweepTerminated(Exception):
    """SIGTERM received by the sweep process: the cells are stopped as on Ctrl-C."""


@contextlib.contextmanager
def sigterm_as_exception():
    """Within the block, SIGTERM raises SweepTerminated in the main thread (elsewhere: no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SweepTerminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Pool:
    """The cells of one invocation on a thread pool: attempts, retries, the progress bar."""

    def __init__(self, status: SweepStatus, workers: int, threads: int, retries: int, runner):
        self.status = status
        self.retries = retries
        self.runner = runner
        self.env = thread_env(threads)
        self.stop = threading.Event()
        self.changed = threading.Condition()  # guards `active`, the attempts under way
        self.active = 0
        self.tries: dict[str, int] = {}
        self.futures: dict[Future, Cell] = {}
        self.failed = 0
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep-cell")

    def attempt(self, cell: Cell) -> str:
        """Run and record one attempt in a worker thread; returns `SweepStatus.finish`'s verdict.

        The worker records the outcome itself, so an attempt that ends while the sweep is being
        stopped is recorded as it ended (done, failed), not left "running".
        """
        with self.changed:
            if self.stop.is_set():
                return "interrupted"
            self.active += 1
        try:
            number = self.status.start(cell.name)
            outcome = self.runner(cell, self.env, log_path(self.status.out, cell.name), number)
            if self.stop.is_set() and outcome.returncode != 0:
                outcome.interrupted = True  # stopped by the sweep, not a failure of the cell
            return self.status.finish(cell, outcome)
        finally:
            with self.changed:
                self.active -= 1
                self.changed.notify_all()

    def submit(self, cell: Cell) -> None:
        self.tries[cell.name] = self.tries.get(cell.name, 0) + 1
        self.futures[self.pool.submit(self.attempt, cell)] = cell

    def settle(self, fut: Future, bar) -> None:
        """Retry the cell of a finished attempt, or count it as finished."""
        cell = self.futures.pop(fut)
        verdict = fut.result()
        if verdict == "retry" and self.tries[cell.name] <= self.retries:
            self.submit(cell)
            return
        self.failed += verdict in ("retry", "failed")
        bar.update()
        bar.set_postfix(failed=self.failed, refresh=False)

    def run(self, todo: list[Cell], bar) -> None:
        for cell in todo:
            self.submit(cell)
        while self.futures:
            done, _ = wait(list(self.futures), timeout=POLL_S, return_when=FIRST_COMPLETED)
            for fut in done:
                self.settle(fut, bar)
            self.status.flush()

    def interrupt(self) -> None:
        """Stop the cell processes, wait for their attempts to be recorded, save."""
        with self.changed:
            self.stop.set()
            # A worker may start its process just after a round of terminations (and a worker
            # thread interrupted while being started is unknown to the pool): stop processes
            # until every attempt under way has returned.
            while self.active:
                terminate_running()
                self.changed.wait(POLL_S)
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.status.stop_running()  # attempts whose runner raised


def run_local(
    status: SweepStatus,
    todo: list[Cell],
    workers: int,
    threads: int,
    retries: int,
    runner: Runner | None = None,
    progress: bool = False,
    pass_fds: tuple = (),
) -> None:
    """Run the cells `todo` with `workers` cell processes at a time, each with `threads`.

    Parameters
    ----------
    status : SweepStatus
        Records every attempt (and is saved as cells come and go).
    todo : list of Cell
        The unfinished cells.
    workers : int
        Cells run at a time.
    threads : int
        Threads of each cell's pools (OMP_NUM_THREADS and friends).
    retries : int
        Attempts after a failure, per cell (a cell that exits 2 is not retried).
    runner : Runner, optional
        How one attempt is run (default `run_cell`).
    progress : bool
        Show a progress bar on stderr.
    pass_fds : tuple of int
        Descriptors the default runner's processes keep (the sweep folder's lock).

    Raises
    ------
    KeyboardInterrupt, SweepTerminated
        After stopping the cell processes and saving sweep.json (their cells are pending).
    """
    from tqdm import tqdm

    runner = runner or functools.partial(run_cell, pass_fds=pass_fds)
    pool = _Pool(status, workers, threads, retries, runner)
    bar = tqdm(total=len(todo), desc="sweep", unit="cell", disable=not progress, file=sys.stderr)
    try:
        with sigterm_as_exception():
            pool.run(todo, bar)
    except BaseException:
        pool.interrupt()
        raise
    finally:
        bar.close()
        pool.pool.shutdown(wait=True)


__all__ = ["POLL_S", "Runner", "SweepTerminated", "run_cell", "run_local", "sigterm_as_exception"]
