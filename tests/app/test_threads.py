"""Thread pinning of `simulate --threads` and `reproduce`'s parts (stability/app/threads.py)."""

import pytest

from stability.app.threads import one_thread, set_threads


@pytest.mark.parametrize("numba_before", [1, 2])
def test_one_thread_inside_the_block_and_restored_after(numba_before):
    """Both libraries' counts come back, whatever numba's was. (CI once saw torch at 1 after the
    block when numba was restored after torch; they share the OpenMP count, so torch goes last.)"""
    torch = pytest.importorskip("torch")
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba limited to one thread here")
    before = torch.get_num_threads(), numba.get_num_threads()
    numba.set_num_threads(numba_before)
    torch.set_num_threads(2)
    try:
        with one_thread():
            assert torch.get_num_threads() == 1
            assert numba.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        assert numba.get_num_threads() == numba_before
    finally:
        numba.set_num_threads(before[1])
        torch.set_num_threads(before[0])


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
