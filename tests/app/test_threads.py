"""Thread pinning of `simulate --threads` and `reproduce`'s parts (stability/app/threads.py)."""

import os
import subprocess
import sys

import pytest

from stability.app.threads import set_threads

SCRIPT = """
import torch
torch.set_num_threads(2)
assert torch.get_num_threads() == 2  # torch's pool initialised, as in a test run
import numba
from stability.app.threads import one_thread
with one_thread():
    assert (torch.get_num_threads(), numba.get_num_threads()) == (1, 1), "inside"
after = torch.get_num_threads(), numba.get_num_threads()
assert after == (2, NUMBA_BEFORE), after
"""


@pytest.mark.parametrize("numba_threads", [1, 2])
def test_one_thread_inside_the_block_and_restored_after(numba_threads):
    """In a fresh process, so that numba's OpenMP layer is first launched inside the block:
    launching it sets the OpenMP count torch reads to NUMBA_NUM_THREADS (1 in pytest's workers,
    where CI once saw torch at 1 after the block: torch's count was read after the launch)."""
    pytest.importorskip("torch")
    pytest.importorskip("numba")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["NUMBA_NUM_THREADS"] = str(numba_threads)
    script = SCRIPT.replace("NUMBA_BEFORE", str(numba_threads))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-600:]


def test_set_threads_pins_numba_and_torch_and_survives_a_numba_kernel():
    """numba's first parallel kernel used to reset the OpenMP count torch shares; after
    set_threads(1) both libraries report one thread, also once a parallel kernel has run."""
    torch = pytest.importorskip("torch")
    numba = pytest.importorskip("numba")
    import numpy as np

    @numba.njit(parallel=True)
    def total(x):
        s = 0.0
        for i in numba.prange(x.shape[0]):
            s += x[i]
        return s

    undo = set_threads(1)
    try:
        assert total(np.ones(1000)) == 1000.0
        assert numba.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        for u in undo:
            u()
