"""Validation during training: contrastive loss and retrieval recall on a held-out captioned source."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F

from ..data import BadSample, Source, check_caption
from ..encode import embed_images, embed_texts
from ..errors import SourceError
from ..evaluate import retrieval_metrics
from ..models import Model, logit_scale


class ValidationSet:
    """Every image of a source with every one of its captions; bad images and captions are left out and counted."""

    def __init__(self, source: Source, transform: Callable, workers: int = 0):
        self.items, self.transform, self.workers = source.items, transform, workers
        self.skipped: Counter = Counter()

    @torch.no_grad()
    def evaluate(
        self, model: Model, batch_size: int, autocast: AbstractContextManager | None = None
    ) -> dict[str, float]:
        images = embed_images(model, self.items, batch_size, self.workers, self.transform, autocast=autocast)
        self.skipped = Counter(skip.reason for skip in images.skipped)
        if not len(images.kept):
            raise SourceError("no validation image could be read")
        captions, owners = [], []
        for position, index in enumerate(images.kept.tolist()):
            for caption in self.items[index].captions:
                try:
                    captions.append(check_caption(caption))
                    owners.append(position)
                except BadSample as bad:
                    self.skipped[bad.reason] += 1
        texts = embed_texts(model, captions, batch_size, autocast=autocast)
        owners_tensor = torch.tensor(owners)
        metrics = {
            f"val/{name}": value for name, value in retrieval_metrics(images.features, texts, owners_tensor).items()
        }
        metrics["val/loss"] = self._loss(model, images.features, texts, owners_tensor, batch_size)
        return metrics

    @staticmethod
    def _loss(model: Model, images: torch.Tensor, texts: torch.Tensor, owners: torch.Tensor, batch_size: int) -> float:
        """The training loss on (image, first caption) pairs, in batches of the training batch size.

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
