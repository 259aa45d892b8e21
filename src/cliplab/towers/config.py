"""The configuration of a CLIP built from other libraries' towers: plain data, saved in its checkpoint.

It holds everything needed to rebuild the model offline, the text tower's `transformers`
configuration and tokenizer included, so a checkpoint is one self-contained file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..transforms import IMAGENET_MEAN, IMAGENET_STD

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
    logit_bias: bool = False  # a learned bias added to every logit (SigLIP's sigmoid loss)
    architecture: str = ARCHITECTURE

    def __post_init__(self) -> None:
        if isinstance(self.image, dict):
            object.__setattr__(self, "image", ImageTowerConfig(**self.image))
        if isinstance(self.text, dict):
            object.__setattr__(self, "text", TextTowerConfig(**self.text))
        if self.projection not in PROJECTIONS:
            raise ConfigError(f"unknown projection {self.projection!r}; choose from {PROJECTIONS}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def name(self) -> str:
        """A readable name: the image backbone and the text encoder's kind, 'timm:efficientnet_lite0+bert'."""
        return f"{self.image.library}:{self.image.name}+{self.text.hf_config.get('model_type', 'text')}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TowersConfig:
        return cls(**data)


def is_towers_config(data: dict[str, Any] | None) -> bool:
    return bool(data) and data.get("architecture") == ARCHITECTURE
