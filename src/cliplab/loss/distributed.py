"""Gathering features across processes with gradients, on any torch.distributed backend."""

from __future__ import annotations

import torch
import torch.distributed as dist


def rank_and_world_size() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) outside distributed training."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each rank the sum, over all ranks, of the gradient of its slice.

    That sum is what makes a loss computed on gathered features give the gradients of one process
    holding the whole batch (once the usual data-parallel averaging of parameter gradients is done).
    NCCL does it with reduce_scatter; gloo has none, so there the full gradient is all-reduced and sliced.
    """

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        rank, world = rank_and_world_size()
        ctx.rank, ctx.world = rank, world
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        if dist.get_backend() == dist.Backend.NCCL:
            out = torch.empty_like(grad.chunk(ctx.world)[0])
            dist.reduce_scatter_tensor(out, grad, op=dist.ReduceOp.SUM)
            return out
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.chunk(ctx.world)[ctx.rank].contiguous()


def gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """The concatenation of every rank's `local` (equal shapes on all ranks), differentiable."""
    _, world = rank_and_world_size()
    return local if world == 1 else _GatherWithGrad.apply(local)
