"""This process's place in a torchrun job, and the few collectives training needs.

Without torchrun (``WORLD_SIZE`` unset or 1) a process is rank 0 of 1 and every helper here
is a no-op or an identity, so the training loop has no rank branches: it calls
``dist_info.barrier()`` or ``dist_info.all_true(flag)`` and they do what one process needs.

Gradients are averaged with one ``all_reduce`` per network before each optimiser step, as
StyleGAN2-ADA does, instead of wrapping the networks in ``DistributedDataParallel``: DDP's
reducer does not support the ``torch.autograd.grad`` double backward of the gradient penalty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from inpaintkit.training_state import rng_tensors


@dataclass
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # init_distributed created the process group (and close destroys it)

    @property
    def main(self) -> bool:
        """This is rank 0: the process that writes files, logs and prints."""
        return self.rank == 0

    def print0(self, message: str) -> None:
        """Print ``message`` on rank 0 only (one line per job, not one per rank)."""
        if self.main:
            print(message)

    def all_true(self, flag: torch.Tensor) -> bool:
        """Whether the bool tensor ``flag`` is true on every rank (a host sync; collective when world > 1)."""
        values = flag.to(torch.int32)
        if self.world > 1:
            dist.all_reduce(values, op=dist.ReduceOp.MIN)
        return bool(values.item())

    def largest(self, value: int, device: torch.device) -> int:
        """The largest of every rank's ``value`` (collective when world > 1; no sync without torchrun)."""
        if self.world == 1:
            return value
        values = torch.tensor([value], device=device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return int(values.item())

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for without torchrun)."""
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if :func:`init_distributed` created it."""
        if self.owns_group:  # NCCL warns about (and may leak) a group left for interpreter exit
            dist.destroy_process_group()


def init_distributed(use_cuda: bool) -> tuple[Distributed, torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; pick this rank's device.

    ``use_cuda``: this rank trains on ``cuda:LOCAL_RANK`` (NCCL), else on the CPU (gloo).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), torch.device("cuda" if use_cuda else "cpu")
    dist_info = Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if use_cuda:
        torch.cuda.set_device(dist_info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        dist_info.owns_group = True
    device = torch.device("cuda", dist_info.local_rank) if use_cuda else torch.device("cpu")
    return dist_info, device


def average_gradients(module: torch.nn.Module, world: int) -> None:
    """Replace every gradient of ``module`` by its mean over the ``world`` ranks (one all_reduce)."""
    if world <= 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_parameters(module: torch.nn.Module, world: int) -> None:
    """Make every rank start from rank 0's weights."""
    if world > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, 0)


def gather_rng(dist_info: Distributed, device: torch.device) -> dict[str, torch.Tensor]:
    """Every rank's generator states as ``rng.rankR.KEY`` tensors (collective when world > 1)."""
    own = rng_tensors(device)
    if dist_info.world == 1:
        return {f"rng.rank0.{k}": v for k, v in own.items()}
    comm = device if device.type == "cuda" else torch.device("cpu")  # NCCL needs CUDA tensors
    gathered: dict[str, torch.Tensor] = {}
    for key, value in own.items():
        parts = [torch.empty_like(value, device=comm) for _ in range(dist_info.world)]
        dist.all_gather(parts, value.to(comm))
        for rank, part in enumerate(parts):
            gathered[f"rng.rank{rank}.{key}"] = part.cpu()
    return gathered
