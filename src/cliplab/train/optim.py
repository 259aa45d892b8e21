"""Optimiser, learning-rate schedule and temperature clamp, with the paper's settings as defaults.

The paper (Radford et al., 2021, tables 19-20): AdamW with decoupled weight decay 0.2, beta1 0.9,
beta2 0.98 and eps 1e-6 for the ViTs (0.999 and 1e-8 for the ResNets), a linear warm-up followed by
cosine decay, and the temperature clipped so that logits are scaled by at most 100.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models import MAX_LOGIT_SCALE


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: matrices (decayed) and gains, biases, the temperature and other 1-d tensors (not)."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    model: nn.Module,
    lr: float = 5e-4,
    weight_decay: float = 0.2,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-6,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over `parameter_groups`; `fused=None` picks PyTorch's fused kernel where it exists.

    The fused kernel updates every tensor in one pass instead of a dozen elementwise passes: on a CPU
    it makes the step of a small model (where the 49,408-token embedding dominates) about 5x faster.
    It equals the plain update up to float rounding (tests/test_optim.py).
    """
    groups = parameter_groups(model, weight_decay)
    if fused is None:
        fused = _fused_supported([p for group in groups for p in group["params"]])
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def _fused_supported(params: list[torch.Tensor]) -> bool:
    # CUDA has had the fused kernel since PyTorch 2.0, the CPU since 2.4; both for floating-point tensors.
    cpu_ok = torch.torch_version.TorchVersion(torch.__version__) >= (2, 4)
    return bool(params) and all(
        p.is_floating_point() and (p.device.type == "cuda" or (p.device.type == "cpu" and cpu_ok)) for p in params
    )


def learning_rate(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate at `step` (0-based): linear warm-up to `base_lr`, then cosine decay to `min_lr`.

    A pure function of the step, so a resumed run follows exactly the schedule it left.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (base_lr - min_lr)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@torch.no_grad()
def clamp_logit_scale_(model: nn.Module, max_scale: float = MAX_LOGIT_SCALE) -> None:
    """Clip the learned temperature t so that exp(t) <= max_scale (after every optimiser step)."""
    model.logit_scale.clamp_(0, math.log(max_scale))
