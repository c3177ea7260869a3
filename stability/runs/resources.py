"""What a run may use of the machine: its CPU cores and its memory, checked before a run starts.

A command that would need more memory than the machine has left is refused before it writes
anything (`check_memory`, a `UsageError` with both numbers), instead of growing until the
system kills it. The estimate is the command's own (it knows its arrays); this module only
knows what is available.
"""

from __future__ import annotations

import os

from stability.errors import UsageError

GIB = 2.0**30


def available_cores() -> int:
    """CPU cores this process may use: its affinity mask (Slurm's, taskset's), capped by
    ``OMP_NUM_THREADS`` when that is set (a sweep gives each of its cells its share that way).

    Returns
    -------
    int
        At least 1.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if limit.isdigit() and int(limit) >= 1:
        cores = min(cores, int(limit))
    return max(1, cores)


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get now: MemAvailable of /proc/meminfo, capped by
    the cgroup's limit (containers, Slurm jobs) when there is one; None where neither is known.

    Returns
    -------
    int or None
    """
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    limit = _cgroup_room()
    return free if limit is None else min(free, limit)


def _cgroup_room() -> int | None:
    """The cgroup v2 memory limit minus its current use, None without a limit."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        if text == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        return max(0, int(text) - used)
    except (OSError, ValueError):
        return None


def check_memory(need: float, what: str, hint: str = "") -> None:
    """Refuse a run whose estimated memory exceeds what is available (UsageError, exit 2).

    Parameters
    ----------
    need : float
        The run's estimated peak memory in bytes.
    what : str
        What needs it, for the message (e.g. ``"simulate gaussian with 10^9 runs"``).
    hint : str
        What to change, appended to the message (e.g. ``"use fewer --runs"``).

    Raises
    ------
    UsageError
        ``WHAT needs about X GiB of memory, more than the Y GiB available; HINT``.
    """
    free = available_memory()
    if free is None or need <= free:
        return
    text = f"{what} needs about {need / GIB:.3g} GiB of memory, more than the {free / GIB:.3g} GiB available"
    raise UsageError(f"{text}; {hint}" if hint else text)


__all__ = ["GIB", "available_cores", "available_memory", "check_memory"]
