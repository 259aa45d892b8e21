"""CLIP: an image tower and a causal text transformer projected into one embedding space."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..tokenizer import BPETokenize
from .config import CLIPConfig
from .layers import LayerNorm, Transformer, init_transformer_
from .modified_resnet import ModifiedResNet
from .protocol import SIGLIP_INIT_BIAS, logits
from .vision_transformer import VisionTransformer

# Texts per length bucket when a batch is split by length: enough rows for efficient matrix products.
TEXT_BUCKET_ROWS = 64


class CLIP(nn.Module):
    """OpenAI's CLIP with OpenAI's parameter names; `CLIP(get_config("ViT-B/32"))`."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        vision, text = config.vision, config.text
        if vision.is_resnet:
            self.visual: nn.Module = ModifiedResNet(
                layers=vision.layers,
                output_dim=config.embed_dim,
                heads=vision.heads,
                image_size=vision.image_size,
                width=vision.width,
            )
        else:
            self.visual = VisionTransformer(
                image_size=vision.image_size,
                patch_size=vision.patch_size,
                width=vision.width,
                layers=vision.layers,
                heads=vision.heads,
                output_dim=config.embed_dim,
                activation=config.activation,
            )
        self.transformer = Transformer(text.width, text.layers, text.heads, config.activation)
        self.token_embedding = nn.Embedding(text.vocab_size, text.width)
        self.positional_embedding = nn.Parameter(torch.empty(text.context_length, text.width))
        self.ln_final = LayerNorm(text.width)
        self.text_projection = nn.Parameter(torch.empty(text.width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        # SigLIP's learned bias, for models trained with the sigmoid loss (`models.add_logit_bias`)
        self.register_parameter(
            "logit_bias", nn.Parameter(torch.tensor(SIGLIP_INIT_BIAS)) if config.logit_bias else None
        )
        # Run the text tower only up to the longest end-of-text position of each batch. The mask is
        # causal, so later positions never reach the feature: same result, less work.
        self.trim_text_padding = True
        self._init_text_parameters()

    def _init_text_parameters(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        init_transformer_(self.transformer)
        nn.init.normal_(self.text_projection, std=self.transformer.width**-0.5)

    @property
    def dtype(self) -> torch.dtype:
        return self.token_embedding.weight.dtype

    @property
    def image_size(self) -> int:
        return self.config.vision.image_size

    @property
    def context_length(self) -> int:
        return self.config.text.context_length

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def tokenizer(self) -> BPETokenize:
        """Texts -> token ids for `encode_text` (OpenAI's BPE at this model's context length)."""
        return BPETokenize(self.context_length)

    # The preprocessing the weights expect (`transforms.model_transform` reads these): OpenAI's for
    # nearly every CLIP, another where the configuration says so.
    @property
    def image_mean(self) -> tuple[float, float, float]:
        return self.config.image_mean

    @property
    def image_std(self) -> tuple[float, float, float]:
        return self.config.image_std

    @property
    def image_resize(self) -> str:
        return self.config.image_resize

    def tower_groups(self, tower: str) -> list[list[str]]:
        """A tower's parameter groups in forward order, as name prefixes: the stem, each block, the head.

        Locking a tower with its last N groups left trainable (OpenCLIP's `lock_image_unlocked_groups`)
        reads these. Here the projections belong to the towers, so a locked tower's stays frozen too.
        """
        if tower == "image":
            visual = self.visual
            if isinstance(visual, VisionTransformer):
                stem = ["visual.conv1", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre"]
                blocks = [[f"visual.transformer.resblocks.{i}"] for i in range(len(visual.transformer.resblocks))]
                return [stem, *blocks, ["visual.ln_post", "visual.proj"]]
            stages = ("layer1", "layer2", "layer3", "layer4")
            stem = [f"visual.{name}" for name, _ in visual.named_children() if name not in (*stages, "attnpool")]
            blocks = [[f"visual.{stage}.{i}"] for stage in stages for i in range(len(getattr(visual, stage)))]
            return [stem, *blocks, ["visual.attnpool"]]
        if tower == "text":
            blocks = [[f"transformer.resblocks.{i}"] for i in range(len(self.transformer.resblocks))]
            return [["token_embedding", "positional_embedding"], *blocks, ["ln_final", "text_projection"]]
        raise ConfigError(f"unknown tower {tower!r}; choose 'image' or 'text'")

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.transformer.grad_checkpointing = enabled
        if isinstance(self.visual, VisionTransformer):
            self.visual.transformer.grad_checkpointing = enabled

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.visual(image.to(self.dtype))  # N 3 H W -> N E
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        if text.ndim != 2:
            raise ValueError(f"text must be token ids of shape (batch, length), got shape {tuple(text.shape)}")
        if text.shape[1] > self.context_length:
            raise ValueError(
                f"text has {text.shape[1]} positions; this model's context length is {self.context_length}"
            )
        eot = text.argmax(dim=-1)  # the end-of-text token has the highest id in each row
        if self.trim_text_padding and text.shape[0] > TEXT_BUCKET_ROWS:
            # Sorted by length and cut into buckets, each run only to its own longest text: a batch
            # mixing short and long texts pays for each length, not N times for its longest one.
            order = eot.argsort()
            parts = [self._encode_tokens(text[rows], eot[rows]) for rows in order.split(TEXT_BUCKET_ROWS)]
            features = torch.cat(parts)[order.argsort()]  # back to the batch's order
        else:
            features = self._encode_tokens(text, eot)
        return F.normalize(features, dim=-1) if normalize else features

    def _encode_tokens(self, text: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        if self.trim_text_padding and text.shape[0]:
            text = text[:, : int(eot.max()) + 1]
        x = self.token_embedding(text).to(self.dtype)  # N L D
        x = x + self.positional_embedding[: text.shape[1]].to(self.dtype)
        x = self.transformer(x, causal=True)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection  # N E

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits_per_image, logits_per_text): exp(t) * cosine similarity (exp(t) capped at 100), plus
        the learned bias of a model trained with the sigmoid loss."""
        logits_per_image = logits(
            self, self.encode_image(image, normalize=True), self.encode_text(text, normalize=True)
        )
        return logits_per_image, logits_per_image.t()
