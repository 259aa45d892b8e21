"""One optimisation step of contrastive training: forward, loss, backward, in one pass or by gradient caching."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import all_mean, average_gradients
from ..errors import ConfigError
from ..loss import ClipLoss, SigLipLoss, grad_cache_backward
from ..models import Model, add_logit_bias
from ..models.vision_transformer import VisionTransformer
from .features import tower_parts


class ContrastiveForward(nn.Module):
    """The training forward: normalised features of both towers, the temperature and (SigLIP) bias.

    The temperature and the bias leave through the output so that DistributedDataParallel, which
    wraps this module, averages their gradients like every other parameter's. With the sigmoid loss
    the model gets a learned bias of its own (`models.add_logit_bias`), saved with its weights, unless
    it has one already (a model trained so before).
    """

    def __init__(self, model: Model, loss: str = "clip"):
        super().__init__()
        self.model = model
        # Towers whose inputs arrive as their locked trunk's cached output (`features.py`): only the
        # head on top of it runs here.
        self.cached: frozenset[str] = frozenset()
        if loss == "siglip" and model.logit_bias is None:
            add_logit_bias(model)  # SigLIP's initialisation: t = log 10, b = -10 (Zhai et al., 2023)
            with torch.no_grad():
                model.logit_scale.fill_(math.log(10.0))

    @property
    def logit_bias(self) -> nn.Parameter | None:
        return self.model.logit_bias

    def forward(self, images: torch.Tensor, texts: torch.Tensor):
        if "image" in self.cached:
            image_features = F.normalize(tower_parts(self.model, "image")[1](images), dim=-1)
        else:
            image_features = self.model.encode_image(images, normalize=True)
        if "text" in self.cached:
            text_features = F.normalize(tower_parts(self.model, "text")[1](texts), dim=-1)
        else:
            text_features = self.model.encode_text(texts, normalize=True)
        return image_features, text_features, self.model.logit_scale.exp(), self.model.logit_bias


class StepLoss:
    """The chosen loss on (image features, text features, scale, bias), always in float32."""

    def __init__(self, kind: str = "clip", local_loss: bool = True):
        self.kind = kind
        self.loss = SigLipLoss() if kind == "siglip" else ClipLoss(local_loss=local_loss)

    def __call__(self, image_features, text_features, scale, bias) -> torch.Tensor:
        image_features, text_features = image_features.float(), text_features.float()
        if self.kind == "siglip":
            return self.loss(image_features, text_features, scale.float(), bias.float())
        return self.loss(image_features, text_features, scale.float())


def lock_tower(model: nn.Module, tower: str, unlocked: int = 0) -> list[nn.Module]:
    """Freeze one tower (LiT), all but its last `unlocked` parameter groups (`model.tower_groups`);
    returns the model's frozen modules, to keep in eval mode (frozen batch statistics, no dropout)."""
    groups = model.tower_groups(tower)
    if not 0 <= unlocked < len(groups):
        raise ConfigError(f"the {tower} tower has {len(groups)} groups; leave 0 to {len(groups) - 1} unlocked")
    frozen = [prefix for group in groups[: len(groups) - unlocked] for prefix in group]
    for name, parameter in model.named_parameters():
        if any(name == prefix or name.startswith(prefix + ".") for prefix in frozen):
            parameter.requires_grad_(False)
    return frozen_modules(model)


def frozen_modules(model: nn.Module) -> list[nn.Module]:
    """The largest modules whose parameters are all frozen. Their parameter-free parts (dropout, pooling)
    go with them: a group named by its parameters (a text encoder's embeddings) still has its dropout
    turned off."""
    found = []

    def visit(module: nn.Module) -> None:
        parameters = list(module.parameters())
        if parameters and not any(p.requires_grad for p in parameters):
            found.append(module)
            return
        for child in module.children():
            visit(child)

    visit(model)
    return found


def set_patch_dropout(model: Model, share: float) -> None:
    if share and not isinstance(model.visual, VisionTransformer):
        raise ConfigError("patch_dropout (FLIP) needs a Vision Transformer image tower")
    if isinstance(model.visual, VisionTransformer):
        model.visual.patch_dropout = share


def forward_backward(
    forward: nn.Module,
    head: ContrastiveForward,
    loss_fn: StepLoss,
    images: torch.Tensor,
    texts: torch.Tensor,
    autocast: AbstractContextManager,
    micro_batch_size: int | None,
    parameters: list[nn.Parameter],
) -> torch.Tensor:
    """Accumulate the step's gradients (averaged over processes); return the global mean loss.

    `forward` is `head`, possibly wrapped in DistributedDataParallel or torch.compile. With
    `micro_batch_size`, gradient caching encodes that many pairs at a time; it runs outside
    DistributedDataParallel (whose hooks expect one backward per forward) and averages gradients itself.
    """
    if micro_batch_size is None or micro_batch_size >= images.shape[0]:
        with autocast:
            image_features, text_features, scale, bias = forward(images, texts)
        loss = loss_fn(image_features, text_features, scale, bias)
        loss.backward()
    else:

        def encode(image_part, text_part):
            with autocast:
                image_features, text_features, _, _ = head(image_part, text_part)
            return image_features.float(), text_features.float()

        def batch_loss(image_features, text_features):
            return loss_fn(image_features, text_features, head.model.logit_scale.exp(), head.logit_bias)

        loss = grad_cache_backward(head, encode, batch_loss, images, texts, micro_batch_size)
        average_gradients(parameters)
    return all_mean(loss.detach())
