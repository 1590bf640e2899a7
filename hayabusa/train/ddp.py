"""Data-parallel training over several processes (torchrun / ``torch.distributed``).

Every rank forms the same global batch (same seed), evaluates its share of the frames and
adds its part of the loss, normalised by the global counts; one all-reduce of the flat
gradient then gives every rank the gradient of the whole batch, so k steps on W ranks equal
k single-process steps up to rounding. We reduce the gradient ourselves after ``backward``
instead of wrapping the model in ``DistributedDataParallel``: the forces come from a double
backward through ``torch.autograd.grad`` inside ``forward``, which DDP's hooks do not
support (nequip's ``SimpleDDPStrategy`` does the same). Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    """This process's rank among ``world_size`` (rank 0 writes files and prints)."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place; returns it."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather(self, obj) -> list:
        """The ``obj`` of every rank, in rank order (picklable objects)."""
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_reduce_gradients(self, parameters) -> None:
        """Sum the gradients of ``parameters`` over the ranks (one flat all-reduce)."""
        params = [p for p in parameters if p.grad is not None]
        if not params:
            return
        flat = self.all_reduce(torch.cat([p.grad.reshape(-1) for p in params]))
        offset = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)

    def shares(self, n: int) -> list[int]:
        """The items of ``range(n)`` this rank handles (round robin)."""
        return list(range(self.rank, n, self.world_size))


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_environment(device: torch.device) -> Distributed | None:
    """Join the process group torchrun describes in the environment; None for one process.

    On CUDA each rank takes the GPU ``LOCAL_RANK``; returns the Distributed handle."""
    if launched_world_size() <= 1:
        return None
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """``device``, or this rank's GPU (cuda:LOCAL_RANK) when launched by torchrun on CUDA."""
    if device.type == "cuda" and launched_world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
