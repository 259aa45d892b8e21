"""From names and state dicts to models.

`build_model(state_dict)` reads the whole architecture off tensor shapes, as OpenAI's
`clip.build_model` does, so any OpenAI-layout state dict (OpenAI's own releases, OpenCLIP's
OpenAI-compatible models, cliplab's) becomes a model without a configuration file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, ConfigError
from .clip import CLIP
from .config import CLIPConfig, TextConfig, VisionConfig, get_config
from .weights import check_fits, load_weights

# Entries in OpenAI's TorchScript state dicts that are not parameters of the model.
NON_PARAMETER_KEYS = ("input_resolution", "context_length", "vocab_size")
HEAD_WIDTH = 64  # every released CLIP uses 64-dimensional attention heads


def create_model(name: str | CLIPConfig, **overrides: Any) -> CLIP:
    """A randomly initialised model of a built-in architecture, e.g. `create_model("ViT-B/32")`.

    Overrides replace configuration fields: `image_size=336`, `activation="gelu"`,
    `context_length=32`, `embed_dim=256`, `vision={"layers": 6}`, `text={"width": 256}`.
    """
    config = name.with_overrides(**overrides) if isinstance(name, CLIPConfig) else get_config(name, **overrides)
    return CLIP(config)


def build_model(
    state_dict: Mapping[str, torch.Tensor],
    image_size: int | None = None,
    activation: str = "quick_gelu",
    config: CLIPConfig | None = None,
) -> CLIP:
    """A model holding `state_dict`, its architecture inferred from tensor shapes (or given as `config`).

    `image_size` runs the checkpoint at another resolution than it was trained at, with its
    positional embedding interpolated (as the paper's 224 -> 336 px fine-tune started).
    Released weights used QuickGELU; pass `activation="gelu"` for OpenCLIP's GELU models.
    """
    state_dict = {k: v for k, v in state_dict.items() if k not in NON_PARAMETER_KEYS}
    config = config or infer_config(state_dict, activation=activation)
    if image_size is not None and image_size != config.vision.image_size:
        state_dict = resize_positional_embedding(state_dict, config, image_size)
        config = config.with_overrides(image_size=image_size)
    with torch.device("meta"):  # a configuration that does not fit the tensors fails before allocating
        check_fits(CLIP(config), state_dict)
    model = CLIP(config)
    load_weights(model, state_dict)
    return model.eval()


def infer_config(state_dict: Mapping[str, torch.Tensor], activation: str = "quick_gelu") -> CLIPConfig:
    """The CLIPConfig whose parameters have exactly these shapes."""
    try:
        return CLIPConfig(
            embed_dim=state_dict["text_projection"].shape[1],
            vision=_infer_vision(state_dict),
            text=TextConfig(
                context_length=state_dict["positional_embedding"].shape[0],
                vocab_size=state_dict["token_embedding.weight"].shape[0],
                width=state_dict["ln_final.weight"].shape[0],
                heads=state_dict["ln_final.weight"].shape[0] // HEAD_WIDTH,
                layers=_count_blocks(state_dict, r"transformer\.resblocks\.(\d+)\."),
            ),
            activation=activation,
            logit_bias="logit_bias" in state_dict,
        )
    except KeyError as missing:
        raise CheckpointError(
            f"not a CLIP state dict in OpenAI's layout: key {missing} is missing "
            f"(found {len(state_dict)} keys, e.g. {sorted(state_dict)[:5]})"
        ) from None
    except (IndexError, ValueError, TypeError, ZeroDivisionError) as err:  # a tensor of the wrong rank
        raise CheckpointError(f"not a CLIP state dict: its tensors have shapes no CLIP has ({err})") from None


def _infer_vision(sd: Mapping[str, torch.Tensor]) -> VisionConfig:
    if "visual.proj" in sd:  # Vision Transformer
        width, _, patch, _ = sd["visual.conv1.weight"].shape
        grid = math.isqrt(sd["visual.positional_embedding"].shape[0] - 1)
        layers = _count_blocks(sd, r"visual\.transformer\.resblocks\.(\d+)\.")
        return VisionConfig(
            image_size=patch * grid, layers=layers, width=width, patch_size=patch, head_width=HEAD_WIDTH
        )
    # ModifiedResNet: the depth of each stage is its number of distinct block indices
    layers = tuple(_count_blocks(sd, rf"visual\.layer{stage}\.(\d+)\.") for stage in (1, 2, 3, 4))
    grid = math.isqrt(sd["visual.attnpool.positional_embedding"].shape[0] - 1)
    width = sd["visual.layer1.0.conv1.weight"].shape[0]
    return VisionConfig(image_size=grid * 32, layers=layers, width=width, patch_size=None, head_width=HEAD_WIDTH)


def _count_blocks(sd: Mapping[str, Any], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for key in sd if (m := regex.match(key))})


def resize_positional_embedding(
    state_dict: Mapping[str, torch.Tensor], config: CLIPConfig, image_size: int
) -> dict[str, torch.Tensor]:
    """The state dict with its image positional embedding interpolated for `image_size`.

    The first row (class token, or the ResNet's mean token) is kept; the grid is resized
    bicubically with antialiasing, as OpenCLIP's `resize_pos_embed` and timm do (PyTorch's
    antialiased bicubic is PIL's kernel, which differs from the plain one even when upsampling).
    """
    vision = config.vision
    if vision.is_resnet:
        key, stride = "visual.attnpool.positional_embedding", 32
    else:
        key, stride = "visual.positional_embedding", vision.patch_size
    if image_size % stride:
        raise ConfigError(f"image size {image_size} is not a multiple of {stride} for this model")
    old_grid, new_grid = vision.image_size // stride, image_size // stride
    pos = state_dict[key]
    first, grid = pos[:1], pos[1:]  # 1 D, (G*G) D
    grid = grid.float().reshape(1, old_grid, old_grid, -1).permute(0, 3, 1, 2)  # 1 D G G
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid * new_grid, -1).to(pos.dtype)  # (G'*G') D
    return {**state_dict, key: torch.cat([first, grid], dim=0)}
