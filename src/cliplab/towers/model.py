"""CLIP from towers of other libraries: a timm/torchvision image backbone and a `transformers` text
encoder, joined by projection heads into one embedding space (LiT, Zhai et al. 2022).

It satisfies `cliplab.models.Model`, so zero-shot, evaluation, embedding, search and training use it
as they use `CLIP`. Building it needs the `towers` extra (timm, transformers); importing this module
does not.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models.protocol import SIGLIP_INIT_BIAS, logits
from ..models.weights import load_weights
from .config import TowersConfig
from .image import ImageTower
from .text import HFTokenize, TextTower


def _projection(width: int, embed_dim: int, kind: str) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, embed_dim))
    return nn.Linear(width, embed_dim, bias=False)


class TowersCLIP(nn.Module):
    def __init__(self, config: TowersConfig):
        super().__init__()
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
        self.register_parameter(
            "logit_bias", nn.Parameter(torch.tensor(SIGLIP_INIT_BIAS)) if config.logit_bias else None
        )

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
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def tokenizer(self) -> HFTokenize:
        text = self.config.text
        return HFTokenize(text.tokenizer, text.context_length, text.pad_id)

    def tower_groups(self, tower: str) -> list[list[str]]:
        """The tower's parameter groups in forward order (see `CLIP.tower_groups`). The projection
        heads are the joining layers and belong to neither tower: locking leaves them trainable."""
        if tower == "image":
            return self.visual.groups("visual.")
        if tower == "text":
            return self.text.groups("text.")
        raise ConfigError(f"unknown tower {tower!r}; choose 'image' or 'text'")

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
        """(logits_per_image, logits_per_text), as `CLIP.forward`."""
        logits_per_image = logits(
            self, self.encode_image(image, normalize=True), self.encode_text(text, normalize=True)
        )
        return logits_per_image, logits_per_image.t()


def build_towers_model(
    state_dict: Mapping[str, torch.Tensor], config: TowersConfig, image_size: int | None = None
) -> TowersCLIP:
    """A `TowersCLIP` holding `state_dict`. `image_size` runs it at another resolution, which
    convolutional backbones (the usual image towers) take as they are."""
    if image_size is not None and image_size != config.image.image_size:
        config = dataclasses.replace(config, image=dataclasses.replace(config.image, image_size=image_size))
    model = TowersCLIP(config)
    load_weights(model, state_dict)
    return model.eval()
