"""Local embeddings: one vector per patch (ViT) or feature-map cell (ResNet), in the text's space.

A CLIP image tower pools its last layer into one vector; MaskCLIP (Zhou et al., ECCV 2022) showed
that the last block's value path, taken at every position and sent through the same projections,
gives embeddings of each place that compare with text embeddings as the pooled one does. Later
rules change only how the last block mixes positions:

- `maskclip`: each position takes its own value (no mixing). ViT: out_proj(v), then the block's
  residual and feed-forward, `ln_post` and `proj`, as in MaskCLIP's ViT code. ResNet: the attention
  pool's `c_proj(v_proj(x))` at each position, exactly the values the pool averages.
- `sclip` (Wang et al., 2024): correlative self-attention, softmax(q q^T) + softmax(k k^T), in place of
  softmax(q k^T); no residual and no feed-forward in the last block.
- `clearclip` (Lan et al., ECCV 2024): query-query attention softmax(q q^T); no residual, no
  feed-forward.

Everything else is the tower's own computation, on the tower's own weights: the blocks before the
last run unchanged (`tests/test_dense.py` shows the same code with the tower's attention gives back
`encode_image`, and that the tower's attention pool over the ResNet values is `encode_image`).
Towers models (`cliplab.towers`) with a convolutional timm image tower pooled by averaging: each cell
of the backbone's last feature map through the image head (no attention to change, so `method` does not
apply); the mean of the cells' embeddings is `encode_image`, since the head is linear (or applied
after the pooling it commutes with, for no head).

Images run at the model's own size; a model loaded at another resolution (its positional embeddings
resized: `cliplab.load_model(name, image_size=448)`) gives finer maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models import CLIP
from ..models.modified_resnet import ModifiedResNet
from ..models.vision_transformer import VisionTransformer
from ..towers import TowersCLIP

METHODS = ("maskclip", "sclip", "clearclip")
DEFAULT_METHOD = "clearclip"


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    n, length, width = x.shape
    return x.view(n, length, heads, width // heads).transpose(1, 2)  # N H L Dh


def _merge(x: torch.Tensor) -> torch.Tensor:
    n, heads, length, dh = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * dh)


def _mix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rule: str) -> torch.Tensor:
    """The last block's attention under `rule`, on N H L Dh tensors."""
    scale = q.shape[-1] ** -0.5
    if rule == "maskclip":
        return v
    if rule == "tower":  # the model's own attention: for the identity test
        return torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1) @ v
    if rule == "clearclip":
        return torch.softmax(q @ q.transpose(-2, -1) * scale, dim=-1) @ v
    if rule == "sclip":
        mixed = torch.softmax(q @ q.transpose(-2, -1) * scale, dim=-1) + torch.softmax(
            k @ k.transpose(-2, -1) * scale, dim=-1
        )
        return mixed @ v
    raise ConfigError(f"unknown dense method {rule!r}; choose one of {', '.join(METHODS)}")


def vit_tokens(visual: VisionTransformer, pixels: torch.Tensor, rule: str) -> torch.Tensor:
    """(N, 1 + h * w, E): every token through the tower, the last block under `rule`, then `ln_post`, `proj`."""
    n = pixels.shape[0]
    x = visual.embed_patches(pixels)
    x = torch.cat([visual.class_embedding.to(x.dtype).expand(n, 1, -1), x], dim=1)
    x = x + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x)
    last = blocks[-1]
    attn = last.attn
    q, k, v = F.linear(last.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    heads = attn.heads
    out = attn.out_proj(_merge(_mix(_heads(q, heads), _heads(k, heads), _heads(v, heads), rule)))
    if rule in ("maskclip", "tower"):  # MaskCLIP keeps the block's residual and feed-forward
        out = x + out
        out = out + last.mlp(last.ln_2(out))
    return visual.ln_post(out) @ visual.proj


def resnet_values(visual: ModifiedResNet, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """(tokens N (1 + h * w) C, (h, w)): the attention pool's input, the mean token first, with positions."""
    x = visual.stem(pixels.to(visual.conv1.weight.dtype).contiguous(memory_format=torch.channels_last))
    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
    grid = tuple(x.shape[2:])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
    return x + visual.attnpool.positional_embedding.to(x.dtype), grid


def resnet_tokens(visual: ModifiedResNet, pixels: torch.Tensor, rule: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """((N, 1 + h * w, E) under `rule`, (h, w)); for `maskclip`, c_proj(v_proj(x)) at each position."""
    pool = visual.attnpool
    x, grid = resnet_values(visual, pixels)
    v = pool.v_proj(x)
    if rule == "maskclip":
        return pool.c_proj(v), grid
    q, k, heads = pool.q_proj(x), pool.k_proj(x), pool.heads
    return pool.c_proj(_merge(_mix(_heads(q, heads), _heads(k, heads), _heads(v, heads), rule))), grid


def towers_cells(model: TowersCLIP, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """((N, h * w, E) the image head applied to each cell of the backbone's last feature map, (h, w))."""
    trunk = model.visual.trunk
    pool = getattr(getattr(trunk, "global_pool", None), "pool_type", None)
    if not hasattr(trunk, "forward_features") or pool != "avg":
        raise ConfigError(
            "dense maps of a towers model need a timm image tower whose features are averaged over a feature map"
        )
    if not isinstance(model.image_projection, (nn.Identity, nn.Linear)):
        raise ConfigError(
            "dense maps of a towers model need a linear image head (or none): an MLP head does not commute with pooling"
        )
    features = trunk.forward_features(pixels.contiguous(memory_format=torch.channels_last))
    if features.ndim != 4:
        raise ConfigError("dense maps of a towers model need a convolutional image tower (a feature map)")
    grid = tuple(features.shape[2:])
    return model.image_projection(features.flatten(2).transpose(1, 2)), grid


@torch.no_grad()
def local_embeddings(model: CLIP, pixels: torch.Tensor, method: str = DEFAULT_METHOD) -> torch.Tensor:
    """(N, h, w, E) L2-normalised local embeddings of preprocessed images (N 3 H W), in the space of
    `model.encode_text`: h x w patches (ViT) or cells of the last feature map (ResNet, H/32 x W/32)."""
    if method not in METHODS:
        raise ConfigError(f"unknown dense method {method!r}; choose one of {', '.join(METHODS)}")
    visual = getattr(model, "visual", None)
    pixels = pixels.to(model.dtype)
    if isinstance(visual, VisionTransformer):
        tokens = vit_tokens(visual, pixels, method)[:, 1:]
        grid = (pixels.shape[2] // visual.patch_size, pixels.shape[3] // visual.patch_size)
    elif isinstance(visual, ModifiedResNet):
        tokens, grid = resnet_tokens(visual, pixels, method)
        tokens = tokens[:, 1:]
    elif isinstance(model, TowersCLIP):
        tokens, grid = towers_cells(model, pixels)
    else:
        raise ConfigError(
            f"dense maps need a CLIP image tower cliplab knows (ViT or modified ResNet), not {type(visual).__name__}"
        )
    return F.normalize(tokens.float(), dim=-1).reshape(pixels.shape[0], *grid, -1)
