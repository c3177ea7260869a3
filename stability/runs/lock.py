"""One process at a time per folder: a lock file inside the folder, held with `flock`.

A run folder (or a sweep folder) written by two processes at once mixes their files: two
commands resuming the same run compute the same pieces twice and one deletes what the other
still reads. `lock_run_folder` makes the second process stop before it writes anything, with
a `UsageError` naming the process that holds the folder (its PID, host and command).

The lock is an advisory `flock` on ``FOLDER/.lock``. The kernel releases it when the last file
descriptor of the holder closes, so a process killed with SIGKILL never leaves the folder
locked: its lock file stays behind with its PID in it (a stale lock), and the next process
simply takes the lock and writes its own PID. A process that starts children writing into the
folder hands them the lock's descriptor (``pass_fds=(lock.fd,)``): the folder then stays
locked until the children exit too, even when the parent was killed first.

A process killed in the middle of an atomic write (`stability.runs.runfolder.atomic_write_bytes`)
leaves its temporary file, ``.NAME.XXXXXXXX.tmp``, beside the file it was writing; nothing else
removes it (a resumed run writes NAME again under a new temporary name), so a finished run
folder keeps it, and a folder such as ``blocks/`` that the run removes when done stays behind.
Taking the lock is the one moment at which no process can be writing the folder, so
`lock_run_folder` removes such leftovers then (`remove_partial_writes`), in the folder and its
sub-folders, except in sub-folders that have a lock file of their own (their holder cleans them).

An output that is not a run folder (a checkpoint file, a zip or a folder of images) is locked
the same way through ``.NAME.lock`` beside it (`lock_output`).

On platforms without `fcntl` (Windows) nothing is locked.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stability.errors import UsageError

LOCK_FILE = ".lock"
# The temporary name of atomic_write_bytes: tempfile.mkstemp(prefix=".NAME.", suffix=".tmp"),
# whose random part is 8 characters of [a-z0-9_].
PARTIAL_WRITE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a folder's lock, as written in its lock file.

    Parameters
    ----------
    pid : int or None
        Process id of the process that took the lock (None when the file was unreadable).
    host : str
        Host name of that process (PIDs are only meaningful on their own host).
    command : str
        What it runs, e.g. ``"sweep"``; empty when not given.
    started : str
        When it took the lock (ISO 8601, UTC).
    """

    pid: int | None
    host: str = ""
    command: str = ""
    started: str = ""

    def alive(self) -> bool | None:
        """Whether the holder process still exists: None when that cannot be known here.

        Returns
        -------
        bool or None
            True or False for a PID on this host, None for another host or an unknown PID.
        """
        if self.pid is None or self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by another user
            return True
        return True

    def describe(self) -> str:
        """One line naming the holder, e.g. ``pid 123 on node7 since 2024-05-01T10:00:00+00:00``."""
        if self.pid is None:
            return "a process whose lock file is unreadable"
        text = f"pid {self.pid} on {self.host or 'an unknown host'}"
        if self.started:
            text += f" since {self.started}"
        if self.alive() is False:
            text += ", which has exited; processes it started still hold the lock"
        return text


@dataclass(frozen=True)
class FolderLock:
    """A held folder lock (what `lock_run_folder` yields).

    Parameters
    ----------
    folder : Path
        The locked folder.
    path : Path
        Its lock file, ``folder / LOCK_FILE``.
    fd : int or None
        The descriptor holding the lock: give it to child processes that write into the folder
        (``subprocess.Popen(..., pass_fds=(lock.fd,))``) so that the folder stays locked while
        they run. None where nothing is locked (no `fcntl`).
    removed : tuple of Path
        Leftovers of interrupted atomic writes removed when the lock was taken.
    """

    folder: Path
    path: Path
    fd: int | None
    removed: tuple[Path, ...] = ()


def read_holder(folder: str | Path) -> LockHolder | None:
    """The process named in a folder's lock file, None if there is no lock file.

    The file names the last process that took the lock; whether that process still holds it
    is what `lock_run_folder` finds out.

    Parameters
    ----------
    folder : str or Path
        The folder.

    Returns
    -------
    LockHolder or None
    """
    return _holder_in(Path(folder) / LOCK_FILE)


def _holder_in(path: Path) -> LockHolder | None:
    """The process named in the lock file `path`, None if there is no such file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return LockHolder(None)
    try:
        data = json.loads(text)
        return LockHolder(
            int(data["pid"]),
            str(data.get("host", "")),
            str(data.get("command", "")),
            str(data.get("started", "")),
        )
    except (ValueError, KeyError, TypeError):
        # Empty while its holder is writing it, or not ours.
        return LockHolder(None)


def _open_locked(path: Path) -> int | None:
    """A descriptor of `path` holding its exclusive flock; None if another process holds it."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        # The previous holder unlinks the file when it releases the lock: if that happened
        # between our open and flock, we hold a lock on a file nobody else will open. Retry.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Remove the temporary files of atomic writes whose writer was killed, under `folder`.

    Only safe while holding the folder's lock: a running writer's temporary file has the same
    name. Sub-folders with a lock file of their own are skipped (their holder cleans them), and
    folders left empty by the removal are removed too (a ``blocks/`` folder that only held a
    partial block).

    Parameters
    ----------
    folder : str or Path
        The locked folder.

    Returns
    -------
    list of Path
        The files removed.
    """
    folder = Path(folder)
    removed = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if here != folder and LOCK_FILE in files:
            dirs[:] = []
            continue
        for name in files:
            if PARTIAL_WRITE.fullmatch(name):
                with contextlib.suppress(FileNotFoundError):
                    (here / name).unlink()
                    removed.append(here / name)
    for parent in sorted({p.parent for p in removed}, key=lambda p: len(p.parts), reverse=True):
        while parent != folder and folder in parent.parents:
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
            parent = parent.parent
    return removed


@contextlib.contextmanager
def lock_run_folder(
    folder: str | Path, command: str = "", clean: bool = True
) -> Iterator[FolderLock]:
    """Hold a folder's lock for the duration of a ``with`` block (one process at a time).

    Creates the folder if needed, takes an exclusive `flock` on ``folder/.lock`` and writes
    this process's PID, host, `command` and start time into it. On leaving the block (normally
    or by an exception) the lock file is removed and the lock released; a process that dies
    instead releases the lock through the kernel, and its stale lock file is taken over by the
    next process.

    Parameters
    ----------
    folder : str or Path
        The run folder or sweep folder to lock.
    command : str, optional
        What this process runs (e.g. ``"sweep"``), shown to a process that finds the folder
        locked.
    clean : bool
        Remove the leftovers of interrupted atomic writes once the lock is held
        (`remove_partial_writes`).

    Yields
    ------
    FolderLock
        The lock, with the descriptor to hand to child processes.

    Raises
    ------
    UsageError
        If another process holds the folder's lock: one line naming it, e.g. ``another sweep
        is running in 'runs/x' (pid 123 on node7 since ...)``. Nothing has been written then.
    """
    folder = Path(folder)
    path = folder / LOCK_FILE
    try:
        import fcntl  # noqa: F401 - only to know whether flock exists here
    except ImportError:  # pragma: no cover - not POSIX
        yield FolderLock(folder, path, None)
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = _open_locked(path)
    if fd is None:
        holder = read_holder(folder) or LockHolder(None)
        what = holder.command or "process"
        raise UsageError(f"another {what} is running in {str(folder)!r} ({holder.describe()})")
    try:
        _write_holder(fd, command)
        removed = tuple(remove_partial_writes(folder)) if clean else ()
        yield FolderLock(folder, path, fd, removed)
    finally:
        # Unlink while still holding the lock (see _open_locked for why this is safe).
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def output_lock_path(path: str | Path) -> Path:
    """The lock file of an output that is not a run folder: ``.NAME.lock`` beside NAME."""
    path = Path(os.path.abspath(path))  # "." and "dir/" have a name once absolute
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def lock_output(path: str | Path, command: str = "") -> Iterator[FolderLock]:
    """Hold the lock of one output file or folder (a checkpoint, a zip or folder of images) for
    a ``with`` block: the same `flock` as `lock_run_folder`, on ``.NAME.lock`` beside it.

    For outputs that are not run folders: a lock file inside the output would change it (a
    folder of images must be empty), and the folder around it may hold other runs' outputs.
    Parent folders created for the lock file are removed again if the block leaves them empty
    (a refused or failed run leaves nothing behind). Partial writes are not cleaned here: the
    folder around the output is not this process's.

    Parameters
    ----------
    path : str or Path
        The output (file or folder) the process is about to write.
    command : str, optional
        What this process runs (e.g. ``"deep train"``), shown to a process that finds it locked.

    Yields
    ------
    FolderLock
        ``folder`` is the output's parent, ``path`` the lock file.

    Raises
    ------
    UsageError
        If another process holds the output's lock: one line naming it, e.g. ``another deep
        train is writing 'ckpt.pt' (pid 123 on node7 since ...)``. Nothing has been written then.
    """
    lock_path = output_lock_path(path)
    parent = lock_path.parent
    try:
        import fcntl  # noqa: F401 - only to know whether flock exists here
    except ImportError:  # pragma: no cover - not POSIX
        yield FolderLock(parent, lock_path, None)
        return
    created = [q for q in (parent, *parent.parents) if not q.exists()]
    for attempt in range(3):  # another process may remove a parent between mkdir and open
        parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = _open_locked(lock_path)  # None: another process holds it
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    try:
        if fd is None:
            holder = _holder_in(lock_path) or LockHolder(None)
            raise UsageError(
                f"another {holder.command or 'process'} is writing {str(path)!r} "
                f"({holder.describe()})"
            )
        _write_holder(fd, command)
        yield FolderLock(parent, lock_path, fd)
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
            os.close(fd)
        for q in created:  # deepest first; only those left empty
            with contextlib.suppress(OSError):
                q.rmdir()


def _write_holder(fd: int, command: str) -> None:
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": started,
        "argv": sys.argv,
    }
    data = (json.dumps(record) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


__all__ = [
    "LOCK_FILE",
    "PARTIAL_WRITE",
    "FolderLock",
    "LockHolder",
    "lock_output",
    "lock_run_folder",
    "output_lock_path",
    "read_holder",
    "remove_partial_writes",
]
