"""Validation during training: contrastive loss and retrieval recall on a held-out caption table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..data import BadSample, CaptionedImage, check_caption, read_image
from ..evaluate import retrieval_metrics
from ..models import CLIP


class _Images(Dataset):
    def __init__(self, entries: Sequence[CaptionedImage], transform: Callable):
        self.entries, self.transform = entries, transform

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            with read_image(self.entries[index].path) as image:
                return index, self.transform(image), None
        except BadSample as bad:
            return index, None, bad.reason


def _collate(items):
    return items


class ValidationSet:
    """Every image of a table with every one of its captions; bad images and captions are left out and counted."""

    def __init__(self, entries: Sequence[CaptionedImage], transform: Callable, tokenizer: Callable, workers: int = 0):
        self.entries, self.transform, self.workers = list(entries), transform, workers
        self.tokenizer = tokenizer
        self.skipped: Counter = Counter()

    @torch.no_grad()
    def evaluate(
        self, model: CLIP, batch_size: int, device: torch.device, autocast: AbstractContextManager | None = None
    ) -> dict[str, float]:
        autocast = autocast or nullcontext()
        was_training = model.training
        model.eval()
        self.skipped = Counter()
        loader = DataLoader(
            _Images(self.entries, self.transform), batch_size=batch_size, num_workers=self.workers, collate_fn=_collate
        )
        kept, image_features = [], []
        for items in loader:
            good = [(i, pixels) for i, pixels, reason in items if pixels is not None]
            self.skipped.update(reason for _, pixels, reason in items if pixels is None)
            if not good:
                continue
            kept.extend(i for i, _ in good)
            with autocast:
                features = model.encode_image(torch.stack([p for _, p in good]).to(device), normalize=True)
            image_features.append(features.float())
        if not kept:
            raise ValueError("no validation image could be read")
        captions, owners = [], []
        for position, index in enumerate(kept):
            for caption in self.entries[index].captions:
                try:
                    captions.append(check_caption(caption))
                    owners.append(position)
                except BadSample as bad:
                    self.skipped[bad.reason] += 1
        text_features = []
        for start in range(0, len(captions), batch_size):
            tokens = self.tokenizer(captions[start : start + batch_size]).to(device)
            with autocast:
                text_features.append(model.encode_text(tokens, normalize=True).float())
        images, texts = torch.cat(image_features), torch.cat(text_features)
        owners_tensor = torch.tensor(owners)
        metrics = {f"val/{name}": value for name, value in retrieval_metrics(images, texts, owners_tensor).items()}
        metrics["val/loss"] = self._loss(model, images, texts, owners_tensor, batch_size)
        model.train(was_training)
        return metrics

    @staticmethod
    def _loss(model: CLIP, images: torch.Tensor, texts: torch.Tensor, owners: torch.Tensor, batch_size: int) -> float:
        """The training loss on (image, first caption) pairs, in batches of the training batch size.

        Computed here in one process (not through ClipLoss, which would gather across processes).
        """
        with_captions = torch.unique(owners)  # images whose captions survived, ascending
        first_caption = torch.searchsorted(owners, with_captions)  # owners is sorted
        pair_images, pair_texts = images[with_captions], texts[first_caption]
        size = min(batch_size, len(with_captions))
        scale = model.logit_scale.exp().float()
        losses = []
        for start in range(0, len(with_captions) - size + 1, size):
            logits = scale * pair_images[start : start + size] @ pair_texts[start : start + size].t()
            labels = torch.arange(size, device=logits.device)
            losses.append(((F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2).item())
        return sum(losses) / len(losses)
