"""One compute thread for the parts of `stability reproduce`.

Every network of the report is tiny (2D MLP ensembles of a few runs, a 0.2M-parameter U-Net on
8x8 digits), so a second torch or numba thread buys little and costs much: their pools wait for
each other by spinning, and on a busy 2-core machine the digits EDM trained at 45 s of CPU per
kimg with torch's default two threads against 4.7 s with one (measured in one run, load 10).
The report's sizes are chosen in CPU seconds on one core; `one_thread` makes that what runs.
"""

from __future__ import annotations

import contextlib
import importlib.util


@contextlib.contextmanager
def one_thread():
    """Run torch's intra-op pool and numba's parallel kernels on one thread inside the block,
    then restore both settings. A library that is not installed is left alone (the theory and
    Gaussian parts need neither torch nor numba's pool)."""
    restore = []
    # numba first: launching its OpenMP layer resets the OpenMP thread count it shares with
    # torch (the same libgomp), which then ran its convolutions on two threads again while
    # torch.get_num_threads() still said 1 (measured: 10x the CPU of a conv backward).
    if importlib.util.find_spec("numba") is not None:
        import numba

        old_numba = numba.get_num_threads()
        numba.set_num_threads(1)
        restore.append(lambda: numba.set_num_threads(old_numba))
    if importlib.util.find_spec("torch") is not None:
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(1)
        restore.insert(0, lambda: torch.set_num_threads(old))
    try:
        yield
    finally:
        for undo in restore:
            undo()
