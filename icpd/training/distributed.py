"""Process-group helpers for ``torchrun`` training: init from env vars, rank checks, reductions.

``torchrun --nproc_per_node N`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_distributed` reads them. Without them (a plain ``python`` or
``icpd train``), everything here degrades to a single process and no process group is made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from icpd.errors import ParamError, arg
from icpd.training.metrics import SegmentationMeter


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0  # global rank; 0 writes every file
    world_size: int = 1  # processes in the job
    local_rank: int = 0  # rank on this host; picks the CUDA device
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # this process's device
    initialized_here: bool = False  # we made the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer "
                         "(set by torchrun)") from None


def init_distributed(device: str | torch.device = "cpu") -> DistContext:
    """Join the ``torchrun`` process group if the environment describes one.

    Args:
        device: ``"cpu"`` or ``"cuda"``; with CUDA each process takes ``cuda:LOCAL_RANK`` and the
            backend is NCCL, on CPU it is gloo.

    Returns:
        A :class:`DistContext`; ``world_size == 1`` when not launched by torchrun.
    """
    device = torch.device(device)
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParamError(f"{arg('device', 'cuda')}: no CUDA device is visible to PyTorch; use "
                             f"{arg('device', 'cpu')}")
        device = torch.device("cuda", local if device.index is None else device.index)
        torch.cuda.set_device(device)
    if world <= 1:
        return DistContext(device=device)
    made = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank,
                                world_size=world)
        made = True
    return DistContext(rank, world, local, device, made)


def shutdown(ctx: DistContext) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(ctx: DistContext, values: np.ndarray | list[float]) -> np.ndarray:
    """Element-wise sum over ranks of a small float64/int64 vector (identity in one process)."""
    arr = np.asarray(values)
    if not ctx.distributed:
        return arr
    # gloo reduces on CPU tensors, NCCL on the process's device
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def all_reduce_meter(ctx: DistContext, meter: SegmentationMeter) -> None:
    """Sum a meter's intersection/union counts over ranks, in place (each rank scored a shard)."""
    if not ctx.distributed:
        return
    n = meter.num_classes + 1
    packed = np.concatenate([meter.fg_inter, meter.fg_union, meter.episodes,
                             [meter.bg_inter, meter.bg_union]])
    total = all_reduce_sum(ctx, packed.astype(np.int64))
    meter.fg_inter, meter.fg_union, meter.episodes = total[:n], total[n : 2 * n], total[2 * n : 3 * n]
    meter.bg_inter, meter.bg_union = int(total[3 * n]), int(total[3 * n + 1])
