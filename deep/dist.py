"""torch.distributed helpers: one process, or several launched by torchrun (DDP).

Under torchrun (RANK, WORLD_SIZE and LOCAL_RANK set) the process group is NCCL on CUDA devices
and gloo otherwise; without it every helper degrades to the single-process case. Nothing here
assumes CUDA.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as td


def init(device: str) -> None:
    """Join the process group if launched by torchrun (idempotent).

    On CUDA the process first makes cuda:LOCAL_RANK its current device: NCCL's collectives
    (`broadcast_object_list`, the tensors of `gather_rows`) use the current device, which is
    otherwise cuda:0 on every rank, so that every process of a node would talk through GPU 0.
    """
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not td.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl" and "LOCAL_RANK" in os.environ:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        td.init_process_group(backend=backend)


def rank() -> int:
    """This process's rank in the process group, 0 without one."""
    return td.get_rank() if td.is_initialized() else 0


def world() -> int:
    """Number of processes in the group, 1 without one."""
    return td.get_world_size() if td.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the process that writes files."""
    return rank() == 0


def barrier() -> None:
    """Waits for every process of the group (nothing without one)."""
    if td.is_initialized():
        td.barrier()


def local_device(device: str) -> str:
    """cuda -> cuda:LOCAL_RANK under torchrun; other devices unchanged."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def gather_rows(local: np.ndarray, counts: list[int]) -> np.ndarray:
    """Concatenate per-rank arrays (rank order) on every rank; counts[r] = rows of rank r."""
    if not td.is_initialized():
        return local
    biggest = max(counts)
    pad = np.zeros((biggest, *local.shape[1:]), dtype=local.dtype)
    pad[: len(local)] = local
    tensor = torch.from_numpy(pad)
    if td.get_backend() == "nccl":  # NCCL only moves CUDA tensors
        tensor = tensor.to(f"cuda:{torch.cuda.current_device()}")
    out = [torch.empty_like(tensor) for _ in range(world())]
    td.all_gather(out, tensor)
    return np.concatenate([o.cpu().numpy()[:c] for o, c in zip(out, counts)])


def gather_objects(obj) -> list:
    """Every process's `obj` in rank order, on every process ([obj] without a process group)."""
    if not td.is_initialized():
        return [obj]
    out = [None] * world()
    td.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """rank 0's object on every rank."""
    if not td.is_initialized():
        return obj
    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def shutdown() -> None:
    """Destroys the process group, if there is one."""
    if td.is_initialized():
        td.destroy_process_group()
