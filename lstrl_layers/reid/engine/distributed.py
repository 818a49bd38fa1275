"""Multi-process training helpers over ``torch.distributed``: the process group, gathers, rank shards.

Launched by ``torchrun`` (which sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``), a training run uses one
process per device: NCCL on CUDA, gloo on the CPU. Without those variables everything here is the single
process case (rank 0 of 1) and no collective is called.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Sampler

from ..sampling import PKBatchSampler

__all__ = ["RankBatchSampler", "World", "gather_with_grad", "init_world", "joined_world", "shard_indices"]


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: ``rank`` of ``size``, its ``device``."""

    rank: int = 0
    size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, writes files and ranks the test set."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device: str) -> World:
    """Join the process group that ``torchrun`` describes in the environment, or stay a single process.

    ``device="cuda"`` under torchrun becomes ``cuda:LOCAL_RANK`` with the NCCL backend; ``"cpu"`` uses gloo.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(0, 1, device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return World(rank, size, device)


@contextlib.contextmanager
def joined_world(device: str) -> Iterator[World]:
    """:func:`init_world` for the ``with`` block, and every rank leaves the process group at its end.

    On the way out of a block that went well the ranks first wait for each other, so that none tears its
    connections down while another still uses them (gloo can abort the process then); out of an error they
    do not wait, since the other ranks may never arrive.
    """
    world = init_world(device)
    try:
        yield world
    except BaseException:
        _leave(world, wait=False)
        raise
    _leave(world, wait=True)


def _leave(world: World, wait: bool) -> None:
    if world.distributed and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def gather_with_grad(tensor: Tensor, world: World) -> Tensor:
    """All ranks' ``tensor`` (same shape on every rank) concatenated in rank order along dim 0.

    The slice of this rank is ``tensor`` itself, so gradients flow back to it; the other ranks' slices are
    constants here (each rank back-propagates through its own slice).
    """
    if not world.distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world.size)]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[world.rank] = tensor
    return torch.cat(parts)


def gather_rows(tensor: Tensor, world: World) -> Tensor:
    """Concatenate, in rank order, tensors whose first dimension differs between ranks (no gradient)."""
    if not world.distributed:
        return tensor
    count = torch.tensor([len(tensor)], device=tensor.device)
    counts = [torch.empty_like(count) for _ in range(world.size)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(c.item())] for part, c in zip(parts, counts)])


def shard_indices(length: int, world: World) -> list[int]:
    """This rank's contiguous share of ``range(length)``; the shares of ranks ``0..size-1`` in order
    concatenate to ``range(length)`` (sizes differ by at most one)."""
    start, stop = world.rank * length // world.size, (world.rank + 1) * length // world.size
    return list(range(start, stop))


def broadcast_object(value: object, world: World) -> object:
    """Rank 0's ``value`` on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(value: object, world: World) -> list[object]:
    """Every rank's ``value``, in rank order."""
    if not world.distributed:
        return [value]
    out: list[object] = [None] * world.size
    dist.all_gather_object(out, value)
    return out


def mean_over_ranks(values: dict[str, float], world: World) -> dict[str, float]:
    """The mean of each value over the ranks (for logging per-rank statistics as one number)."""
    if not world.distributed:
        return values
    keys = sorted(values)
    stacked = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(stacked)
    return {k: float(v) / world.size for k, v in zip(keys, stacked)}


def any_over_ranks(flag: bool, world: World) -> bool:
    """Whether ``flag`` is set on any rank (every rank gets the same answer, for decisions taken together)."""
    if not world.distributed:
        return flag
    value = torch.tensor([float(flag)], device=world.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class RankBatchSampler(Sampler[list[int]]):
    """This rank's share of each global batch of a batch sampler such as ``PKBatchSampler``.

    A global ``P x K`` batch lists the ``K`` items of its first identity, then those of the second, and so
    on; rank ``r`` of ``n`` gets identities ``r P/n .. (r+1) P/n - 1`` of it, whole (``P`` must be divisible
    by ``n``). Every rank iterates the same global order (the sampler is seeded), so the shares of one step
    partition the global batch.
    """

    def __init__(self, batches: PKBatchSampler, world: World) -> None:
        if batches.P % world.size:
            raise ValueError(
                f"P={batches.P} identities per global batch cannot be split into whole "
                f"identities over {world.size} processes: use a P divisible by {world.size}"
            )
        self.batches = batches
        self.world = world
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Fix the epoch whose order the next iteration yields, leaving out its first ``skip`` global
        batches (those a stopped run had trained on: the others come in the same order as without a stop)."""
        self.batches.set_epoch(epoch)
        self.skip = skip

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.skip)

    def __iter__(self) -> Iterator[list[int]]:
        for position, batch in enumerate(self.batches):
            if position < self.skip:
                continue
            share = len(batch) // self.world.size
            yield batch[self.world.rank * share : (self.world.rank + 1) * share]
