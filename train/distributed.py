"""DDP from the environment `torchrun` sets (RANK, LOCAL_RANK, WORLD_SIZE); a single process otherwise.

gloo on CPU, nccl on CUDA. Rank 0 logs and writes checkpoints; evaluation shards items over ranks and
all-gathers the codes.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from ..sdk.errors import SadhError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, local rank, world size and its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the one that logs and saves)."""
        return self.rank == 0


def pick_device(name: str = "auto", local_rank: int = 0, world_size: int = 1) -> torch.device:
    """`auto` -> this rank's CUDA device when there is one, else CPU; otherwise the named device, where `cuda` under
    torchrun (world_size > 1) is this rank's GPU, cuda:LOCAL_RANK."""
    if name == "auto":
        return _rank_gpu(local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SadhError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if device.type == "cuda" and world_size > 1:
        if device.index is not None and torch.cuda.device_count() > 1:
            raise SadhError(f"--device {name} would put all {world_size} processes on one GPU; use --device cuda (each takes cuda:LOCAL_RANK)")
        return _rank_gpu(local_rank)
    return device


def _rank_gpu(local_rank: int) -> torch.device:
    """This rank's GPU: cuda:LOCAL_RANK, or cuda:0 where each process sees only its own (CUDA_VISIBLE_DEVICES)."""
    return torch.device(f"cuda:{local_rank if torch.cuda.device_count() > local_rank else 0}")


_joined = False  # set once this process joined a process group: errors from then on may be its own


def joined_group() -> bool:
    """Whether this process has joined a torchrun process group (it may since have left it)."""
    return _joined


def setup(device: str = "auto") -> DistInfo:
    """Join the process group when WORLD_SIZE > 1 (torchrun), else describe a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 0, 1, pick_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank, world)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    global _joined
    _joined = True
    return DistInfo(rank, local_rank, world, dev)


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for a single process)."""
    if info.world_size > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first(info: DistInfo) -> Iterator[None]:
    """Run the block on rank 0 first, then on the others (e.g. building a shared disk cache)."""
    if not info.is_main:
        barrier(info)
    yield
    if info.is_main:
        barrier(info)


def mean_over_ranks(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of a scalar tensor over all ranks (the value itself for a single process)."""
    value = value.detach().float().reshape(1)
    if info.world_size > 1:
        dist.all_reduce(value)
        value /= info.world_size
    return value[0]


def gather_rows(local: torch.Tensor, total: int, info: DistInfo) -> torch.Tensor:
    """Reassemble rows sharded as `items[rank::world_size]` into all `total` rows, in order, on every rank."""
    if info.world_size == 1:
        return local
    per_rank = -(-total // info.world_size)
    padded = local.new_zeros((per_rank, *local.shape[1:]))
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)
    return torch.stack(parts, dim=1).reshape(per_rank * info.world_size, *local.shape[1:])[:total]


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank (no-op for a single process)."""
    if info.world_size > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)
