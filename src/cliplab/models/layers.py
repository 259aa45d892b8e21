"""Transformer building blocks shared by the image and text towers.

Parameter names follow OpenAI's `clip/model.py` exactly (`ln_1`, `attn.in_proj_weight`,
`mlp.c_fc`, ...) so released state dicts load with `strict=True`. Unlike OpenAI's code,
activations stay batch-first (N, L, D) from end to end: no LND permutes, and attention goes
through `scaled_dot_product_attention` with a plain softmax(QK^T)V path behind the same signature.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from ..errors import ConfigError

# An attention function takes q, k, v of shape (N, H, L, Dh) and returns (N, H, Lq, Dh).
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """PyTorch's fused kernel (flash / memory-efficient on GPUs, a fused C++ path on CPU)."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """softmax(QK^T / sqrt(d) + mask) V, written out: the definition the fused kernels must match."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # N H Lq Lk
    if causal:
        lq, lk = scores.shape[-2:]
        future = torch.ones(lq, lk, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    return scores.softmax(dim=-1) @ v


ATTENTION_FUNCTIONS: dict[str, AttentionFn] = {"sdpa": sdpa_attention, "reference": reference_attention}


def set_attention(model: nn.Module, name: str) -> nn.Module:
    """Switch every attention layer of `model` to the named implementation ("sdpa" or "reference")."""
    if name not in ATTENTION_FUNCTIONS:
        raise ValueError(f"unknown attention implementation {name!r}; choose from {sorted(ATTENTION_FUNCTIONS)}")
    for module in model.modules():
        if hasattr(module, "attention_fn"):
            module.attention_fn = ATTENTION_FUNCTIONS[name]
    return model


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype, as OpenAI's fp16 checkpoints expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


QUICK_GELU_SCALE = 1.702


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation OpenAI's released CLIP weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(QUICK_GELU_SCALE * x)


def make_activation(name: str) -> nn.Module:
    if name == "quick_gelu":
        return QuickGELU()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {name!r}; choose 'quick_gelu' or 'gelu'")


class MultiheadSelfAttention(nn.Module):
    """Self-attention with `nn.MultiheadAttention`'s parameters (packed `in_proj_weight`), batch-first."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ConfigError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)
        self.attention_fn: AttentionFn = sdpa_attention
        # nn.MultiheadAttention's own initialisation, so unset weights match OpenAI/OpenCLIP's.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        n, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # N L 3D
        qkv = qkv.view(n, length, 3, self.heads, width // self.heads)  # N L 3 H Dh
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (N H L Dh)
        out = self.attention_fn(q, k, v, causal)  # N H L Dh
        out = out.transpose(1, 2).reshape(n, length, width)  # N L D
        return self.out_proj(out)


class MLP(nn.Sequential):
    """c_fc -> activation -> c_proj, under OpenAI's names (`mlp.c_fc`, `mlp.c_proj`).

    QuickGELU is computed with its scale folded into the two matrix products: since
    x * sigmoid(1.702 x) = silu(1.702 x) / 1.702, c_fc runs as addmm with alpha = beta = 1.702, the
    activation is one fused silu pass (in place at inference) and c_proj divides by 1.702 through
    its alpha. Same maths as the Sequential's own forward (`plain_forward`); only rounding differs,
    and the three elementwise passes of QuickGELU become one.
    """

    def __init__(self, width: int, hidden: int, activation: str):
        super().__init__(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, hidden)),
                    ("gelu", make_activation(activation)),
                    ("c_proj", nn.Linear(hidden, width)),
                ]
            )
        )

    def plain_forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.gelu, QuickGELU):
            return self.plain_forward(x)
        rows = x.reshape(-1, x.shape[-1])  # N L D -> (N*L) D
        hidden = torch.addmm(
            self.c_fc.bias, rows, self.c_fc.weight.t(), beta=QUICK_GELU_SCALE, alpha=QUICK_GELU_SCALE
        )  # 1.702 * c_fc(x)
        hidden = F.silu(hidden, inplace=not (torch.is_grad_enabled() and hidden.requires_grad))
        out = torch.addmm(self.c_proj.bias, hidden, self.c_proj.weight.t(), alpha=1 / QUICK_GELU_SCALE)
        return out.view(*x.shape[:-1], out.shape[-1])  # (N*L) D -> N L D


class ResidualAttentionBlock(nn.Module):
    """Pre-LayerNorm block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int, activation: str = "quick_gelu", mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = LayerNorm(width)
        self.attn = MultiheadSelfAttention(width, heads)
        self.ln_2 = LayerNorm(width)
        self.mlp = MLP(width, hidden, activation)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of residual attention blocks (`resblocks.{i}` as in OpenAI's checkpoints)."""

    def __init__(self, width: int, layers: int, heads: int, activation: str = "quick_gelu"):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, activation) for _ in range(layers)])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        for block in self.resblocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, causal, use_reentrant=False)
            else:
                x = block(x, causal=causal)
        return x


def init_transformer_(transformer: Transformer) -> None:
    """OpenAI's initialisation of a transformer stack (used for the text tower)."""
    width, layers = transformer.width, transformer.layers
    proj_std = (width**-0.5) * ((2 * layers) ** -0.5)
    attn_std = width**-0.5
    fc_std = (2 * width) ** -0.5
    for block in transformer.resblocks:
        nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
        nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
        nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
        nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
