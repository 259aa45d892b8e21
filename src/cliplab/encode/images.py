"""Images of items through the image tower: decoded in worker processes, unreadable ones skipped and listed."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data.decode import MAX_PIXELS
from ..data.items import Item
from ..errors import BadSample
from ..models.protocol import Model, model_device
from ..transforms import model_transform


class Skipped(NamedTuple):
    index: int  # position in the items
    reason: str  # short and countable ("not an image", "missing file", ...)
    message: str  # the reason with its detail


@dataclass
class ImageBatch:
    indices: list[int]  # positions of the encoded items
    features: torch.Tensor  # (len(indices), D) normalised float32, CPU
    sizes: list[tuple[int, int]]  # (width, height) of each image as decoded
    skipped: list[Skipped]


@dataclass
class ImageEmbeddings:
    features: torch.Tensor  # (M, D) normalised float32 for the M items that could be read
    kept: torch.Tensor  # (M,) their positions among the items
    sizes: list[tuple[int, int]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class _Pixels(Dataset):
    """(position, pixels, (width, height), None) or (position, None, None, BadSample) per item."""

    def __init__(self, items: Sequence[Item], transform: Callable, max_pixels: int):
        self.items, self.transform, self.max_pixels = items, transform, max_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            with self.items[i].open_image(self.max_pixels) as image:
                return i, self.transform(image), image.size, None
        except BadSample as err:
            return i, None, None, err


def _collate(batch):
    return batch


@contextmanager
def evaluating(model: Model):
    """The model in eval mode for the duration, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def image_batches(
    model: Model,
    items: Sequence[Item],
    batch_size: int = 256,
    workers: int = 2,
    transform: Callable | None = None,
    max_pixels: int = MAX_PIXELS,
    autocast: AbstractContextManager | None = None,
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[ImageBatch]:
    """The items' images encoded `batch_size` at a time, in order, with the model's evaluation preprocessing.

    `encode` maps a batch of pixels to features (default: the normalised image embedding; the trainer's
    feature cache passes a locked tower's trunk)."""
    transform = transform or model_transform(model)
    encode = encode or (lambda pixels: model.encode_image(pixels, normalize=True))
    device = model_device(model)
    # A generator of its own: the loader's seed draw would otherwise advance torch's global generator, so a
    # validation pass during training would change the dropout masks of the steps after it.
    loader = DataLoader(
        _Pixels(items, transform, max_pixels),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        generator=torch.Generator().manual_seed(0),
    )
    with evaluating(model):
        for batch in loader:
            good = [(i, pixels, size) for i, pixels, size, _ in batch if pixels is not None]
            skipped = [Skipped(i, err.reason, str(err)) for i, _, _, err in batch if err is not None]
            features = torch.zeros(0)
            if good:
                with autocast or nullcontext():
                    pixels = torch.stack([p for _, p, _ in good]).to(device)
                    features = encode(pixels).float().cpu()
            yield ImageBatch([i for i, _, _ in good], features, [s for _, _, s in good], skipped)


def embed_images(
    model: Model,
    items: Sequence[Item],
    batch_size: int = 256,
    workers: int = 2,
    transform: Callable | None = None,
    max_pixels: int = MAX_PIXELS,
    autocast: AbstractContextManager | None = None,
    progress: bool | tqdm = False,
    desc: str = "embed",
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> ImageEmbeddings:
    """Every readable item's normalised image embedding (or what `encode` makes of its pixels); the others
    skipped, each with its reason.

    `progress` is a bool (a bar of its own) or a tqdm bar to advance.
    """
    bar = (
        progress
        if isinstance(progress, tqdm)
        else tqdm(total=len(items), desc=desc, unit="image", disable=not progress)
    )
    parts, kept, sizes, skipped = [], [], [], []
    try:
        for batch in image_batches(model, items, batch_size, workers, transform, max_pixels, autocast, encode):
            if batch.indices:
                parts.append(batch.features)
                kept += batch.indices
                sizes += batch.sizes
            skipped += batch.skipped
            bar.update(len(batch.indices) + len(batch.skipped))
    finally:
        if bar is not progress:
            bar.close()
    features = torch.cat(parts) if parts else torch.zeros(0, model.embed_dim)
    return ImageEmbeddings(features, torch.tensor(kept, dtype=torch.long), sizes, skipped)
