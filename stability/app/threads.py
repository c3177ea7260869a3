"""Pin the compute threads of torch and numba together, for `simulate --threads` and the parts
of `stability reproduce`.

Every network of the report is tiny (2D MLP ensembles of a few runs, a 0.2M-parameter U-Net on
8x8 digits), so a second torch or numba thread buys little and costs much: their pools wait for
each other by spinning, and on a busy 2-core machine the digits EDM trained at 45 s of CPU per
kimg with torch's default two threads against 4.7 s with one (measured in one run, load 10).
The report's sizes are chosen in CPU seconds on one core; `one_thread` makes that what runs.

Both libraries must be set: numba's OpenMP layer shares libgomp with torch, and launching it
resets the OpenMP thread count, so a `torch.set_num_threads(1)` alone was undone by numba's
first parallel kernel while `torch.get_num_threads()` still said 1 (measured: 10x the CPU of a
conv backward).
"""

from __future__ import annotations

import contextlib
import importlib.util


def set_threads(n: int):
    """Set numba's parallel kernels and torch's intra-op pool to `n` threads.

    A library that is not installed is left alone (the theory and Gaussian parts need neither).

    Parameters
    ----------
    n : int
        Number of threads, >= 1 (numba caps it at its ``NUMBA_NUM_THREADS``).

    Returns
    -------
    list of callables
        Each restores one library's previous setting, in the order to call them (numba first,
        torch last, so that numba's setting of the OpenMP count cannot undo torch's).
    """
    restore = []
    # torch's count is read before numba is touched, and torch is set after numba both ways:
    # any numba call may be the one that launches its OpenMP layer, which sets the OpenMP count
    # torch reads to NUMBA_NUM_THREADS (read after it, torch's "old" count was numba's).
    has_torch = importlib.util.find_spec("torch") is not None
    if has_torch:
        import torch

        old = torch.get_num_threads()
    if importlib.util.find_spec("numba") is not None:
        import numba
        from numba import config

        old_numba = numba.get_num_threads()
        numba.set_num_threads(min(n, config.NUMBA_NUM_THREADS))
        restore.append(lambda: numba.set_num_threads(old_numba))
    if has_torch:
        torch.set_num_threads(n)
        restore.append(lambda: torch.set_num_threads(old))
    return restore


@contextlib.contextmanager
def one_thread():
    """Run torch's intra-op pool and numba's parallel kernels on one thread inside the block,
    then restore both settings."""
    restore = set_threads(1)
    try:
        yield
    finally:
        for undo in restore:
            undo()
