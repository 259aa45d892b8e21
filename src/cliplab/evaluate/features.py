"""Image features of a labelled set: batched, in worker processes, cached on disk.

An image that cannot be decoded is skipped and listed, never fatal. The cache is keyed by the model's
weights, the images (their fingerprint) and the preprocessing, so a second evaluation of the same
model on the same data reads the features back instead of running the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..checkpoints.files import save_safetensors
from ..data.decode import BadSample
from ..models import CLIP
from ..models.fingerprint import model_fingerprint
from ..transforms import model_transform
from .datasets import LabelledImages

CACHE_VERSION = "1"  # bump when the way features are computed changes


@dataclass
class ImageFeatures:
    features: torch.Tensor  # (M, D) float32, L2-normalised, for the images that could be read
    labels: torch.Tensor  # (M,)
    kept: torch.Tensor  # (M,) indices of those images in the set
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image id, reason)
    from_cache: bool = False


def default_cache_dir() -> Path:
    return Path(os.environ.get("CLIPLAB_CACHE") or Path.home() / ".cache" / "cliplab") / "features"


class _Pixels(Dataset):
    def __init__(self, data: LabelledImages, transform):
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        try:
            image = self.data.load(i)
            return i, self.transform(image), None
        except BadSample as err:
            return i, None, err.reason


def _collate(items):
    good = [(i, pixels) for i, pixels, _ in items if pixels is not None]
    bad = [(i, reason) for i, pixels, reason in items if pixels is None]
    indices = torch.tensor([i for i, _ in good], dtype=torch.long)
    pixels = torch.stack([p for _, p in good]) if good else None
    return indices, pixels, bad


@torch.no_grad()
def image_features(
    model: CLIP,
    data: LabelledImages,
    batch_size: int = 256,
    workers: int = 2,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    model_id: str | None = None,
    progress: bool = True,
) -> ImageFeatures:
    """Normalised image features of `data` with the model's evaluation preprocessing."""
    transform = model_transform(model)
    device = next(model.parameters()).device
    path = None
    if use_cache:
        key = hashlib.sha256(
            f"{CACHE_VERSION}|{model_id or model_fingerprint(model)}|{data.fingerprint}|{_describe(transform)}".encode()
        ).hexdigest()[:32]
        path = Path(cache_dir or default_cache_dir()) / f"{data.name}-{key}.safetensors"
        if path.is_file():
            return _read(path)
    model.eval()
    loader = DataLoader(
        _Pixels(data, transform), batch_size=batch_size, num_workers=workers, collate_fn=_collate, shuffle=False
    )
    parts, kept, skipped = [], [], []
    with tqdm(total=len(data), desc=f"embed {data.name}", unit="image", disable=not progress) as bar:
        for indices, pixels, bad in loader:
            skipped += [(data.ids[i], reason) for i, reason in bad]
            if pixels is not None:
                parts.append(model.encode_image(pixels.to(device), normalize=True).float().cpu())
                kept.append(indices)
            bar.update(len(indices) + len(bad))
    if not parts:
        raise ValueError(f"{data.name}: none of its {len(data)} images could be read ({skipped[0][1]}, ...)")
    kept_indices = torch.cat(kept)
    result = ImageFeatures(
        torch.cat(parts), torch.tensor(data.labels)[kept_indices], kept_indices, skipped, from_cache=False
    )
    if path is not None:
        save_safetensors(
            {"features": result.features, "labels": result.labels, "kept": result.kept},
            path,
            metadata={"skipped": json.dumps(skipped)},
        )
    return result


def _describe(transform) -> str:
    # repr() names functions with their memory address, which differs from run to run
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(transform))


def _read(path: Path) -> ImageFeatures:
    from safetensors import safe_open

    tensors = load_file(path)
    with safe_open(path, "pt") as f:
        skipped = [tuple(item) for item in json.loads(f.metadata().get("skipped", "[]"))]
    return ImageFeatures(tensors["features"], tensors["labels"], tensors["kept"], skipped, from_cache=True)
