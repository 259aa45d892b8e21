"""Processes and devices: one process, or many launched by torchrun (gloo on CPU, NCCL on GPUs)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .loading import resolve_device


@dataclass(frozen=True)
class Placement:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(preference: str = "auto", timeout: timedelta | None = None) -> Placement:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, ...), if any.

    Multi-node runs need nothing more: torchrun's rendezvous sets the same variables on every node.
    `timeout`: how long a barrier or collective may wait for the slowest process (PyTorch's default: 30
    minutes for gloo, 10 for NCCL).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", **({"timeout": timeout} if timeout else {}))
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return Placement(rank, world, local_rank, device)


def cpu_has_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU computes bfloat16 itself (x86's AVX512-BF16 or AMX, Arm's BF16 extension): True
    or False where Linux's /proc/cpuinfo (or `cpuinfo`, its text) or macOS's sysctl says, else None.
    Without them, bf16 autocast on the CPU is emulated and slower than float32."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return _sysctl_bf16()
    flags = {
        word
        for line in cpuinfo.splitlines()
        if line.split(":")[0].strip() in ("flags", "Features")
        for word in line.split(":", 1)[-1].split()
    }
    if not flags:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def _sysctl_bf16() -> bool | None:
    try:
        done = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"1": True, "0": False}.get(done.stdout.strip())


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, the number of processes): (0, 1) outside a process group."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over processes (itself in one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value


def gather_objects(value: Any) -> list[Any]:
    """Every process's `value`, in rank order (small, picklable Python objects: counters, positions)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        values = [None] * dist.get_world_size()
        dist.all_gather_object(values, value)
        return values
    return [value]


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Data-parallel averaging of gradients, for steps that do not run through DistributedDataParallel."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
