"""One process or several (``torchrun``): device choice, process group, and sharding of each epoch's order.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process joins a group (NCCL on CUDA, gloo on CPU), trains on its
shard of the same seeded permutation and averages gradients through DistributedDataParallel; rank 0 alone
writes outputs. The same code runs on a laptop CPU with one process and no group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from unirep_errors import InvalidParameterError


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: the GPU when there is one; ``cuda`` without a GPU is a clear error, not a crash later."""
    name = name.strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidParameterError("--device cuda was asked for but no CUDA GPU is visible")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    if name != "cpu":
        raise InvalidParameterError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device("cpu")


def threads_each(processes: int) -> int:
    """Torch threads for each of ``processes`` that share this machine's cores (at least one)."""
    return max(1, (os.cpu_count() or 1) // processes)


def setup(device: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, dev)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shard_order(n: int, epoch: int, seed: int, d: Dist) -> list[int]:
    """This process's indices for ``epoch``: a seeded permutation, padded to a multiple of the world size
    (so every process runs the same number of steps), then every ``world``-th index from ``rank``."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    if d.world > 1:
        pad = (-n) % d.world
        order += order[:pad]
    return order[d.rank :: d.world]


def all_sum(values: list[float], d: Dist) -> list[float]:
    if not d.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return [float(v) for v in t]


def broadcast(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
