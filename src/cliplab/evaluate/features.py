"""Image features of a source for evaluation: encoded once (`cliplab.encode`), cached on disk.

The cache is keyed by the model's weights, the source's fingerprint and the preprocessing, so a
second evaluation of the same model on the same data reads the features back instead of running the
model. An image that cannot be decoded is skipped and listed, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from ..data import Source
from ..encode import embed_images
from ..errors import SourceError
from ..files import cache_dir, save_safetensors
from ..models import Model, model_fingerprint
from ..transforms import model_transform

CACHE_VERSION = "2"  # bump when the way features are computed or stored changes


@dataclass(frozen=True)
class FeatureOptions:
    """How image features are computed: batches, loading processes, the on-disk cache, a progress bar."""

    batch_size: int = 256
    workers: int = 2
    cache: bool = True
    cache_dir: str | os.PathLike | None = None  # default: $CLIPLAB_CACHE/features
    # names the model in cache keys; default a digest of every weight (exact, but reads them all)
    model_id: str | None = None
    progress: bool = True


@dataclass
class ImageFeatures:
    features: torch.Tensor  # (M, D) float32, L2-normalised, for the images that could be read
    labels: torch.Tensor  # (M,) their labels (-1 where an item has none)
    kept: torch.Tensor  # (M,) positions of those images among the source's items
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item key, reason)
    from_cache: bool = False

    def rows(self, rows: torch.Tensor) -> ImageFeatures:
        """These features restricted to `rows` (positions among them, not among the items)."""
        return ImageFeatures(self.features[rows], self.labels[rows], self.kept[rows], self.skipped, self.from_cache)


@torch.no_grad()
def image_features(model: Model, source: Source, options: FeatureOptions = FeatureOptions()) -> ImageFeatures:
    """Normalised image features of every readable item of `source`, with the model's evaluation preprocessing."""
    path = _cache_path(model, source, options) if options.cache else None
    if path is not None and path.is_file():
        return _read(path)
    items = source.items
    embedded = embed_images(
        model, items, options.batch_size, options.workers, progress=options.progress, desc=f"embed {source.name}"
    )
    skipped = [(items[s.index].key, s.reason) for s in embedded.skipped]
    if not len(embedded.kept):
        raise SourceError(f"{source.name}: none of its {len(items)} images could be read ({skipped[0][1]}, ...)")
    labels = torch.tensor([-1 if items[i].label is None else items[i].label for i in embedded.kept.tolist()])
    result = ImageFeatures(embedded.features, labels, embedded.kept, skipped)
    if path is not None:
        tensors = {"features": result.features, "labels": result.labels, "kept": result.kept}
        save_safetensors(tensors, path, metadata={"skipped": json.dumps(skipped)})
    return result


def _cache_path(model: Model, source: Source, options: FeatureOptions) -> Path:
    # repr() names functions with their memory address, which differs from run to run
    transform = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(model_transform(model)))
    model_id = options.model_id or model_fingerprint(model)
    key = hashlib.sha256(f"{CACHE_VERSION}|{model_id}|{source.fingerprint}|{transform}".encode()).hexdigest()[:32]
    folder = Path(options.cache_dir) if options.cache_dir is not None else cache_dir() / "features"
    return folder / f"{source.name}-{key}.safetensors"


def _read(path: Path) -> ImageFeatures:
    with safe_open(path, "pt") as f:
        skipped = [tuple(item) for item in json.loads(f.metadata().get("skipped", "[]"))]
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    return ImageFeatures(tensors["features"], tensors["labels"], tensors["kept"], skipped, from_cache=True)
