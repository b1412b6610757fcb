"""Multi-process training without changing the result: rank and world size from torchrun or srun, gradient
averaging, and a differentiable all-gather for losses that need the whole global batch.

Ranks come from torchrun's RANK / WORLD_SIZE / LOCAL_RANK, or from srun's SLURM_PROCID / SLURM_STEP_NUM_TASKS /
SLURM_LOCALID (the step's task count, so that a batch script that did not call srun stays single-process).
MASTER_ADDR / MASTER_PORT default to SLURM_LAUNCH_NODE_IPADDR (or 127.0.0.1) and a port derived from SLURM_JOB_ID.
Backend: NCCL on GPUs, gloo on CPU. Every training stage learns how it was launched from `init_distributed` alone:
no stage takes a launcher flag, so the same command runs under plain `ppcseg`, torchrun and srun.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ppcseg.utils.errors import InputError
from ppcseg.utils.runtime import env_ranks


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group when launched with several processes; pick this process's device.

    Under srun, torchrun's RANK / WORLD_SIZE / LOCAL_RANK are exported too: libraries read only those (mmengine's
    DDP wrapper takes its device from LOCAL_RANK).
    """
    rank, world_size, local_rank = env_ranks()
    if world_size > 1:
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world_size))
        os.environ.setdefault("LOCAL_RANK", str(local_rank))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
        os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000))
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, rank=rank, world_size=world_size, device_id=device if backend == "nccl" else None
        )
    return DistInfo(rank, world_size, local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def local_slice(global_batch: int, info: DistInfo) -> slice:
    """This rank's share of a global batch; InputError if it does not divide evenly."""
    if global_batch % info.world_size:
        raise InputError(f"cam.batch_size: {global_batch} is not divisible by the {info.world_size} processes")
    per_rank = global_batch // info.world_size
    return slice(info.rank * per_rank, (info.rank + 1) * per_rank)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward sums every rank's gradient of this rank's slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.size = rank, tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """The global batch of `tensor` on every rank (identity with one process), differentiable.

    If every rank computes the same loss L on the gathered batch, each rank's slice receives world_size * dL/dslice;
    after `average_gradients` the parameters hold exactly dL/dtheta.
    """
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return tensor
    return _GatherWithGrad.apply(tensor)


def all_gather_nograd(tensor: torch.Tensor) -> torch.Tensor:
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Mean of each gradient over the ranks, in one flat all-reduce (deterministic order, no DDP hooks)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Mean of scalar logs over the ranks (for the loss CSV); `device` must suit the backend (CUDA for NCCL)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist(), strict=True))
