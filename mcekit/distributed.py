"""PyTorch's own distributed engine (DDP) as launched by ``torchrun``: process group, ranks, helpers.

``torchrun --nproc_per_node=N -m mcekit run CONFIG`` sets WORLD_SIZE, RANK and LOCAL_RANK; a plain
``mcekit run`` sees none of them and runs as a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_world() -> World:
    """The world torchrun describes in the environment (a world of one without torchrun)."""
    return World(int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
                 int(os.environ.get("LOCAL_RANK", "0")))


def is_main_process() -> bool:
    return launched_world().is_main


def init(world: World, device: torch.device) -> None:
    """Join the process group: NCCL on CUDA, gloo on the CPU."""
    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)


def barrier(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.barrier()


def broadcast_module_state(module: torch.nn.Module, world: World) -> None:
    """Make every rank hold rank 0's parameters and buffers (after a rank-0-only change such as a fit)."""
    if not (world.distributed and dist.is_initialized()):
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def all_reduce_mean(value: float, world: World, device: torch.device) -> float:
    if not (world.distributed and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / world.size


def all_true(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank only if true on every rank (so all ranks skip or stop together)."""
    if not (world.distributed and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def gather_keeping_own_grad(tensor: torch.Tensor) -> tuple[list[torch.Tensor], int]:
    """Every rank's tensor (same shape on each) and the world size; only this rank's entry keeps its
    gradient. The gather happens in the forward pass only: a collective inside backward could interleave
    differently with DDP's gradient all-reduce on different ranks. Outside a process group: ([tensor], 1)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [tensor], 1
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[dist.get_rank()] = tensor
    return parts, len(parts)
