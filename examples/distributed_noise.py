"""Sharded noise on torch.distributed: each rank draws only its shard of one global tensor.

Run:  torchrun --nproc-per-node 2 examples/distributed_noise.py
(NCCL and one GPU a rank when CUDA is available, else gloo on the CPU.)
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard

import fastrand
import fastrand.distributed as fd

SHAPE = (1, 16, 21, 90, 160)  # a video latent: batch, channels, frames, height, width
SEED = 1234


def main() -> None:
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cuda" if cuda else "cpu", (world,))

    # Every rank passes a generator in the same state; each draws only its frames (Shard(2),
    # as sequence-parallel video models split the latent), with no communication.
    noise = fd.randn(
        *SHAPE, generator=fastrand.Generator(SEED), device_mesh=mesh, placements=[Shard(2)]
    )
    local = noise.to_local()
    print(f"rank {rank}: local shard {tuple(local.shape)} of {tuple(noise.shape)}", flush=True)

    # The shards together are the single-device tensor, bit for bit (the all-gather is only
    # for this check).
    full = noise.full_tensor()
    if rank == 0:
        ref = fastrand.randn(*SHAPE, generator=fastrand.Generator(SEED), device=local.device)
        same = torch.equal(full.view(torch.int32), ref.view(torch.int32))
        print(f"equal to the single-device draw: {same}", flush=True)

    # Data parallel: per-sample noise that does not depend on the world size. Sample i of the
    # global batch draws from stream i, whichever rank holds it.
    per_rank = 4
    for i in range(rank * per_rank, (rank + 1) * per_rank):
        x = fastrand.randn(
            4, 64, 64, generator=fastrand.Generator(SEED, stream=i), device=local.device
        )
        print(f"rank {rank}: sample {i} noise[0, 0, :3] = {x[0, 0, :3].tolist()}", flush=True)

    dist.destroy_process_group()


if __name__ == "__main__":
    main()
