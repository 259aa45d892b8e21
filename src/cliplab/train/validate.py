"""Validation during training: contrastive loss and retrieval recall on a held-out captioned source."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F

from ..data import BadSample, Source, check_caption
from ..encode import embed_images, embed_texts
from ..errors import SourceError
from ..evaluate import retrieval_metrics
from ..models import Model, logit_scale, model_device
from .features import CachedTower, tower_parts


class ValidationSet:
    """Every image of a source with every one of its captions; bad images and captions are left out and counted.

    A locked tower's cached trunk output (`features.py`) stands in for running it: only its head runs.
    """

    def __init__(
        self,
        source: Source,
        transform: Callable,
        workers: int = 0,
        image_cache: CachedTower | None = None,
        text_cache: CachedTower | None = None,
    ):
        self.items, self.transform, self.workers = source.items, transform, workers
        self.image_cache, self.text_cache = image_cache, text_cache
        self.skipped: Counter = Counter()

    @torch.no_grad()
    def evaluate(
        self,
        model: Model,
        batch_size: int,
        autocast: AbstractContextManager | None = None,
        loss_batch: int | None = None,
    ) -> dict[str, float]:
        """Recall both ways and the loss. `batch_size`: how many images or captions are encoded at once;
        `loss_batch` (default `batch_size`): the training's global batch, which the loss is averaged over
        (one process validates for all, so the figure must not depend on how many share the training)."""
        if self.image_cache is not None:
            kept = [i for i in range(len(self.items)) if i not in self.image_cache.bad]
            self.skipped = Counter(self.image_cache.bad.values())
            image_features = _head(model, "image", self.image_cache.features[kept], batch_size, autocast)
        else:
            images = embed_images(model, self.items, batch_size, self.workers, self.transform, autocast=autocast)
            self.skipped = Counter(skip.reason for skip in images.skipped)
            kept, image_features = images.kept.tolist(), images.features
        if not kept:
            raise SourceError("no validation image could be read")
        captions, rows, owners = [], [], []
        for position, index in enumerate(kept):
            for choice, caption in enumerate(self.items[index].captions):
                try:
                    captions.append(check_caption(caption))
                    owners.append(position)
                except BadSample as bad:
                    self.skipped[bad.reason] += 1
                    continue
                if self.text_cache is not None:
                    rows.append(self.text_cache.row(index, choice))
        if self.text_cache is not None:
            texts = _head(model, "text", self.text_cache.features[rows], batch_size, autocast)
        else:
            texts = embed_texts(model, captions, batch_size, autocast=autocast)
        owners_tensor = torch.tensor(owners)
        metrics = {
            f"val/{name}": value for name, value in retrieval_metrics(image_features, texts, owners_tensor).items()
        }
        metrics["val/loss"] = self._loss(model, image_features, texts, owners_tensor, loss_batch or batch_size)
        return metrics

    @staticmethod
    def _loss(model: Model, images: torch.Tensor, texts: torch.Tensor, owners: torch.Tensor, batch_size: int) -> float:
        """The training loss on (image, first caption) pairs, in batches of the training's global batch size.

        Computed here in one process (not through ClipLoss, which would gather across processes).
        """
        with_captions = torch.unique(owners)  # images whose captions survived, ascending
        first_caption = torch.searchsorted(owners, with_captions)  # owners is sorted
        pair_images, pair_texts = images[with_captions], texts[first_caption]
        size = min(batch_size, len(with_captions))
        scale = logit_scale(model).float().cpu()
        losses = []
        for start in range(0, len(with_captions) - size + 1, size):
            logits = scale * pair_images[start : start + size] @ pair_texts[start : start + size].t()
            labels = torch.arange(size)
            losses.append(((F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2).item())
        return sum(losses) / len(losses)


def _head(
    model: Model, tower: str, trunk: torch.Tensor, batch_size: int, autocast: AbstractContextManager | None
) -> torch.Tensor:
    """Normalised embeddings from a tower's cached trunk output, through its head."""
    _, head = tower_parts(model, tower)
    device, parts = model_device(model), []
    was_training = head.training
    head.eval()
    try:
        for start in range(0, len(trunk), max(1, batch_size)):
            with autocast or nullcontext():
                features = head(trunk[start : start + batch_size].to(device))
            parts.append(F.normalize(features.float(), dim=-1).cpu())
    finally:
        head.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, model.embed_dim)
