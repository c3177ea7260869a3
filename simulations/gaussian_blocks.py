"""The blocks of a `simulate gaussian` run on disk: DIR/blocks/lam{i}_block{b}.npz, one archive
per block of runs and lambda, holding each metric of its runs, shape (B, T+1) float64.

They are what a resumed run needs and what the summaries are read from; they go once
summary.csv is written (unless kept). Writing skips fsync: a block is checked when read back
(the CRC-32 of each archive member, the header, the shape) and recomputed if damaged, so only
the rename needs to be atomic.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from stability.runs.runfolder import RunFolder, atomic_save_npz


def block_path(folder: RunFolder | Path, li: int, block: int) -> Path:
    """The file of block `block` of lambda number `li` in a run folder."""
    base = folder.path if isinstance(folder, RunFolder) else Path(folder)
    return base / "blocks" / f"lam{li}_block{block:05d}.npz"


def save_block(path: Path, values: dict) -> None:
    """Save a block's metrics (dict metric -> array (B, T+1)) atomically, without fsync."""
    atomic_save_npz(path, durable=False, **values)


# Bytes per read of a block member: below glibc's mmap threshold (128 KiB), so each read's
# bytes come from the heap and are reused; reading a member whole mapped 0.8 MB of fresh pages
# per read (0.7 s of system CPU over the 600 reads of 1e5 runs x 6 metrics).
READ_CHUNK = 1 << 16


def read_member(path: Path, metric: str, buffer: np.ndarray | None = None) -> np.ndarray:
    """One array of a block archive, read into `buffer` (uint8, reused from read to read).

    Returns a view of `buffer` (a new one if it is missing or too small): copy it before the
    next read. zipfile checks the member's CRC-32 when the read reaches its end (BadZipFile if
    damaged).
    """
    with zipfile.ZipFile(path) as archive, archive.open(f"{metric}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version != (1, 0):
            raise ValueError(f"unexpected .npy version {version}")
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        nbytes = math.prod(shape) * dtype.itemsize
        if buffer is None or buffer.nbytes < nbytes:
            buffer = np.empty(nbytes, dtype=np.uint8)
        view = memoryview(buffer)[:nbytes]
        pos = 0
        while pos < nbytes:
            got = f.readinto(view[pos : pos + READ_CHUNK])
            if not got:
                raise EOFError(f"{path}: {metric}.npy ends early")
            pos += got
        if f.read(1):
            raise ValueError(f"{path}: {metric}.npy is longer than its header says")
    order = "F" if fortran else "C"
    return buffer[:nbytes].view(dtype).reshape(shape, order=order)


def remove_blocks(folder: RunFolder, lams: int, blocks: int) -> None:
    """Remove the block files of `lams` lambdas x `blocks` blocks, then the folder if empty."""
    for li in range(lams):
        for b in range(blocks):
            block_path(folder, li, b).unlink(missing_ok=True)
    try:
        folder.file("blocks").rmdir()
    except OSError:
        pass
