"""CLIP from towers of other libraries: a timm/torchvision image backbone and a `transformers` text
encoder, joined by projection heads into one embedding space (LiT, Zhai et al. 2022).

It has the interface of `CLIP` (`encode_image`, `encode_text`, `forward`, `tokenizer`, `image_size`,
`image_mean`, `tower_groups`, ...), so zero-shot, evaluation, embedding, search and training use it
unchanged. Its configuration holds everything needed to rebuild it offline, the text tower's
`transformers` configuration and tokenizer included, so a checkpoint is one self-contained file.
Building it needs the `towers` extra (timm, transformers); importing this module does not.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..transforms import IMAGENET_MEAN, IMAGENET_STD
from .clip import MAX_LOGIT_SCALE

ARCHITECTURE = "towers"
PROJECTIONS = ("linear", "mlp")


@dataclass(frozen=True)
class ImageTowerConfig:
    library: str = "timm"  # "timm" or "torchvision"
    name: str = "efficientnet_lite0"
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN  # the normalisation the backbone was trained with
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(self.mean))
        object.__setattr__(self, "std", tuple(self.std))


@dataclass(frozen=True)
class TextTowerConfig:
    hf_config: dict[str, Any] = field(default_factory=dict)  # the encoder's `transformers` config, as a dict
    tokenizer: str = ""  # its fast tokenizer, as tokenizer.json text
    pad_id: int = 0
    pooling: str = "mean"  # "mean" over real tokens (sentence-transformers) or "cls"
    context_length: int = 77


@dataclass(frozen=True)
class TowersConfig:
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    embed_dim: int = 512
    projection: str = "linear"  # "linear", or "mlp" (Linear-GELU-Linear)
    # False: the image tower's own features are the shared space (LiT's setup, for a locked image
    # tower): no image head, embed_dim is the backbone's width, only the text side learns to map.
    image_head: bool = True
    architecture: str = ARCHITECTURE

    def __post_init__(self) -> None:
        if isinstance(self.image, dict):
            object.__setattr__(self, "image", ImageTowerConfig(**self.image))
        if isinstance(self.text, dict):
            object.__setattr__(self, "text", TextTowerConfig(**self.text))
        if self.projection not in PROJECTIONS:
            raise ValueError(f"unknown projection {self.projection!r}; choose from {PROJECTIONS}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TowersConfig:
        return cls(**data)


def is_towers_config(data: dict[str, Any] | None) -> bool:
    return bool(data) and data.get("architecture") == ARCHITECTURE


def _projection(width: int, embed_dim: int, kind: str) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, embed_dim))
    return nn.Linear(width, embed_dim, bias=False)


class TowersCLIP(nn.Module):
    def __init__(self, config: TowersConfig):
        super().__init__()
        from ..towers.image import ImageTower
        from ..towers.text import TextTower

        self.config = config
        self.visual = ImageTower(config.image.library, config.image.name)
        self.text = TextTower(config.text.hf_config, config.text.pooling, config.text.pad_id)
        if not config.image_head and config.embed_dim != self.visual.features:
            self.config = config = dataclasses.replace(config, embed_dim=self.visual.features)
        self.image_projection = (
            _projection(self.visual.features, config.embed_dim, config.projection)
            if config.image_head
            else nn.Identity()
        )
        self.text_projection = _projection(self.text.width, config.embed_dim, config.projection)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def dtype(self) -> torch.dtype:
        return self.logit_scale.dtype

    @property
    def image_size(self) -> int:
        return self.config.image.image_size

    @property
    def image_mean(self) -> tuple[float, float, float]:
        return self.config.image.mean

    @property
    def image_std(self) -> tuple[float, float, float]:
        return self.config.image.std

    @property
    def context_length(self) -> int:
        return self.config.text.context_length

    @property
    def tokenizer(self):
        from ..towers.text import HFTokenize

        text = self.config.text
        return HFTokenize(text.tokenizer, text.context_length, text.pad_id)

    def tower_groups(self, tower: str) -> list[list[str]]:
        """The tower's parameter groups in forward order (see `CLIP.tower_groups`). The projection
        heads are the joining layers and belong to neither tower: locking leaves them trainable."""
        if tower == "image":
            return self.visual.groups("visual.")
        if tower == "text":
            return self.text.groups("text.")
        raise ValueError(f"unknown tower {tower!r}; choose 'image' or 'text'")

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.visual.set_grad_checkpointing(enabled)
        self.text.set_grad_checkpointing(enabled)

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.image_projection(self.visual(image.to(self.dtype)))  # N 3 H W -> N F -> N E
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        if text.ndim != 2:
            raise ValueError(f"text must be token ids of shape (batch, length), got shape {tuple(text.shape)}")
        features = self.text_projection(self.text(text))  # N L -> N D -> N E
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits_per_image, logits_per_text): exp(t) * cosine similarity, exp(t) capped at 100."""
        image_features = self.encode_image(image, normalize=True)
        text_features = self.encode_text(text, normalize=True)
        logits_per_image = self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE) * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()
