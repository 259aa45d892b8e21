"""A map-style dataset of captioned items (a table's images, generated scenes) for contrastive training.

A bad sample (see `decode.py`) is replaced by the next good one in dataset order, and the skip
is recorded in the item, so batches keep their size (distributed gathering needs equal shapes on
every rank) and nothing is silently lost. One caption is drawn per visit, from a generator seeded
by (seed, epoch, index), so a resumed run draws the same captions.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from ..errors import BadSample, SourceError
from ..tokenizer import BPETokenize
from .decode import check_caption
from .items import Item


@dataclass
class Sample:
    image: torch.Tensor
    text: torch.Tensor  # token ids, (context_length,)
    skipped: list[tuple[str, str]]  # (path, reason) of bad samples passed over to reach this one


@dataclass
class Batch:
    images: torch.Tensor  # N 3 H W
    texts: torch.Tensor  # N L
    skipped: list[tuple[str, str]]
    # Streams of shards: which worker stream made the batch, and how far into it (in raw samples) it ends.
    stream: int | None = None
    position: int | None = None

    def skip_counts(self) -> Counter:
        return Counter(reason for _, reason in self.skipped)


class CaptionDataset(Dataset):
    def __init__(
        self,
        entries: Sequence[Item],
        transform: Callable,
        tokenizer: Callable | None = None,  # texts -> ids: the model's `tokenizer` (default: CLIP's, 77 tokens)
        seed: int = 0,
        max_skips: int = 1000,
    ):
        if not entries:
            raise SourceError("the dataset has no entries")
        self.entries = entries
        self.transform = transform
        self.tokenizer = tokenizer or BPETokenize()
        self.seed = seed
        self.epoch = 0
        self.max_skips = max_skips

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Sample:
        skipped: list[tuple[str, str]] = []
        for offset in range(min(self.max_skips, len(self.entries))):
            position = (index + offset) % len(self.entries)
            try:
                return Sample(*self._load(position, index + offset), skipped)
            except BadSample as bad:
                skipped.append((self.entries[position].key, bad.reason))
        raise SourceError(
            f"{len(skipped)} bad samples in a row from index {index}, e.g. {skipped[:3]}: is the data path right?"
        )

    def _load(self, position: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(pixels, token ids) of the item at `position`, visited as sample `index` of the epoch."""
        entry = self.entries[position]
        rng = random.Random(f"{self.seed}/{self.epoch}/{index}")
        caption = check_caption(entry.draw_caption(rng))
        return self._pixels(entry, rng), tokens(caption, self.tokenizer)

    def _pixels(self, entry: Item, rng: random.Random) -> torch.Tensor:
        with entry.open_image() as image:
            return seeded_transform(self.transform, image, rng.getrandbits(63))


@functools.lru_cache(maxsize=8192)
def tokens(caption: str, tokenizer: Callable) -> torch.Tensor:
    """The caption's token ids. Captions repeat (generated ones by the thousand): each is tokenized once."""
    return tokenizer(caption)[0]


def seeded_transform(transform: Callable, image, seed: int) -> torch.Tensor:
    """`transform(image)` with torch's random generator seeded for this sample alone.

    Random augmentations then depend on the sample, not on which worker loaded it or what ran
    before, so a resumed run (or one with another number of workers) sees the same crops.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(image)


def collate(samples: list[Sample]) -> Batch:
    return Batch(
        images=torch.stack([s.image for s in samples]),
        texts=torch.stack([s.text for s in samples]),
        skipped=[skip for s in samples for skip in s.skipped],
    )
