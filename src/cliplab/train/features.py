"""Locked towers computed once: what LiT (Zhai et al., 2022) trains on, at the speed of cached features.

A tower that is fully locked gives the same output for an input at every step, so its output is
computed once per image (or caption), stored on disk and read back at every step and every later run.
What is cached is the tower's *trunk*: for cliplab's CLIP the whole encoder (its projection belongs
to the tower and is locked with it), for a towers model the backbone or text encoder, whose projection
head keeps training on top of the cached features.

The cache lives in `$CLIPLAB_CACHE/train-features/<source>-<tower>-<key>/`, one safetensors file per
chunk of rows, each written atomically: a killed run keeps every chunk it finished and the next run
computes only the rest. The key covers the trunk's weights, the source's fingerprint, the
preprocessing (or tokenizer), the precision and a version, so a change to any of them computes afresh.
Images are cached only with augmentation off (`augment=false`, as LiT trains): with random crops no
two visits of an image are the same.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from tqdm import tqdm

from ..data import BadSample, CaptionDataset, Item, Source, check_caption
from ..data.dataset import tokens
from ..encode import embed_images, embed_texts
from ..files import cache_dir, save_safetensors
from ..models import CLIP, Model
from ..towers import TowersCLIP
from .config import TrainConfig

CACHE_VERSION = "1"  # bump when what is stored or how it is computed changes
CHUNK_ROWS = 1024  # rows per file: the most a killed run loses
TOWERS = ("image", "text")


def tower_parts(model: Model, tower: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module]:
    """(trunk, head) with encode_<tower>(x) == head(trunk(x)): the trunk is what a full lock freezes."""
    if isinstance(model, TowersCLIP):
        return (model.visual, model.image_projection) if tower == "image" else (model.text, model.text_projection)
    if isinstance(model, CLIP):
        return (model.encode_image if tower == "image" else model.encode_text), nn.Identity()
    raise TypeError(f"no tower split for {type(model).__name__}")


def _trunk_state(model: Model, tower: str) -> dict[str, torch.Tensor]:
    if isinstance(model, TowersCLIP):
        return (model.visual if tower == "image" else model.text).state_dict()
    state = model.state_dict()
    visual = {k: v for k, v in state.items() if k.startswith("visual.")}
    if tower == "image":
        return visual
    return {k: v for k, v in state.items() if k not in visual and not k.startswith("logit_")}


def _weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in tensors.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def plain_captions(items: Sequence[Item]) -> bool:
    """Whether each visit draws one of the item's stored captions (so each caption can be cached);
    generated scenes invent theirs."""
    return all(type(item).draw_caption is Item.draw_caption for item in items[:1]) and len(items) > 0


@dataclass
class CachedTower:
    """A locked tower's trunk output for every row: an item (images) or a caption of an item (texts)."""

    tower: str
    features: torch.Tensor  # (rows, F) float32; zeros where a row is bad
    bad: dict[int, str]  # row -> why it could not be used
    folder: Path
    computed: int  # rows computed by this call; 0 when everything was read back
    offsets: torch.Tensor | None = None  # texts: item i's captions are rows offsets[i] .. offsets[i + 1] - 1

    def row(self, item: int, caption: int = 0) -> int:
        return item if self.offsets is None else int(self.offsets[item]) + caption


def cache_tower(
    model: Model,
    tower: str,
    source: Source,
    transform: Callable | None,
    batch_size: int,
    workers: int,
    autocast: AbstractContextManager | None = None,
    progress: bool = True,
    folder: Path | None = None,
) -> CachedTower:
    """The locked `tower`'s trunk output for every image (or every caption) of `source`, computing only what
    the cache does not hold yet."""
    items = source.items
    trunk, _ = tower_parts(model, tower)
    if tower == "image":
        rows: list = list(range(len(items)))
        offsets = None
        setting = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(transform))
    else:
        counts = torch.tensor([len(item.captions) for item in items])
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        rows = [caption for item in items for caption in item.captions]
        tokenizer = model.tokenizer  # its settings (a Hugging Face tokenizer's JSON), not its object's address
        fields = {k: v for k, v in vars(tokenizer).items() if not k.startswith("_")}
        setting = f"{type(tokenizer).__name__}|{json.dumps(fields, sort_keys=True, default=str)}"
    precision = "bf16" if autocast is not None and not isinstance(autocast, nullcontext) else "fp32"
    key = hashlib.sha256(
        f"{CACHE_VERSION}|{tower}|{_weights_digest(_trunk_state(model, tower))}|{source.fingerprint}|{setting}|"
        f"{precision}".encode()
    ).hexdigest()[:24]
    folder = (folder or cache_dir() / "train-features") / f"{_safe(source.name)}-{tower}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    chunks = range(0, len(rows), CHUNK_ROWS)
    missing = [start for start in chunks if not (folder / _chunk_name(start)).is_file()]
    unit = "image" if tower == "image" else "caption"
    bar = tqdm(
        total=len(rows),
        initial=len(rows) - sum(min(CHUNK_ROWS, len(rows) - s) for s in missing),
        desc=f"caching {tower} features",
        unit=unit,
        disable=not (progress and missing),
        dynamic_ncols=True,
    )
    try:
        for start in missing:
            stop = min(start + CHUNK_ROWS, len(rows))
            if tower == "image":
                features, bad = _image_chunk(
                    model, items[start:stop], trunk, transform, batch_size, workers, autocast, bar
                )
            else:
                features, bad = _text_chunk(model, rows[start:stop], trunk, batch_size, autocast, bar)
            save_safetensors(
                {"features": features.contiguous()},
                folder / _chunk_name(start),
                metadata={"bad": json.dumps({str(start + k): v for k, v in bad.items()})},
            )
    finally:
        bar.close()
    features, bad = _read(folder, chunks)
    return CachedTower(tower, features, bad, folder, sum(min(CHUNK_ROWS, len(rows) - s) for s in missing), offsets)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "source"


def _chunk_name(start: int) -> str:
    return f"rows-{start:010d}.safetensors"


def _image_chunk(model, items, trunk, transform, batch_size, workers, autocast, bar):
    embedded = embed_images(model, items, batch_size, workers, transform, autocast=autocast, progress=bar, encode=trunk)
    features = torch.zeros(len(items), embedded.features.shape[1])
    features[embedded.kept] = embedded.features
    return features, {s.index: s.reason for s in embedded.skipped}


def _text_chunk(model, captions, trunk, batch_size, autocast, bar):
    good, bad = [], {}
    for index, caption in enumerate(captions):
        try:
            check_caption(caption)
            good.append(index)
        except BadSample as err:
            bad[index] = err.reason
    bar.update(len(bad))
    encoded = embed_texts(model, [captions[i] for i in good], batch_size, autocast, progress=bar, encode=trunk)
    features = torch.zeros(len(captions), encoded.shape[1])
    features[good] = encoded
    return features, bad


def _read(folder: Path, chunks: range) -> tuple[torch.Tensor, dict[int, str]]:
    parts, bad = [], {}
    for start in chunks:
        with safe_open(folder / _chunk_name(start), "pt") as f:
            parts.append(f.get_tensor("features"))
            bad.update({int(k): v for k, v in json.loads(f.metadata().get("bad", "{}")).items()})
    return (torch.cat(parts) if parts else torch.zeros(0, 0)), bad


class CachedCaptionDataset(CaptionDataset):
    """`CaptionDataset` with a cached tower's rows in place of pixels (images) and/or token ids (texts).

    The same draws as the plain dataset (caption choice, and the skip to the next item past a bad one),
    so a run with the cache sees the same pairs as a run without it.
    """

    def __init__(
        self,
        entries: Sequence[Item],
        transform: Callable,
        tokenizer: Callable,
        seed: int,
        image: CachedTower | None,
        text: CachedTower | None,
    ):
        super().__init__(entries, transform, tokenizer, seed=seed)
        self.image, self.text = image, text

    def _load(self, position: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        entry = self.entries[position]
        rng = random.Random(f"{self.seed}/{self.epoch}/{index}")
        if self.text is not None:
            if not entry.captions:
                raise BadSample("no caption")
            choice = rng.choice(range(len(entry.captions)))  # the draw Item.draw_caption makes
            row = self.text.row(position, choice)
            if row in self.text.bad:
                raise BadSample(self.text.bad[row])
            text = self.text.features[row]
        else:
            text = tokens(check_caption(entry.draw_caption(rng)), self.tokenizer)
        if self.image is not None:
            if position in self.image.bad:
                raise BadSample(self.image.bad[position])
            return self.image.features[position], text
        return self._pixels(entry, rng), text


def cache_plan(config: TrainConfig, source: Source) -> tuple[list[str], list[str]]:
    """(the towers whose outputs can be cached, why each fully locked other one cannot)."""
    towers, reasons = [], []
    if config.lock_image and config.lock_image_unlocked == 0:
        if not config.cache_features:
            reasons.append("image features not cached (cache_features=false)")
        elif source.shards is not None:
            reasons.append("image features not cached: shards are streamed, not indexed")
        elif config.augment and source.allows_crops:
            reasons.append("image features not cached: augmentation is on (augment=false caches them, as LiT trains)")
        elif config.patch_dropout:
            reasons.append("image features not cached: patch_dropout changes them at every visit")
        else:
            towers.append("image")
    if config.lock_text and config.lock_text_unlocked == 0:
        if not config.cache_features:
            reasons.append("text features not cached (cache_features=false)")
        elif source.shards is not None:
            reasons.append("text features not cached: shards are streamed, not indexed")
        elif not plain_captions(source.items):
            reasons.append(f"text features not cached: {source.name}'s captions are generated at every visit")
        else:
            towers.append("text")
    return towers, reasons
