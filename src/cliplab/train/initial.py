"""Where a run's weights start: fresh, a checkpoint to fine-tune, or pretrained towers from other libraries."""

from __future__ import annotations

from torch import nn

from ..loading import load_model
from ..models import create_model
from .config import TrainConfig


def initial_model(config: TrainConfig) -> nn.Module:
    """The model a run starts from (call with torch's seed set: fresh weights and heads are drawn here).

    - `image_tower` + `text_tower`: pretrained backbones joined by fresh projection heads (LiT);
    - `init_from`: every weight of a checkpoint, optionally at a new `image_size` (the paper's
      ViT-L/14@336px was one more epoch of the 224 px model at 336 px);
    - otherwise: fresh weights of the architecture `model`.
    """
    if config.image_tower:
        from ..towers import towers_model

        return towers_model(
            config.image_tower,
            config.text_tower,
            config.image_tower_weights,
            embed_dim=config.embed_dim,
            projection=config.projection,
            image_head=config.image_head,
            pooling=config.text_pooling,
            image_size=config.image_size or 224,
            image_mean=config.image_mean,
            image_std=config.image_std,
        )
    if config.init_from:
        return load_model(config.init_from, image_size=config.image_size)
    if config.image_size:
        return create_model(config.model, image_size=config.image_size)
    return create_model(config.model)
