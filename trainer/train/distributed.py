"""DDP with torchrun: `torchrun --nproc_per_node=N -m trainer.train_cli --device cuda ...`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; with WORLD_SIZE > 1 we join the process group
(NCCL on CUDA, Gloo on CPU), each rank trains on its shard of every epoch's permutation, DDP
averages the gradients, and only rank 0 writes checkpoints and shows progress bars.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(local)
    return Dist(rank, world, local)


def teardown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()
