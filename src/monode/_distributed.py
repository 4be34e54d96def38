"""Data-parallel training across processes on torch.distributed: `torchrun --nproc_per_node=N -m monode train ...`.

Under torchrun (WORLD_SIZE > 1 in the environment) every process joins one process group (gloo on the
CPU, nccl on CUDA, where rank r uses cuda:LOCAL_RANK). Every rank draws the same global permutation of
the training set per epoch, seeded by (seed, epoch) as in one process, and takes its contiguous part of
each global batch of `batch_size` examples, so a run with N processes sees the batches of a run with one
and `--resume` stays exact. The loss module is wrapped in DistributedDataParallel with each rank's loss
weighted by its share of the global batch, so the averaged gradient is the global batch's mean gradient
(that of one process, up to float summation order). Metrics and NFE statistics are all-reduced: example-
weighted means for metrics, means over ranks and batches for the NFE (an adaptive solver's NFE on a shard
can differ from its NFE on the whole batch). Rank 0 alone locks the folder and writes config, metrics and
checkpoints; each rank's RNG state is kept in the checkpoint.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["Replicas", "replicas"]


class Replicas:
    """This process's place among the data-parallel processes (rank 0 of 1 without torchrun)."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0) -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def device(self, device: str) -> str:
        """The device of this rank: cuda:LOCAL_RANK for --device cuda under torchrun."""
        dev = torch.device(device)
        if self.parallel and dev.type == "cuda":
            return f"cuda:{self.local_rank}"
        return str(dev)

    def shard(self, idx: Tensor) -> Tensor:
        """This rank's contiguous part of a global batch of indices (may be empty for a tiny last batch)."""
        return idx.tensor_split(self.world)[self.rank] if self.parallel else idx

    def wrap(self, module: nn.Module) -> nn.Module:
        """`module` in DistributedDataParallel (gradients averaged over the ranks) when parallel."""
        if not self.parallel:
            return module
        device_ids = [self.local_rank] if next(module.parameters()).is_cuda else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, static_graph=True)

    def sum(self, values: Mapping[str, float], device: str | torch.device = "cpu") -> dict[str, float]:
        """Each value summed over the ranks (one collective for all of them)."""
        if not self.parallel or not values:
            return dict(values)
        keys = sorted(values)
        packed = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(packed)
        return dict(zip(keys, packed.tolist()))

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every rank, in rank order (a list of one without torchrun)."""
        if not self.parallel:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


_current: Replicas | None = None


def replicas(device: str = "cpu") -> Replicas:
    """This process's `Replicas`, joining the process group on first use under torchrun (WORLD_SIZE > 1)."""
    global _current
    if _current is not None:
        return _current
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _current = Replicas()
        return _current
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    _current = Replicas(rank, world, local_rank)
    return _current
