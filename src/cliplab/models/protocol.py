"""What every cliplab model offers, and the one place its similarity scores are computed.

Both model families, `CLIP` (OpenAI's architecture) and `cliplab.towers.TowersCLIP` (towers from
other libraries), satisfy `Model`; zero-shot, evaluation, embedding, search and training are written
against it. Scores are exp(t) times the cosine similarity, exp(t) capped at 100 as the paper does,
plus the learned bias of a model trained with SigLIP's sigmoid loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

MAX_LOGIT_SCALE = 100.0
SIGLIP_INIT_BIAS = -10.0  # SigLIP's initialisation (Zhai et al., 2023), with exp(t) = 10


@runtime_checkable
class Model(Protocol):
    """A CLIP: two towers into one embedding space, with everything needed to feed them."""

    config: Any  # a dataclass with `to_dict()`; saved with the weights
    logit_scale: nn.Parameter  # t, with exp(t) the multiplier of cosine similarities
    logit_bias: nn.Parameter | None  # SigLIP's learned bias, or None

    @property
    def image_size(self) -> int: ...

    @property
    def image_mean(self) -> tuple[float, float, float]: ...

    @property
    def image_std(self) -> tuple[float, float, float]: ...

    @property
    def context_length(self) -> int: ...

    @property
    def embed_dim(self) -> int: ...

    @property
    def tokenizer(self) -> Callable[[str | Sequence[str]], torch.Tensor]:
        """Texts -> (N, context_length) token ids for `encode_text`."""
        ...

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...

    def tower_groups(self, tower: str) -> list[list[str]]: ...

    def set_grad_checkpointing(self, enabled: bool = True) -> None: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def eval(self) -> Model: ...


def model_device(model: Model) -> torch.device:
    return next(model.parameters()).device


def logit_scale(model: Model) -> torch.Tensor:
    """exp(t), capped at 100."""
    return model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)


def logits(model: Model, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """(N images, M texts) scores of normalised features: exp(t) * cosine (+ the model's bias)."""
    scale = logit_scale(model).to(image_features)
    scores = scale * image_features @ text_features.t()
    bias = getattr(model, "logit_bias", None)
    return scores if bias is None else scores + bias.to(scores)


def add_logit_bias(model: Model, value: float = SIGLIP_INIT_BIAS) -> nn.Parameter:
    """Give `model` a learned logit bias (as SigLIP's loss needs), recorded in its configuration."""
    reference = model.logit_scale
    model.logit_bias = nn.Parameter(torch.tensor(value, dtype=reference.dtype, device=reference.device))
    model.config = dataclasses.replace(model.config, logit_bias=True)
    return model.logit_bias
